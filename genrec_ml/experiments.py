"""Train one model on one dataset and measure it: the work behind every `*_checkpoint` and
`*_metrics` asset, usable without Dagster (scripts, notebooks, the GPU machine).

    experiment = Experiment(model="tiger", tokenizer="rq_vae", profile="smoke")
    trained = train_experiment(experiment, splits, catalog, workdir)      # best.pt in workdir
    evaluation = evaluate_experiment(trained.checkpoint, splits, catalog)  # genrec_ml.evaluation: metric rows

Resuming: training writes into `workdir/training/` and only moves `best.pt` to `workdir/` when it
finishes. A killed run leaves `training/last.pt`, and the next call with the same experiment and
data continues from it; a call after a finished run trains afresh (nightly retraining), and until
it finishes the previous `best.pt` stays the current model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.registry import build_model, input_kind, model_class, model_config
from genrec_ml.train.checkpoint import model_payload, read_checkpoint, save_atomic, warm_start
from genrec_ml.train.config import TrainConfig, train_config
from genrec_ml.train.distributed import start_processes, stop_processes, wait_for_all
from genrec_ml.train.loop import Callback, TrainResult, train
from genrec_ml.train.memory import retain_freed_memory

SPLITS = ("valid", "test")
RUN_INFO = "run.json"


@dataclass(frozen=True)
class Experiment:
    model: str = "tiger"  # registry name: tiger, s2gr, care, sasrec, gru4rec, caser, bert4rec, rearec
    variant: str = "default"  # label in the metrics table; `model_overrides` say what it changes
    profile: str = "smoke"  # smoke: minutes on a CPU; paper: the paper's model and budget
    tokenizer: str | None = "rq_vae"  # codebook variant of SID models; None for item-id models
    scheme: str = "loo"  # split scheme of the `splits` table: loo or ratio
    model_overrides: dict[str, Any] = field(default_factory=dict)  # fields of the model's config
    train_overrides: dict[str, Any] = field(default_factory=dict)  # fields of TrainConfig
    eval_ks: tuple[int, ...] = (5, 10, 20)  # cut-offs of the final valid/test metrics
    eval_beam_width: int = 20  # beams of the final beam search (SID models); >= max(eval_ks)
    seed: int = 0  # initial weights and training order

    def __post_init__(self):
        object.__setattr__(self, "eval_ks", tuple(int(k) for k in self.eval_ks))
        if input_kind(self.model) == "sids" and not self.tokenizer:
            raise GenrecConfigError("tokenizer", f"{self.model} generates Semantic IDs: name a codebook variant")
        if input_kind(self.model) == "items":
            object.__setattr__(self, "tokenizer", None)
        if self.eval_beam_width < max(self.eval_ks):
            raise GenrecConfigError("eval_beam_width", f"{self.eval_beam_width} beams cannot rank "
                                    f"{max(self.eval_ks)} items; raise it to >= max(eval_ks)")

    @property
    def kind(self) -> str:
        return input_kind(self.model)

    def train_config(self) -> TrainConfig:
        config = train_config(self.profile, self.kind, **{"seed": self.seed, **self.train_overrides})
        # a model that fine-tunes another's weights trains at a fraction of the profile's lr (LASAR's Stage 2)
        ratio = getattr(model_class(self.model), "lr_ratio", 1.0)
        return config if "lr" in self.train_overrides else replace(config, lr=config.lr * ratio)


@dataclass
class Catalog:
    """What a model needs to know about the items it ranks."""

    n_items: int
    sids: np.ndarray | None = None  # (N_items, L) codes, row = item index; SID models only
    codebook_sizes: tuple[int, ...] | None = None  # K_l per SID level
    coarse_centroids: list[np.ndarray] | None = None  # S²GR: per quantiser level (C, d_code)
    coarse_assignments: list[np.ndarray] | None = None  # S²GR: per quantiser level (K_l,) cluster of each code
    categories: np.ndarray | None = None  # (N_items,) category label 0..G-1 (REG4Rec's category head)
    codeword_vectors: list[np.ndarray] | None = None  # per quantiser level (K_l, d): REG4Rec's path reward
    text_words: tuple[str, ...] | None = None  # the decoder-only models' whole-word tokens (from the item titles)
    titles: tuple[str, ...] | None = None  # (N_items,) item titles: MiniOneRec's title <-> SID tasks

    def config_fields(self) -> dict[str, Any]:
        """Catalog-given config fields; each model config keeps those it has."""
        found = {"n_items": self.n_items}
        if self.categories is not None:
            found["n_categories"] = int(self.categories.max()) + 1 if len(self.categories) else 1
        if self.codebook_sizes is not None:
            found["codebook_sizes"] = tuple(self.codebook_sizes)
        if self.text_words is not None:
            found["text_words"] = tuple(self.text_words)
        if self.coarse_centroids:
            found["n_coarse"] = int(self.coarse_centroids[0].shape[0])
            found["d_code"] = int(self.coarse_centroids[0].shape[1])
        return found


@dataclass
class TrainedModel:
    checkpoint: Path  # best.pt: the validated best weights
    result: TrainResult  # pre-training, for models with post-training
    info: dict[str, Any]  # what run.json beside the checkpoint holds
    post_training: Any = None  # genrec_ml.rl.post_training.PostTrainResult of PARS / LASAR's RL, else None


def catalog_from_rows(
    n_items: int, sid_rows: pd.DataFrame | None = None, quantizer_sizes: tuple[int, ...] | None = None,
    coarse_clusters: str | Path | None = None, categories: pd.DataFrame | None = None,
) -> Catalog:
    """A `Catalog` from warehouse rows: `sid_rows` (item_index, level, code), one per item and level.

    `quantizer_sizes` are the codebook sizes of the quantiser levels (the disambiguation level's
    size is inferred); `coarse_clusters` is the codebook asset's coarse_clusters.npz (S²GR);
    `categories` the items' (item_index, category) rows.
    """
    if sid_rows is None:
        return Catalog(n_items=n_items)
    from genrec_ml.vocab import resolve_codebook_sizes

    levels = int(sid_rows["level"].max()) + 1
    if len(sid_rows) != n_items * levels:
        raise GenrecDataError(f"{len(sid_rows)} SID rows for {n_items} items x {levels} levels; the codebook "
                              "is out of date with the items table: re-materialize it", field="item_semantic_ids")
    ordered = sid_rows.sort_values(["item_index", "level"])
    sids = ordered["code"].to_numpy(dtype=np.int64).reshape(n_items, levels)
    if not np.array_equal(ordered["item_index"].to_numpy()[::levels], np.arange(n_items)):
        raise GenrecDataError("SID rows do not cover item indices 0..N-1 exactly once", field="item_index")
    catalog = Catalog(n_items=n_items, sids=sids, codebook_sizes=resolve_codebook_sizes(sids, quantizer_sizes))
    if categories is not None:
        catalog.categories = category_labels(categories, n_items)
    if coarse_clusters is not None:
        stored = np.load(coarse_clusters)
        n_levels = len([key for key in stored.files if key.startswith("centroids_")])
        catalog.coarse_centroids = [stored[f"centroids_{level}"] for level in range(n_levels)]
        catalog.coarse_assignments = [stored[f"assignment_{level}"] for level in range(n_levels)]
    return catalog


def category_labels(rows: pd.DataFrame, n_items: int) -> np.ndarray:
    """(item_index, category) rows -> (N_items,) labels 0..G-1, in order of first appearance by item index."""
    rows = rows.sort_values("item_index")
    if not np.array_equal(rows["item_index"].to_numpy(), np.arange(n_items)):
        raise GenrecDataError(f"category rows do not cover item indices 0..{n_items - 1} exactly once",
                              field="category")
    labels, _ = pd.factorize(rows["category"].fillna(""), sort=False)
    return labels.astype(np.int64)


def with_coarse_clusters(catalog: Catalog, tokenizer_path: str | Path, n_coarse: int, seed: int = 0) -> Catalog:
    """The catalog with S²GR's coarse clusters recomputed at C = `n_coarse` from a saved codebook."""
    from genrec_ml.tokenizers import load_tokenizer
    from genrec_ml.tokenizers.collisions import coarse_clusters

    tokenizer = load_tokenizer(tokenizer_path)
    found = [coarse_clusters(tokenizer.codebook_vectors(level), min(n_coarse, size), seed=seed)
             for level, size in enumerate(tokenizer.codebook_sizes)]
    return replace(catalog, coarse_centroids=[c for c, _ in found], coarse_assignments=[a for _, a in found])


