"""The popularity recommender: the floor every model must beat."""

from __future__ import annotations

import numpy as np

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.eval.inputs import PADDING, to_numpy


def popularity_topk(train_item_counts, n_users: int, k: int, exclude=None) -> np.ndarray:
    """(n_users, k) item ids by descending training count, ties to the lower item id.

    `exclude: (n_users, H)` item ids each user must not get (e.g. their history), padded with
    -1. When fewer than k items remain, the tail is -1, the same padding as beam search.
    """
    counts = to_numpy(train_item_counts)
    if counts.ndim != 1 or (counts < 0).any():
        raise GenrecDataError(
            "train_item_counts must be a 1-D array of non-negative counts, one per item",
            field="train_item_counts",
        )
    if k < 1:
        raise GenrecConfigError("k", f"must be at least 1, got {k}")
    ranked = np.argsort(-counts, kind="stable")  # (N,) most popular first
    if exclude is None:
        return np.tile(_pad(ranked[None, :k], k), (n_users, 1))
    return _pad(_first_allowed(ranked, _check_exclude(exclude, n_users), k), k)


def _first_allowed(ranked: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """(U, <=k) first k items of `ranked` that are not in the user's `exclude` row."""
    n_users, n_excluded = exclude.shape
    # Removing at most H items from the first k + H leaves at least k of them.
    candidates = np.tile(ranked[: k + n_excluded], (n_users, 1))  # (U, C)
    # One integer key per (user, item) pair makes membership a single vectorised isin.
    n_items, users = len(ranked), np.arange(n_users)[:, None]
    blocked = np.isin(
        users * n_items + candidates, (users * n_items + exclude)[exclude != PADDING]
    )  # (U, C)
    keep_order = np.argsort(blocked, axis=1, kind="stable")[:, :k]  # allowed items first
    picked = np.take_along_axis(candidates, keep_order, axis=1)  # (U, k')
    return np.where(np.take_along_axis(blocked, keep_order, axis=1), PADDING, picked)


def _check_exclude(exclude, n_users: int) -> np.ndarray:
    exclude = to_numpy(exclude)
    if exclude.ndim != 2 or exclude.shape[0] != n_users:
        raise GenrecDataError(
            f"exclude must be ({n_users}, H) item ids padded with -1, got shape {exclude.shape}",
            field="exclude",
        )
    return exclude


def _pad(items: np.ndarray, k: int) -> np.ndarray:
    missing = k - items.shape[1]
    return np.pad(items, ((0, 0), (0, missing)), constant_values=PADDING) if missing else items
