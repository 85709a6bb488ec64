"""Measure a trained model: valid and test ranking over the whole catalog and its metric rows, the
per-user ranks, the per-level and popularity-bias figures of SID models, S²GR's thinking clusters,
LASAR's latent step counts, and the popularity floor; the labels every `metrics` row carries.

    trained = train_experiment(experiment, splits, catalog, workdir)       # genrec_ml.experiments
    evaluation = evaluate_experiment(trained.checkpoint, splits, catalog)  # long metric rows
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genrec_ml.eval import evaluate, per_level_token_recall, popularity_topk, target_ranks, token_popularity_bias
from genrec_ml.eval.token_bias import TokenBiasResult
from genrec_ml.experiments import (
    SPLITS,
    Catalog,
    Experiment,
    check_catalog,
    read_run_info,
    split_examples,
    train_item_counts,
)
from genrec_ml.train.checkpoint import load_checkpoint
from genrec_ml.train.loop import rank_split
from genrec_ml.train.memory import retain_freed_memory
from genrec_ml.train.tasks import task_for


@dataclass
class Evaluation:
    metrics: pd.DataFrame  # split, metric, k (-1 when none), value
    seconds: dict[str, float]  # ranking wall-clock time per split
    users: dict[str, int]  # examples ranked per split
    token_bias: TokenBiasResult | None = None  # test split, SID models only
    token_recall: np.ndarray | None = None  # (L,) test split, SID models only
    thinking: tuple[np.ndarray, np.ndarray] | None = None  # S²GR: (predicted, true) clusters of sampled test users
    n_coarse: int | None = None  # clusters per level behind `thinking`
    ranks: pd.DataFrame | None = None  # test users: split, user_index, target_item_index, rank (see target_ranks)
    search: Any = None  # REG4Rec, test split: decoding.crss.SearchStats (CORP counts, CRSS step orders)
    latent_steps: np.ndarray | None = None  # LASAR, test split: each user's latent step count N


def evaluate_experiment(
    checkpoint: str | Path, splits: pd.DataFrame, catalog: Catalog, experiment: Experiment | None = None,
    batch_size: int = 256, device: str = "auto", thinking_users: int = 512,
) -> Evaluation:
    """Valid and test metrics of the model in `checkpoint` (all of `evaluate`'s, at experiment.eval_ks); freed
    memory stays in the process from here on (`genrec_ml.train.memory`: decoder-only ranking ~1.6-1.8x faster)."""
    retain_freed_memory()
    experiment = experiment or Experiment(**read_run_info(Path(checkpoint).parent)["experiment"])
    examples = split_examples(splits, experiment.scheme)
    check_catalog(experiment, catalog)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model = load_checkpoint(checkpoint, map_location=device)
    task = task_for(model, catalog.sids, experiment.eval_beam_width)
    rows, seconds, users, ranked = [], {}, {}, {}
    for split in SPLITS:
        if hasattr(model, "search_stats"):  # REG4Rec: CORP's counts and CRSS's step orders of this split only
            model.search_stats = type(model.search_stats)()
        started = time.perf_counter()
        topk, targets = rank_split(model, examples[split], k=max(experiment.eval_ks), batch_size=batch_size,
                                   max_history=experiment.train_config().max_history, task=task)
        seconds[split], users[split], ranked[split] = time.perf_counter() - started, len(targets), (topk, targets)
        rows += metric_rows(evaluate(topk, targets, experiment.eval_ks), split)
    if hasattr(model, "search_stats"):
        evaluation_search = model.search_stats
        if model.config.corp:
            rows.append({"split": "test", "metric": "corp_pruned_share", "k": -1,
                         "value": float(evaluation_search.pruned_share)})
    evaluation = Evaluation(pd.DataFrame(rows), seconds, users)
    if hasattr(model, "search_stats"):
        evaluation.search = evaluation_search
    evaluation.ranks = rank_rows(*ranked["test"], examples["test"]["user_index"].to_numpy(), "test")
    if experiment.kind == "sids":
        topk, targets = ranked["test"]
        counts = train_item_counts(examples["train"], catalog.n_items)
        evaluation.token_recall = per_level_token_recall(topk, targets, catalog.sids)
        evaluation.token_bias = token_popularity_bias(topk, targets, catalog.sids, counts, k=min(10, topk.shape[1]),
                                                      codebook_sizes=catalog.codebook_sizes)
        evaluation.metrics = pd.concat([evaluation.metrics, pd.DataFrame(level_rows(evaluation))], ignore_index=True)
    if hasattr(model, "predict_steps"):  # LASAR: how deep each test user's reasoning ran
        from genrec_ml.eval.latent_steps import latent_step_counts, latent_step_rows

        data = task.dataset(model, examples["test"], experiment.train_config().max_history)
        evaluation.latent_steps = latent_step_counts(model, data, batch_size)
        step_rows = latent_step_rows(evaluation.latent_steps, evaluation.ranks["rank"].to_numpy(),
                                     model.config.max_steps)
        evaluation.metrics = pd.concat([evaluation.metrics, pd.DataFrame(step_rows)], ignore_index=True)
    if getattr(model.config, "supervises_thinking", False):
        evaluation.thinking = thinking_sample(model, task, examples["test"], experiment, thinking_users)
        evaluation.n_coarse = model.config.n_coarse
    return evaluation


def rank_rows(topk, targets, users: np.ndarray, split: str) -> pd.DataFrame:
    """Where each user's target landed: rank 1..K in the top-K list, 0 when outside it.

    One row per example (split, user_index, target_item_index, rank): every cut-off metric of
    `evaluate` can be recomputed from these (recall@k = mean(0 < rank <= k), ndcg@k = mean of
    1 / log2(rank + 1) over those), and two models compared user by user.
    """
    targets = np.asarray(targets, dtype=np.int64)
    return pd.DataFrame({"split": split, "user_index": np.asarray(users, dtype=np.int64), "target_item_index": targets,
                         "rank": (target_ranks(np.asarray(topk), targets) + 1).astype(np.int32)})


def evaluation_run_row(dataset: str, evaluation_id: str, info: dict[str, Any]) -> pd.DataFrame:
    """The `evaluation_runs` row of one evaluation, from its training run's run.json."""
    train_config = info.get("train_config", {})
    return pd.DataFrame([{
        "dataset": dataset, "evaluation_id": evaluation_id, "seed": info["experiment"].get("seed"),
        "steps": info.get("steps"), "train_seconds": info.get("train_seconds"), "parameters": info.get("parameters"),
        "batch_size": train_config.get("batch_size"), "device": str(train_config.get("device")),
        "best_valid_step": (info.get("best_valid") or {}).get("step"), "created_at": pd.Timestamp.now(tz="UTC"),
    }])


def level_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    """Test rows `token_recall_l<l>` (k = 1: top-1 SID matches the target's first l+1 levels) and
    `popularity_amplification_l<l>` (k = top-K of the bias measure), so SQL compares them across models."""
    rows = [{"split": "test", "metric": f"token_recall_l{level}", "k": 1, "value": float(value)}
            for level, value in enumerate(evaluation.token_recall)]
    bias = evaluation.token_bias
    rows += [{"split": "test", "metric": f"popularity_amplification_l{level}", "k": bias.k, "value": float(value)}
             for level, value in enumerate(bias.amplification) if np.isfinite(value)]
    return rows


def thinking_sample(model, task, examples: pd.DataFrame, experiment: Experiment, users: int):
    """S²GR's (predicted, true) coarse clusters per quantiser level for the first `users` test examples."""
    data = task.dataset(model, examples.iloc[:users], experiment.train_config().max_history)
    batch = task.collate([data[i] for i in range(len(data))])
    predicted, true = model.thinking_clusters(batch)
    return predicted.cpu().numpy(), true.cpu().numpy()


def evaluate_popularity(splits: pd.DataFrame, n_items: int, scheme: str = "loo",
                        ks: tuple[int, ...] = (5, 10, 20)) -> pd.DataFrame:
    """Metric rows of the popularity recommender: most frequent training targets first, for everyone."""
    examples = split_examples(splits, scheme)
    counts = train_item_counts(examples["train"], n_items)
    rows = []
    for split in SPLITS:
        targets = examples[split]["target_item_index"].to_numpy(dtype=np.int64)
        rows += metric_rows(evaluate(popularity_topk(counts, len(targets), max(ks)), targets, ks), split)
    return pd.DataFrame(rows)


def metric_labels(experiment: Experiment) -> dict[str, Any]:
    """What the `metrics` table records about the model an evaluation measured."""
    return {"model": experiment.model, "variant": experiment.variant, "tokenizer": experiment.tokenizer,
            "profile": experiment.profile, "scheme": experiment.scheme, "seed": experiment.seed}


def labelled_metrics(metrics: pd.DataFrame, dataset: str, labels: dict[str, Any], evaluation_id: str,
                     mlflow_run_id: str | None = None, dagster_run_id: str | None = None) -> pd.DataFrame:
    """One evaluation's rows (split, metric, k, value) with every column of the `metrics` table."""
    return metrics[["split", "metric", "k", "value"]].assign(
        dataset=dataset, **{"seed": None, **labels}, evaluation_id=evaluation_id, mlflow_run_id=mlflow_run_id,
        dagster_run_id=dagster_run_id, created_at=pd.Timestamp.now(tz="UTC"))


def metrics_by_split(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows (split, metric, k, value) -> one row per metric ("ndcg@10", "mrr"), one column per split."""
    names = [f"{m}@{k}" if k >= 0 else m for m, k in zip(metrics["metric"], metrics["k"], strict=True)]
    return metrics.assign(name=names).pivot(index="name", columns="split", values="value")


def metric_rows(metrics: dict[str, float], split: str) -> list[dict[str, Any]]:
    """{"ndcg@10": v, "mrr": v} -> rows (split, metric="ndcg", k=10, value) with k = -1 when none."""
    rows = []
    for name, value in metrics.items():
        metric, _, k = name.partition("@")
        rows.append({"split": split, "metric": metric, "k": int(k) if k else -1, "value": float(value)})
    return rows