def split_examples(splits: pd.DataFrame, scheme: str) -> dict[str, pd.DataFrame]:
    """The `splits` table's train / valid / test examples of one scheme."""
    for column in ("scheme", "split", "user_index", "target_item_index", "history"):
        if column not in splits.columns:
            raise GenrecDataError(f"splits lack column {column!r}", field=column)
    chosen = splits[splits["scheme"] == scheme]
    found = {name: chosen[chosen["split"] == name].reset_index(drop=True) for name in ("train", *SPLITS)}
    empty = [name for name, frame in found.items() if frame.empty]
    if empty:
        raise GenrecDataError(f"scheme {scheme!r} has no {empty[0]} examples; materialize `splits` first "
                              f"(schemes present: {sorted(splits['scheme'].unique())})", field="scheme")
    return found


def train_item_counts(train_examples: pd.DataFrame, n_items: int) -> np.ndarray:
    """(N_items,) how often each item is a training target: the popularity every metric compares to."""
    return np.bincount(train_examples["target_item_index"].to_numpy(dtype=np.int64), minlength=n_items)


def build_experiment_model(experiment: Experiment, catalog: Catalog) -> torch.nn.Module:
    """Fresh weights seeded by `experiment.seed`; S²GR-style models also get the coarse clusters."""
    config = model_config(experiment.model, experiment.profile, catalog.config_fields(), experiment.model_overrides)
    torch.manual_seed(experiment.seed)
    model = build_model(experiment.model, asdict(config))
    if hasattr(model, "set_coarse_clusters"):
        if not catalog.coarse_centroids:
            raise GenrecConfigError("coarse_clusters", f"{experiment.model} aligns its thinking tokens to the "
                                    "codebook's coarse clusters: load them with the catalog")
        model.set_coarse_clusters(catalog.coarse_centroids, catalog.coarse_assignments)
    if hasattr(model, "set_item_categories"):
        if catalog.categories is None:
            raise GenrecConfigError("categories", f"{experiment.model} predicts the target's category: load the "
                                    "catalog with item categories (export the bundle again)")
        model.set_item_categories(catalog.categories)
    if hasattr(model, "set_item_titles") and model.config.title_tasks:
        if catalog.titles is None:
            raise GenrecConfigError("titles", f"{experiment.model} trains the title <-> SID tasks: load the catalog "
                                    "with item titles (export the bundle again), or set title_tasks false")
        model.set_item_titles(catalog.titles, catalog.sids)
    return model


