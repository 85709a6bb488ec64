"""The metric registry and `evaluate`, which reports every registered metric by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from genrec_ml.errors import GenrecConfigError
from genrec_ml.eval.diversity import diversity_ratio_at_k, over_recommendation_ratio_at_k
from genrec_ml.eval.inputs import check_k, check_targets, check_topk
from genrec_ml.eval.ranking import mrr, ndcg_at_k, recall_at_k

DEFAULT_KS = (5, 10, 20)


@dataclass(frozen=True)
class Metric:
    """How `evaluate` calls a metric function and names its result."""

    fn: Callable[..., float]
    per_k: bool  # reported once per K as "name@K", else once as "name"
    uses_targets: bool  # accuracy metrics read the held-out item; list metrics do not


METRICS: dict[str, Metric] = {
    "recall": Metric(recall_at_k, per_k=True, uses_targets=True),
    "ndcg": Metric(ndcg_at_k, per_k=True, uses_targets=True),
    "mrr": Metric(mrr, per_k=False, uses_targets=True),
    "divr": Metric(diversity_ratio_at_k, per_k=True, uses_targets=False),
    "orr": Metric(over_recommendation_ratio_at_k, per_k=True, uses_targets=False),
}


def evaluate(
    topk, targets, ks: Sequence[int] = DEFAULT_KS, metrics: Sequence[str] = tuple(METRICS)
) -> dict[str, float]:
    """{"recall@10": ..., "ndcg@10": ..., "mrr": ..., "divr@10": ...} for `topk: (U, K_max)`.

    Raises GenrecConfigError for an unknown metric or a K above K_max, before computing any.
    """
    topk = check_topk(topk)
    targets = check_targets(targets, topk.shape[0])
    for k in ks:
        check_k(k, topk.shape[1])
    results = {}
    for name in metrics:
        metric = _lookup(name)
        args = (topk, targets) if metric.uses_targets else (topk,)
        if metric.per_k:
            results.update({f"{name}@{k}": metric.fn(*args, k) for k in ks})
        else:
            results[name] = metric.fn(*args)
    return results


def _lookup(name: str) -> Metric:
    if name not in METRICS:
        raise GenrecConfigError("metrics", f"unknown metric {name!r}; choose from {list(METRICS)}")
    return METRICS[name]
