"""Runs that start from another run's weights instead of training again (REG4Rec w/o PARS, w/o MSRA,
w/o CORP, and the θ and h sweeps of its Figure 3).

Two starting points, `ModelSpec.source_stage`:

- `pretrained`: the source's weights before post-training (its `pretrained.pt`, or its `best.pt`
  when it had none). The run may differ from the source in post-training settings only
  (`post_training_fields`: PARS, MSRA, LADQ), which pre-training never reads, so its pre-training
  would be the source's step for step: same seed, data, settings, and the same validation choosing
  the same best epoch. It post-trains those weights under its own settings (w/o MSRA: PARS with
  h = 1) or, with no post-training steps, is that checkpoint (w/o PARS). The result equals training
  from scratch as far as training is deterministic (bit for bit on CPU with the same thread count,
  tested; on a GPU up to its kernels' non-determinism), without the pre-training: most of the time
  (REG4Rec on amazon-beauty: 4 epochs against 200 PARS steps).
- `final`: the source's `best.pt`, decoded differently: the run may differ in `inference_fields`
  only (w/o CORP, the θ sweep). This is the ablation of an inference-time component on the same
  trained model, as the paper's w/o CORP reads; trained from scratch, CORP would also have changed
  which epoch validation kept, mixing that into the comparison.

Any other difference (seed, profile, codebook, split scheme, training setting, another model field)
is refused with the field named: that run must train on its own. run.json says where the weights
came from (`derived_from`), and its `train_seconds` counts the source's pre-training (and, for
`final`, its post-training) plus this run's own post-training: the time beside a figure is what
obtaining it costs alone.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from genrec_ml.data.cot_sequences import attach_supervision
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.experiments import (
    RUN_INFO,
    Catalog,
    Experiment,
    TrainedModel,
    build_experiment_model,
    post_train_from,
    post_training_info,
    post_training_steps,
    prepare_training_dir,
    read_run_info,
    run_fingerprint,
    split_examples,
    write_run_info,
)
from genrec_ml.models.registry import model_class, model_config
from genrec_ml.train.checkpoint import model_payload, read_checkpoint, save_atomic
from genrec_ml.train.distributed import Processes, resolve_device
from genrec_ml.train.loop import TrainResult
from genrec_ml.train.memory import retain_freed_memory

STAGES = ("pretrained", "final")
SAME_EXPERIMENT_FIELDS = ("model", "profile", "tokenizer", "scheme", "seed", "train_overrides")


def source_checkpoint(source_workdir: Path, stage: str) -> Path:
    """The file a derived run starts from: `pretrained.pt` (post-trained sources) or `best.pt`."""
    if stage not in STAGES:
        raise GenrecConfigError("source_stage", f"{stage!r}; choose from {list(STAGES)}")
    pretrained = source_workdir / "pretrained.pt"
    path = pretrained if stage == "pretrained" and pretrained.is_file() else source_workdir / "best.pt"
    if not path.is_file() or not (source_workdir / RUN_INFO).is_file():
        raise GenrecDataError("the source run has not finished: no weights or run.json to start from",
                              path=source_workdir)
    return path


def check_derivable(experiment: Experiment, source: Experiment, catalog: Catalog, stage: str) -> None:
    """Refuse, naming the field, a derived run whose pre-training (or weights) would differ from the source's."""
    for name in SAME_EXPERIMENT_FIELDS:
        if getattr(experiment, name) != getattr(source, name):
            raise GenrecConfigError(name, f"{getattr(experiment, name)!r} differs from the source run's "
                                    f"{getattr(source, name)!r}: this run must train on its own")
    cls = model_class(experiment.model)
    allowed = set(getattr(cls, "post_training_fields" if stage == "pretrained" else "inference_fields", ()))
    fields = catalog.config_fields()
    ours = asdict(model_config(experiment.model, experiment.profile, fields, experiment.model_overrides))
    theirs = asdict(model_config(source.model, source.profile, fields, source.model_overrides))
    for name in ours:
        if ours[name] != theirs[name] and name not in allowed:
            raise GenrecConfigError(name, f"{ours[name]!r} against the source's {theirs[name]!r}: starting from its "
                                    f"{stage} weights needs equal {name}; this run must train on its own")


def derive_experiment(experiment: Experiment, splits: pd.DataFrame, catalog: Catalog, workdir: str | Path,
                      source_workdir: str | Path, stage: str, callback=None, cot: pd.DataFrame | None = None
                      ) -> TrainedModel:
    """`workdir/best.pt` and run.json of `experiment` started from the run in `source_workdir` (`cot`: the
    training examples' CoT supervision, as `train_experiment`'s: LASAR's RL aligns to the last anchor). Freed memory
    stays in the process, as in `train_experiment` (the post-training rollouts are beam searches)."""
    retain_freed_memory()
    workdir, source_workdir = Path(workdir), Path(source_workdir)
    checkpoint = source_checkpoint(source_workdir, stage)
    source_info = read_run_info(source_workdir)
    check_derivable(experiment, Experiment(**source_info["experiment"]), catalog, stage)
    config = experiment.train_config()
    model = build_experiment_model(experiment, catalog).to(resolve_device(config.device, Processes()))
    examples = split_examples(splits, experiment.scheme)
    if cot is not None:
        examples["train"] = attach_supervision(examples["train"], cot)
    post = source_info.get("post_training") or {}
    pretrain_seconds = source_info["train_seconds"] - post.get("seconds", 0.0) if stage == "pretrained" else None
    valid = source_info.get("pretrain_best_valid", source_info["best_valid"])
    info = {
        "experiment": asdict(experiment), "train_config": asdict(config), "steps": source_info["steps"],
        "train_seconds": source_info["train_seconds"] if stage == "final" else pretrain_seconds,
        "best_valid": source_info["best_valid"] if stage == "final" else valid,
        "n_train_examples": len(examples["train"]), "parameters": sum(p.numel() for p in model.parameters()),
        "derived_from": {"workdir": str(source_workdir), "stage": stage, "checkpoint": checkpoint.name,
                         "experiment": source_info["experiment"],
                         "evaluation_id": source_info.get("evaluation_id")},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    result = None
    if stage == "pretrained" and post_training_steps(model.config) > 0:
        training = workdir / "training"  # PARS resumes from training/pars/last.pt unless settings or source changed
        prepare_training_dir(training, run_fingerprint(experiment, config, catalog, examples)
                             + str(source_info.get("evaluation_id") or source_info.get("fingerprint")))
        result = TrainResult(valid, [], checkpoint, source_info["steps"], pretrain_seconds)
        post_result = post_train_from(model, result, examples, catalog, config, training, callback)  # loads it
        shutil.copyfile(checkpoint, workdir / "pretrained.pt")
        info |= post_training_info(post_result, valid, pretrain_seconds)
        save_atomic(model_payload(model), workdir / "best.pt")
        write_run_info(workdir, info)
        shutil.rmtree(training)
        return TrainedModel(workdir / "best.pt", result, info, post_result)
    model.load_state_dict(read_checkpoint(checkpoint, map_location=model.device)["model_state"])
    save_atomic(model_payload(model), workdir / "best.pt")
    write_run_info(workdir, info)
    return TrainedModel(workdir / "best.pt", result, info)
