"""Catalog-level diversity of the recommendations, following CARE (Lin et al., WWW 2026).

Definitions match CARE's released evaluation (`compute_div_or_ratio` in
Linxyhaha/CARE, code/inference_divratio.py): both ratios are over all U*K recommendation
slots. One difference: empty slots (item -1) count in the denominator but are never an item,
so a model that returns fewer items scores lower diversity rather than being excused.
"""

from __future__ import annotations

import numpy as np

from genrec_ml.eval.inputs import PADDING, check_k, check_topk


def _recommended_items(topk, k: int) -> tuple[np.ndarray, int]:
    """Item ids in all users' first k slots (padding dropped) and the slot count U*k."""
    topk = check_topk(topk)
    check_k(k, topk.shape[1])
    slots = topk[:, :k]  # (U, k)
    return slots[slots != PADDING], slots.size


def diversity_ratio_at_k(topk, k: int) -> float:
    r"""DivR@K = |\bigcup_u R_u(K)| / (U \cdot K).

    The number of distinct items recommended to anyone, over the number of slots. 1 means no
    item is shown twice; 1/(U K) means everyone gets the same single item.
    """
    items, n_slots = _recommended_items(topk, k)
    return len(np.unique(items)) / n_slots


def over_recommendation_ratio_at_k(topk, k: int, top_n: int = 10) -> float:
    r"""ORR@K = \sum_{i \in H_n} c_i / (U \cdot K).

    c_i counts the slots holding item i across all users' first K items, and H_n is the
    `top_n` items with the largest c_i: the share of all slots taken by the n most
    over-recommended items (higher = more concentrated). CARE's released code reports n = 10
    (its function default is 3). For a share-of-catalog variant, such as the top 1% of items,
    pass `top_n = max(1, ceil(0.01 * n_items))`.
    """
    items, n_slots = _recommended_items(topk, k)
    counts = np.sort(np.unique(items, return_counts=True)[1])[::-1]  # largest c_i first
    return float(counts[:top_n].sum()) / n_slots