def train_experiment(
    experiment: Experiment, splits: pd.DataFrame, catalog: Catalog, workdir: str | Path,
    callback: Callback | None = None, init_from: str | Path | None = None, cot: pd.DataFrame | None = None,
) -> TrainedModel:
    """Train `experiment` on `splits` and leave its best weights in `workdir/best.pt`.

    `init_from`: a checkpoint of another model whose weights start this one (LASAR's Stage 2 from
    MiniOneRec's Stage 1; `warm_start` says what may differ). `cot`: per training example
    (user_index, target_position, n_segments, anchors), LASAR's CoT supervision
    (`genrec_ml.text.anchors.anchors_by_example`), or rows of `cot_texts` (user_index, target_position,
    segments): the explicit-CoT baseline's text. Under torchrun every rank trains; only rank 0
    prepares `workdir/training`, and only it moves best.pt and writes run.json (the other ranks
    return without touching the workdir). Freed memory stays in the process from here on
    (`genrec_ml.train.memory`: validation's beam search reuses its pages).
    """
    retain_freed_memory()
    workdir = Path(workdir)
    examples = split_examples(splits, experiment.scheme)
    if cot is not None:
        from genrec_ml.data.cot_sequences import attach_supervision

        examples["train"] = attach_supervision(examples["train"], cot)
    check_catalog(experiment, catalog)
    config = experiment.train_config()
    training = workdir / "training"
    fingerprint = run_fingerprint(experiment, config, catalog, examples, init_from)
    processes = start_processes(config.device)
    try:
        if processes.is_main:
            prepare_training_dir(training, fingerprint)
        wait_for_all(processes)  # no rank looks for last.pt before a stale training folder is gone
        model = build_experiment_model(experiment, catalog)
        started = warm_start(model, init_from) if init_from is not None else None
        result = train(model, examples["train"], examples["valid"],
                       catalog.sids if experiment.kind == "sids" else None, config, training, callback)
    finally:
        stop_processes(processes)
    if not processes.is_main:
        return TrainedModel(workdir / "best.pt", result, {})
    if result.best_checkpoint_path is None:
        raise GenrecDataError("training ended without a validation; nothing to keep", path=training)
    info = {
        "experiment": asdict(experiment), "train_config": asdict(config), "steps": result.steps,
        "train_seconds": result.seconds, "best_valid": result.best_metrics, "fingerprint": fingerprint,
        "n_train_examples": len(examples["train"]),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if started is not None:
        info["initialised_from"] = started
    if cot is not None:
        rows = examples["train"]
        has_cot = rows["n_segments"] > 0 if "n_segments" in rows.columns else rows["cot_text"] != ""
        info["cot_examples"] = int(has_cot.sum())
    post = None
    if post_training_steps(model.config) > 0:
        post = post_train_from(model, result, examples, catalog, config, training, callback)
        shutil.copyfile(result.best_checkpoint_path, workdir / "pretrained.pt")
        save_atomic(model_payload(model), result.best_checkpoint_path)
        info |= post_training_info(post, info["best_valid"], result.seconds)
    best = workdir / "best.pt"
    os.replace(result.best_checkpoint_path, best)
    write_run_info(workdir, info)
    shutil.rmtree(training)
    return TrainedModel(best, result, info, post)


def post_training_info(post, pretrain_valid: dict, pretrain_seconds: float) -> dict[str, Any]:
    """run.json's facts of a post-trained run: the validation before and after, the time of both stages."""
    return {"pretrain_best_valid": pretrain_valid, "best_valid": post.best_metrics,
            "train_seconds": pretrain_seconds + post.seconds,
            "post_training": {"steps": post.steps, "seconds": post.seconds, "evaluations": post.evaluations,
                              "last_rewards": post.history[-1] if post.history else {}}}


def post_training_steps(config) -> int:
    """RL steps after pre-training / SFT: REG4Rec's PARS or LASAR's RL phase; 0 for every other model."""
    return getattr(config, "pars_steps", 0) or getattr(config, "rl_steps", 0)


def post_train_from(model, result: TrainResult, examples: dict[str, pd.DataFrame], catalog: Catalog,
                    config: TrainConfig, training: Path, callback: Callback | None):
    """RL post-training from the weights in `result.best_checkpoint_path`: REG4Rec's PARS (resumable in
    `training/pars`) or LASAR's RL phase (`training/rl`, on the training examples' CoT anchors if any)."""
    left = None if config.max_train_seconds is None else max(config.max_train_seconds - result.seconds, 0.0)
    if getattr(model.config, "rl_steps", 0):
        from genrec_ml.rl.lasar import post_train as lasar_post_train

        model.load_state_dict(read_checkpoint(result.best_checkpoint_path, map_location=model.device)["model_state"])
        return lasar_post_train(model, examples["train"], examples["valid"], catalog.sids, config, training / "rl",
                                callback, seconds_left=left)
    from genrec_ml.rl.pars import post_train

    if not catalog.codeword_vectors:
        raise GenrecConfigError("codeword_vectors", f"{model.name}'s path reward needs the codebook's codeword "
                                "vectors: load the catalog from a codebook with tokenizer.pt (export the bundle again)")
    model.load_state_dict(read_checkpoint(result.best_checkpoint_path, map_location=model.device)["model_state"])
    return post_train(model, examples["train"], examples["valid"], catalog.sids, catalog.codeword_vectors, config,
                      training / "pars", callback, seconds_left=left)


def write_run_info(folder: Path, info: dict[str, Any]) -> Path:
    path = Path(folder) / RUN_INFO
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, path)
    return path


