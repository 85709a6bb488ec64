"""Ranking, diversity and token-level diagnosis metrics over ranked top-K item lists."""

from genrec_ml.eval.diversity import diversity_ratio_at_k, over_recommendation_ratio_at_k
from genrec_ml.eval.metrics import DEFAULT_KS, METRICS, Metric, evaluate
from genrec_ml.eval.popularity import popularity_topk
from genrec_ml.eval.ranking import mrr, ndcg_at_k, recall_at_k, target_ranks
from genrec_ml.eval.token_bias import (
    GROUPS,
    TokenBiasResult,
    per_level_token_recall,
    plot_token_bias,
    token_popularity_bias,
)

__all__ = [
    "DEFAULT_KS",
    "GROUPS",
    "METRICS",
    "Metric",
    "TokenBiasResult",
    "diversity_ratio_at_k",
    "evaluate",
    "mrr",
    "ndcg_at_k",
    "over_recommendation_ratio_at_k",
    "per_level_token_recall",
    "plot_token_bias",
    "popularity_topk",
    "recall_at_k",
    "target_ranks",
    "token_popularity_bias",
]
