"""Accuracy metrics under leave-one-out: one held-out target item per user.

Every metric takes `topk: (U, K_max)` ranked item ids (-1 = empty slot) and `targets: (U,)`,
and averages over users. `rank_u` is the 0-based position of user u's target in its list.
"""

from __future__ import annotations

import numpy as np

from genrec_ml.eval.inputs import check_k, check_targets, check_topk


def target_ranks(topk, targets) -> np.ndarray:
    """(U,) 0-based rank of each user's target in its list, -1 when the target is absent."""
    topk = check_topk(topk)
    targets = check_targets(targets, topk.shape[0])
    hits = topk == targets[:, None]  # (U, K_max); padding (-1) never equals a target
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)


def _ranks_within(topk, targets, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks and a (U,) mask of users whose target is in the first k slots."""
    check_k(k, check_topk(topk).shape[1])
    ranks = target_ranks(topk, targets)
    return ranks, (ranks >= 0) & (ranks < k)


def recall_at_k(topk, targets, k: int) -> float:
    r"""Recall@K = (1/U) \sum_u |R_u(K) \cap T_u| / |T_u|.

    R_u(K) is user u's first K items and T_u = {target_u}, so |T_u| = 1 and Recall@K equals
    the hit ratio HR@K = (1/U) \sum_u 1[rank_u < K].
    """
    _, hit = _ranks_within(topk, targets, k)
    return float(hit.mean())


def ndcg_at_k(topk, targets, k: int) -> float:
    r"""NDCG@K = (1/U) \sum_u 1[rank_u < K] / \log_2(rank_u + 2).

    With a single relevant item the ideal DCG is 1/\log_2(2) = 1, so NDCG is the DCG.
    """
    ranks, hit = _ranks_within(topk, targets, k)
    return float(np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2), 0.0).mean())


def mrr(topk, targets) -> float:
    r"""MRR = (1/U) \sum_u 1 / (rank_u + 1), taking 0 when the target is not in u's list.

    Uses the whole returned list (K_max items), so it depends on how many items were decoded.
    """
    ranks = target_ranks(topk, targets)
    return float(np.where(ranks >= 0, 1.0 / (np.maximum(ranks, 0) + 1), 0.0).mean())