def read_run_info(folder: Path) -> dict[str, Any]:
    path = Path(folder) / RUN_INFO
    if not path.is_file():
        raise GenrecDataError("no run.json beside the checkpoint; train the model first", path=path)
    return json.loads(path.read_text())


def check_catalog(experiment: Experiment, catalog: Catalog) -> None:
    if experiment.kind == "sids":
        if catalog.sids is None:
            raise GenrecConfigError("sids", f"{experiment.model} needs the catalog's Semantic IDs")
        if len(catalog.sids) != catalog.n_items:
            raise GenrecDataError(f"{len(catalog.sids)} SIDs for {catalog.n_items} items; the codebook "
                                  "is older than the items table, re-materialize it", field="sids")


def run_fingerprint(experiment: Experiment, config: TrainConfig, catalog: Catalog,
                 examples: dict[str, pd.DataFrame], init_from: str | Path | None = None) -> str:
    """Changes whenever the run would differ: settings, catalog codes, the examples (and their CoT
    supervision), the weights it starts from."""
    digest = hashlib.sha256(json.dumps([asdict(experiment), asdict(config)], sort_keys=True, default=str).encode())
    if catalog.sids is not None:
        digest.update(np.ascontiguousarray(catalog.sids, dtype=np.int64).tobytes())
    digest.update(str(catalog.n_items).encode())
    for name in ("train", "valid"):
        frame = examples[name]
        digest.update(frame["user_index"].to_numpy(dtype=np.int64).tobytes())
        digest.update(frame["target_item_index"].to_numpy(dtype=np.int64).tobytes())
    train = examples["train"]
    if "n_segments" in train.columns:
        digest.update(train["n_segments"].to_numpy(dtype=np.int64).tobytes())
        for states in train["anchors"][train["n_segments"] > 0]:
            digest.update(np.ascontiguousarray(states).tobytes())
    if init_from is not None:
        digest.update(Path(init_from).read_bytes())
    return digest.hexdigest()[:16]


def prepare_training_dir(training: Path, fingerprint: str) -> None:
    """Keep an interrupted run of the same experiment on the same data; anything else starts over."""
    stamp = training / "fingerprint"
    if training.exists() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        shutil.rmtree(training)
    training.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)


def checkpoint_config(checkpoint: str | Path) -> dict[str, Any]:
    """The stored model name and config of a checkpoint, without building the model."""
    stored = read_checkpoint(checkpoint)
    return {"model": stored["model_name"], "config": stored["model_config"]}
