"""Shared checks that turn metric inputs into numpy arrays with clear errors."""

from __future__ import annotations

import numpy as np
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError

PADDING = -1  # item id of an empty slot in a ranked list


def to_numpy(values) -> np.ndarray:
    """numpy view of a numpy array, list or torch tensor (on any device)."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def check_topk(topk) -> np.ndarray:
    """(U, K_max) integer item ids, ranked best first, PADDING for empty slots."""
    topk = to_numpy(topk)
    if topk.ndim != 2 or not np.issubdtype(topk.dtype, np.integer):
        raise GenrecDataError(
            f"topk must be a (U, K_max) integer array of item ids, got shape {topk.shape} "
            f"and dtype {topk.dtype}",
            field="topk",
        )
    return topk


def check_targets(targets, n_users: int) -> np.ndarray:
    """(U,) held-out item id per user; negative ids would collide with PADDING."""
    targets = to_numpy(targets)
    if targets.shape != (n_users,) or not np.issubdtype(targets.dtype, np.integer):
        raise GenrecDataError(
            f"targets must be ({n_users},) integer item ids, one per row of topk, "
            f"got shape {targets.shape} and dtype {targets.dtype}",
            field="targets",
        )
    if (targets < 0).any():
        raise GenrecDataError(
            f"target of user {int(np.argmax(targets < 0))} is negative; item ids start at 0",
            field="targets",
        )
    return targets


def check_k(k: int, k_max: int) -> int:
    if not 1 <= k <= k_max:
        raise GenrecConfigError(
            "k",
            f"K={k} needs 1 <= K <= {k_max}, the length of the ranked lists; decode at least "
            f"K items per user (top_k >= {k}) or drop this K",
        )
    return k
