"""Ranking and diversity metrics against hand-computed values and a per-user loop."""

import math

import numpy as np
import pytest
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.eval import (
    METRICS,
    diversity_ratio_at_k,
    evaluate,
    mrr,
    ndcg_at_k,
    over_recommendation_ratio_at_k,
    recall_at_k,
    target_ranks,
)

TOPK = np.array(
    [
        [3, 1, 4, 5, 9],
        [2, 7, 1, 8, -1],
        [6, 0, -1, -1, -1],
        [1, 2, 3, 4, 5],
    ]
)
TARGETS = np.array([4, 2, 3, 7])
# 0-based target ranks: user 0 -> 2, user 1 -> 0, users 2 and 3 -> absent.


def test_target_ranks():
    assert target_ranks(TOPK, TARGETS).tolist() == [2, 0, -1, -1]


def test_recall_by_hand():
    assert recall_at_k(TOPK, TARGETS, 1) == pytest.approx(1 / 4)  # user 1 only
    assert recall_at_k(TOPK, TARGETS, 3) == pytest.approx(2 / 4)  # users 0 and 1
    assert recall_at_k(TOPK, TARGETS, 5) == pytest.approx(2 / 4)


def test_ndcg_by_hand():
    assert ndcg_at_k(TOPK, TARGETS, 2) == pytest.approx(1 / 4)  # user 1: 1/log2(2) = 1
    # users 0 and 1: (1/log2(4) + 1/log2(2)) / 4 = (0.5 + 1) / 4
    assert ndcg_at_k(TOPK, TARGETS, 3) == pytest.approx(0.375)


def test_mrr_by_hand():
    assert mrr(TOPK, TARGETS) == pytest.approx((1 / 3 + 1 + 0 + 0) / 4)


def test_padding_never_counts_as_a_hit():
    topk = np.array([[-1, -1, -1], [5, -1, -1]])
    assert recall_at_k(topk, np.array([0, 5]), 3) == pytest.approx(1 / 2)
    assert mrr(topk, np.array([0, 5])) == pytest.approx(1 / 2)


def test_diversity_ratio_by_hand():
    # First 2 slots: 3 1 | 2 7 | 6 0 | 1 2 -> 6 distinct items over 8 slots.
    assert diversity_ratio_at_k(TOPK, 2) == pytest.approx(6 / 8)
    # All slots: items 0..9 are all recommended -> 10 distinct over 20 slots (padding counts).
    assert diversity_ratio_at_k(TOPK, 5) == pytest.approx(10 / 20)


def test_over_recommendation_ratio_by_hand():
    # First 5 slots: item 1 three times; items 2, 3, 4, 5 twice each; the rest once.
    assert over_recommendation_ratio_at_k(TOPK, 5, top_n=1) == pytest.approx(3 / 20)
    assert over_recommendation_ratio_at_k(TOPK, 5, top_n=2) == pytest.approx((3 + 2) / 20)
    # First 2 slots: 3 1 2 7 6 0 1 2 -> items 1 and 2 twice; the top-1 holds 2 of 8 slots.
    assert over_recommendation_ratio_at_k(TOPK, 2, top_n=1) == pytest.approx(2 / 8)


@pytest.mark.parametrize("metric", [recall_at_k, ndcg_at_k])
def test_k_above_list_length_is_a_clear_error(metric):
    with pytest.raises(GenrecConfigError, match="K=6 needs 1 <= K <= 5"):
        metric(TOPK, TARGETS, 6)


def test_evaluate_rejects_k_above_list_length():
    with pytest.raises(GenrecConfigError, match="K=10"):
        evaluate(TOPK, TARGETS, ks=(5, 10))


def test_negative_target_is_a_data_error():
    with pytest.raises(GenrecDataError, match="target of user 1 is negative"):
        recall_at_k(TOPK, np.array([4, -1, 3, 7]), 3)


def test_evaluate_names_every_metric_and_accepts_tensors():
    results = evaluate(torch.from_numpy(TOPK), torch.from_numpy(TARGETS), ks=(1, 3))
    per_k = [f"{name}@{k}" for name in ("recall", "ndcg", "divr", "orr") for k in (1, 3)]
    assert set(results) == {*per_k, "mrr"}
    assert results["recall@3"] == pytest.approx(0.5)
    assert results["ndcg@3"] == pytest.approx(0.375)
    assert results["mrr"] == pytest.approx(1 / 3)
    assert results["divr@1"] == pytest.approx(diversity_ratio_at_k(TOPK, 1))


def test_evaluate_rejects_unknown_metric_names():
    with pytest.raises(GenrecConfigError, match="unknown metric 'hr'"):
        evaluate(TOPK, TARGETS, ks=(5,), metrics=("recall", "hr"))
    assert set(METRICS) == {"recall", "ndcg", "mrr", "divr", "orr"}


def loop_reference(topk, targets, k):
    """Plain per-user Recall@K, NDCG@K and MRR."""
    recall = ndcg = reciprocal = 0.0
    for row, target in zip(topk.tolist(), targets.tolist(), strict=True):
        if target in row:
            rank = row.index(target)
            reciprocal += 1 / (rank + 1)
            if rank < k:
                recall += 1
                ndcg += 1 / math.log2(rank + 2)
    n = len(targets)
    return recall / n, ndcg / n, reciprocal / n


@pytest.mark.parametrize("seed", range(5))
def test_batched_metrics_match_per_user_loop(seed):
    rng = np.random.default_rng(seed)
    n_users, k_max, n_items = 200, 20, 60
    topk = np.stack([rng.permutation(n_items)[:k_max] for _ in range(n_users)])
    lengths = rng.integers(0, k_max + 1, n_users)
    topk[np.arange(k_max)[None, :] >= lengths[:, None]] = -1  # ragged lists, padded with -1
    targets = rng.integers(0, n_items, n_users)
    for k in (1, 5, 10, 20):
        recall, ndcg, reciprocal = loop_reference(topk, targets, k)
        assert recall_at_k(topk, targets, k) == pytest.approx(recall)
        assert ndcg_at_k(topk, targets, k) == pytest.approx(ndcg)
        assert mrr(topk, targets) == pytest.approx(reciprocal)
