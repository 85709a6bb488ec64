"""Diagnostics per SID level: how well each token is generated, and popularity-bias growth.

CARE (Lin et al., WWW 2026) shows that generative recommenders favour popular tokens more and
more as decoding moves from coarse to fine levels; these functions measure that on our models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genrec_ml.errors import GenrecDataError
from genrec_ml.eval.inputs import PADDING, check_k, check_targets, check_topk, to_numpy

GROUPS = ("popular", "long-tail")


def per_level_token_recall(topk, targets, sids) -> np.ndarray:
    r"""(L,) TokenRecall@l = (1/U) \sum_u 1[s(\hat{i}_u)_{1..l} = s(target_u)_{1..l}].

    \hat{i}_u is user u's top-1 item and s(i)_{1..l} the first l codes of item i's SID, so entry
    l-1 is the share of users whose top-1 SID matches the target's first l levels. An empty
    top-1 slot (-1) matches nothing. The last entry equals Recall@1.
    """
    topk, targets, sids = _check_catalog_inputs(topk, targets, sids)
    top1 = topk[:, 0]  # (U,)
    generated = sids[np.maximum(top1, 0)]  # (U, L); padding rows are masked next
    matches = (generated == sids[targets]) & (top1 != PADDING)[:, None]  # (U, L)
    return np.logical_and.accumulate(matches, axis=1).mean(axis=0)


def per_level_prefix_recall(topk, targets, sids) -> np.ndarray:
    r"""(L,) PrefixRecall@K_l = (1/U) \sum_u 1[\exists i \in R_u(K): s(i)_{1..l} = s(target_u)_{1..l}].

    Any of user u's top-K items on the target's first l codes. Defined for any ranking, so an
    item-id model's list can be read on a SID catalog's levels; the last entry equals Recall@K.
    """
    topk, targets, sids = _check_catalog_inputs(topk, targets, sids)
    generated = sids[np.maximum(topk, 0)]  # (U, K, L)
    same = (generated == sids[targets][:, None, :]) & (topk != PADDING)[:, :, None]  # (U, K, L)
    return np.logical_and.accumulate(same, axis=2).any(axis=1).mean(axis=0)


@dataclass(frozen=True)
class TokenBiasResult:
    """Per-level token-popularity shares; column order of the (L, 2) arrays is GROUPS."""

    k: int
    popular_fraction: float
    generated_shares: np.ndarray  # (L, 2) shares of generated top-K tokens per group
    target_shares: np.ndarray  # (L, 2) shares of test-target tokens per group
    amplification: np.ndarray  # (L,) generated / target share of the popular group


def token_popularity_bias(
    topk,
    targets,
    sids,
    train_item_counts,
    k: int = 10,
    popular_fraction: float = 0.2,
    codebook_sizes: tuple[int, ...] | None = None,
) -> TokenBiasResult:
    r"""Amplification_l = P_gen(popular_l) / P_test(popular_l) for each SID level l.

    popular_l: the ceil(popular_fraction * K_l) level-l codes most frequent among training
    targets, code frequency being \sum_i train_item_counts[i] 1[s(i)_l = code] (ties go to the
    lower code); every other code is long-tail. P_gen is the share of level-l tokens of all
    users' first k generated items (empty slots skipped) that are popular; P_test the same over
    the test targets' tokens. 1 means no amplification; CARE quotes (ratio - 1) as a percent.
    The ratio is NaN where the test targets hold no popular token. K_l defaults to
    (largest code at level l) + 1; pass `codebook_sizes` when some codes never occur.
    """
    topk, targets, sids = _check_catalog_inputs(topk, targets, sids)
    check_k(k, topk.shape[1])
    counts = _check_item_counts(train_item_counts, sids.shape[0])
    sizes = codebook_sizes or tuple(int(c) + 1 for c in sids.max(axis=0))
    generated = topk[:, :k][topk[:, :k] != PADDING]  # item ids of all filled slots
    generated_shares, target_shares = [], []
    for level, size in enumerate(sizes):
        popular = _popular_codes(sids[:, level], counts, size, popular_fraction)  # (K_l,)
        generated_shares.append(_group_shares(popular[sids[generated, level]]))
        target_shares.append(_group_shares(popular[sids[targets, level]]))
    generated_shares, target_shares = np.array(generated_shares), np.array(target_shares)
    with np.errstate(divide="ignore", invalid="ignore"):
        amplification = generated_shares[:, 0] / target_shares[:, 0]
    amplification[target_shares[:, 0] == 0] = np.nan
    return TokenBiasResult(k, popular_fraction, generated_shares, target_shares, amplification)


def _popular_codes(codes: np.ndarray, item_counts: np.ndarray, size: int, fraction: float):
    """(K_l,) bool: the ceil(fraction * K_l) codes with the most training-target occurrences."""
    code_counts = np.bincount(codes, weights=item_counts, minlength=size)  # (K_l,)
    n_popular = max(1, math.ceil(fraction * size))
    popular = np.zeros(size, dtype=bool)
    popular[np.argsort(-code_counts, kind="stable")[:n_popular]] = True
    return popular


def _group_shares(is_popular: np.ndarray) -> tuple[float, float]:
    """(popular, long-tail) shares of a set of tokens; NaN for an empty set."""
    if is_popular.size == 0:
        return math.nan, math.nan
    popular_share = float(is_popular.mean())
    return popular_share, 1.0 - popular_share


def plot_token_bias(result: TokenBiasResult) -> Figure:
    """Popular-group share per level (generated vs test targets) beside the amplification."""
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(fig)  # headless: render with Agg whatever the process's pyplot backend
    shares_ax, ratio_ax = fig.subplots(1, 2)
    levels = np.arange(1, len(result.amplification) + 1)
    width = 0.4
    shares_ax.bar(levels - width / 2, result.generated_shares[:, 0], width, label="generated")
    shares_ax.bar(levels + width / 2, result.target_shares[:, 0], width, label="test targets")
    popular_pct = round(100 * result.popular_fraction)
    shares_ax.set(
        xlabel="SID level",
        ylabel=f"share of tokens in top-{popular_pct}% codes",
        title=f"Popular-token share (top-{result.k})",
        xticks=levels,
        ylim=(0, 1),
    )
    shares_ax.legend()
    ratio_ax.plot(levels, result.amplification, marker="o")
    ratio_ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)  # no amplification
    ratio_ax.set(
        xlabel="SID level",
        ylabel="generated / target share",
        title="Bias amplification",
        xticks=levels,
    )
    return fig


def _check_catalog_inputs(topk, targets, sids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    topk = check_topk(topk)
    targets = check_targets(targets, topk.shape[0])
    sids = to_numpy(sids)
    if sids.ndim != 2 or not np.issubdtype(sids.dtype, np.integer):
        raise GenrecDataError(
            f"sids must be an (N_items, L) integer array, got shape {sids.shape}", field="sids"
        )
    largest = max(int(topk.max(initial=PADDING)), int(targets.max(initial=PADDING)))
    if largest >= sids.shape[0]:
        raise GenrecDataError(
            f"item id {largest} has no SID: sids has only {sids.shape[0]} rows; pass the "
            "catalog's full SID table",
            field="sids",
        )
    return topk, targets, sids


def _check_item_counts(train_item_counts, n_items: int) -> np.ndarray:
    counts = to_numpy(train_item_counts)
    if counts.shape != (n_items,) or (counts < 0).any():
        raise GenrecDataError(
            f"train_item_counts must hold one non-negative count per catalog item "
            f"({n_items},), got shape {counts.shape}",
            field="train_item_counts",
        )
    return counts
