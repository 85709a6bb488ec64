"""`reproduce --dry-run`: everything that can fail before GPU minutes are spent, checked in a minute.

Every bundle is read in full, every model is built with its planned settings and takes one forward
and backward pass on 8 real training examples on the target device (bf16 autocast on CUDA, as the
training loop does), every run's training settings are validated, and the output folder must be
writable with room for the checkpoints. All problems are printed together, so one dry run shows
everything to fix. It also times a forward + backward pass at each run's batch size: a lower bound
of a training step, to size a budget that fits the GPU window.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch

from genrec_ml.experiments import Experiment, build_experiment_model, post_training_steps, split_examples
from genrec_ml.inputs import Bundle, read_bundle
from genrec_ml.models.registry import model_config
from genrec_ml.progress import duration, table
from genrec_ml.reproduce import Pool, Run, describe
from genrec_ml.train.config import TrainConfig, planned_steps
from genrec_ml.train.tasks import task_for

CHECK_EXAMPLES = 8
TIMED_PASSES = 3
BYTES_PER_PARAMETER = 4 * 5  # float32 in best.pt twice (training/ and workdir) + last.pt's weights and 2 Adam moments


def dry_run(runs: list[Run], pool: Pool, out: Path) -> int:
    """Print the plan and every problem; 0 only when nothing stands in the way of training."""
    problems: list[str] = []
    bundles = _read_bundles(runs, problems)
    device = _device(pool.device, problems)
    checked: dict[tuple[str, str], tuple[int, float] | None] = {}
    rows, need = [], 0
    for run in runs:
        try:
            config = run.experiment.train_config()
        except ValueError as err:
            problems.append(f"{run.name}: {err}")
            continue
        bundle = bundles.get(run.bundle.path)
        key = (run.dataset, run.spec.prefix)
        if bundle is None or device is None:
            continue
        if key not in checked:  # seeds change the weights, not what could fail
            try:
                checked[key] = model_check(run.experiment, bundle, config, device)
            except Exception as err:  # whatever a training step raises is a finding, reported with the rest
                checked[key] = None
                problems.append(f"{run.name}: the model does not train: {type(err).__name__}: {err}")
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next model gets the memory this one held
        if checked[key] is None:
            continue
        parameters, ms = checked[key]
        steps = planned_steps(config, len(split_examples(bundle.splits, run.experiment.scheme)["train"]))
        if run.source is not None:  # a derived run: its own post-training steps only, none when it just decodes
            e = run.experiment
            steps = 0 if run.spec.source_stage == "final" else post_training_steps(
                model_config(e.model, e.profile, bundle.catalog.config_fields(), e.model_overrides))
        need += parameters * BYTES_PER_PARAMETER if run.status != "done" else 0
        rows.append([run.name, run.bundle.path.name, run.status, f"{parameters:,}", f"{steps:,}",
                     f"{ms:.1f}", duration(steps * ms / 1000), config.batch_size])
    print(f"plan: {describe(runs, pool)}")
    print("bundles:")
    for path, bundle in bundles.items():
        meta = bundle.meta
        print(f"  {path}: {meta['dataset']}, codes {meta['tokenizer']}, n_coarse {meta.get('n_coarse')}, scheme "
              f"{meta['scheme']}, {meta['n_items']:,} items, {meta['rows']:,} examples")
    print(table(["run", "bundle", "status", "parameters", "steps ≤", "fwd+bwd ms", "time ≥", "batch"], rows))
    print("  (steps ≤: early stopping may end sooner; a run started from another's weights counts its post-training "
          "steps only; time ≥: steps × one forward+backward pass, this process alone, no optimizer step or "
          "validation)")
    print("settings:")
    for run in {(r.dataset, r.spec.prefix): r for r in runs}.values():
        e = run.experiment
        print(f"  {run.dataset}/{run.spec.prefix}: {e.model} ({e.variant}), codes {e.tokenizer}, profile "
              f"{e.profile}, model {json.dumps(e.model_overrides)}, train {json.dumps(e.train_overrides)}")
    _check_out(out, need, problems)
    if problems:
        print(f"\n{len(problems)} problem{'s' * (len(problems) > 1)}; nothing was trained:")
        print("\n".join(f"  - {problem}" for problem in problems))
        return 2
    print("\nall checks passed: run the same command without --dry-run")
    return 0


def model_check(experiment: Experiment, bundle: Bundle, config: TrainConfig, device: torch.device) -> tuple[int, float]:
    """(parameters, ms of a forward + backward pass at the run's batch size) once 8 real examples train."""
    model = build_experiment_model(experiment, bundle.catalog).to(device).train()
    examples = split_examples(bundle.splits, experiment.scheme)["train"]
    task = task_for(model, bundle.catalog.sids if experiment.kind == "sids" else None, config.eval_beam_width)
    use_bf16 = device.type == "cuda" and config.bf16

    def batch(n: int) -> dict:
        data = task.dataset(model, examples.iloc[:n], config.max_history)
        return task.collate([data[i] for i in range(len(data))])

    def step(inputs: dict, check: bool = False) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            _, loss = model(inputs)
        if check and not torch.isfinite(loss):
            raise FloatingPointError(f"loss {loss.item()} on {CHECK_EXAMPLES} training examples")
        loss.backward()
        model.zero_grad(set_to_none=True)

    step(batch(CHECK_EXAMPLES), check=True)
    if getattr(model.config, "pars_steps", 0) > 0:
        post_training_check(model, examples, bundle, config)
    full = batch(min(config.batch_size, len(examples)))
    step(full)  # warm-up: kernels, allocator
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(TIMED_PASSES):
        step(full)
    _synchronize(device)
    ms = (time.perf_counter() - started) / TIMED_PASSES * 1000
    return sum(p.numel() for p in model.parameters()), ms


def post_training_check(model, examples, bundle: Bundle, config: TrainConfig) -> None:
    """REG4Rec: one PARS step on a few users (sampling, the four rewards on the bundle's codewords, GRPO)."""
    import copy
    from dataclasses import replace

    from genrec_ml.rl.pars import pars_context, pars_step

    if not bundle.catalog.codeword_vectors:
        raise ValueError("the bundle has no codeword vectors for REG4Rec's path reward: export it again")
    probe = copy.deepcopy(model)
    probe.config = replace(probe.config, pars_users=2)
    context = pars_context(probe, examples, bundle.catalog.sids, bundle.catalog.codeword_vectors, config.max_history)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=probe.config.pars_lr)
    metrics = pars_step(probe, copy.deepcopy(probe), context, optimizer, config, 0)
    if not all(math.isfinite(v) for v in metrics.values()):
        raise FloatingPointError(f"a PARS step gave {metrics}")


def _read_bundles(runs: list[Run], problems: list[str]) -> dict[Path, Bundle]:
    bundles = {}
    for path in dict.fromkeys(run.bundle.path for run in runs):
        try:
            bundles[path] = read_bundle(path)
        except (ValueError, OSError) as err:
            problems.append(f"bundle {path}: {err}")
    return bundles


def _device(name: str, problems: list[str]) -> torch.device | None:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        problems.append(f"device {name!r}: {err}")
        return None
    if device.type == "cuda" and not torch.cuda.is_available():
        problems.append(f"device {name!r} asked for, but torch sees no CUDA device here")
        return None
    return device


def _check_out(out: Path, need: int, problems: list[str]) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        problems.append(f"{out}: not writable: {err}")
        return
    free = shutil.disk_usage(out).free
    print(f"out {out}: writable, {free / 1e9:.1f} GB free, the runs to train need about {need / 1e9:.2f} GB")
    if free < need:
        problems.append(f"{out}: {free / 1e9:.1f} GB free, the checkpoints need about {need / 1e9:.2f} GB")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
