"""Train/valid/test examples from cleaned interactions.

Two schemes, both per user and chronological:
- `loo`: leave-one-out — last item test, second-to-last valid, every earlier item a train target.
- `ratio`: each user's sequence cut 8:1:1 (configurable); valid and test get >= 1 item each.
Every example's history is the (at most `max_history`) items right before its target, so a
target never sees itself or anything after it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genrec_ml.config import SplitConfig

SPLIT_COLUMNS = ["scheme", "split", "user_index", "target_position", "target_item_index", "history"]
MIN_EVAL_LENGTH = 3  # a user needs one train, one valid and one test item to be evaluated


def build_splits(interactions: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """`interactions` sorted by (user_index, position) with positions 0..n-1 per user."""
    lengths = interactions.groupby("user_index", sort=True)["position"].size()
    frames = [
        _examples(interactions, lengths, "loo", *_loo_bounds(lengths), config.max_history),
        _examples(interactions, lengths, "ratio", *_ratio_bounds(lengths, config.ratio), config.max_history),
    ]
    return pd.concat(frames, ignore_index=True)[SPLIT_COLUMNS]


def _loo_bounds(lengths: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """First valid position and first test position per user (n for users too short to evaluate)."""
    n = lengths.to_numpy()
    evaluable = n >= MIN_EVAL_LENGTH
    return np.where(evaluable, n - 2, n), np.where(evaluable, n - 1, n)


def _ratio_bounds(lengths: pd.Series, ratio: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    n = lengths.to_numpy()
    evaluable = n >= MIN_EVAL_LENGTH
    n_test = np.maximum(1, np.rint(n * ratio[2]).astype(int))
    n_valid = np.maximum(1, np.rint(n * ratio[1]).astype(int))
    # Short sequences keep at least one train item: valid and test shrink, never below one each.
    n_test = np.minimum(n_test, n - 2)
    n_valid = np.minimum(n_valid, n - 1 - n_test)
    valid_start = n - n_test - n_valid
    return np.where(evaluable, valid_start, n), np.where(evaluable, n - n_test, n)


def _examples(interactions: pd.DataFrame, lengths: pd.Series, scheme: str,
              valid_start: np.ndarray, test_start: np.ndarray, max_history: int) -> pd.DataFrame:
    items = interactions["item_index"].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths.to_numpy())])
    users = lengths.index.to_numpy()
    rows = []
    for u, user in enumerate(users):
        seq = items[offsets[u]:offsets[u + 1]]
        for pos in range(1, len(seq)):
            split = "train" if pos < valid_start[u] else ("valid" if pos < test_start[u] else "test")
            rows.append((scheme, split, int(user), pos, int(seq[pos]),
                         seq[max(0, pos - max_history):pos].tolist()))
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS)
