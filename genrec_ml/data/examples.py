"""What every next-item dataset holds: rows of the `splits` table as flat device tensors.

`HistoryExamples` keeps all histories in one flat item tensor with per-example offsets, so a
batch is built by a few gathers (`history_matrix`) instead of a Python loop over examples, and
the whole dataset can live on the training device: no host-to-device copy per step. The
per-example `__getitem__` + `collate` of the subclasses is the plain reference the batch fast
path is tested against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from genrec_ml.errors import GenrecConfigError, GenrecDataError

EXAMPLE_COLUMNS = ("user_index", "target_item_index", "history")


class HistoryExamples(Dataset):
    """Examples (user_index, target_item_index, history) over a catalog of `n_items` items.

    `max_history` keeps only the most recent items of longer histories (None keeps them all).
    """

    def __init__(self, examples: pd.DataFrame, n_items: int, max_history: int | None = None):
        check_columns(examples)
        self.n_items = n_items
        self.users = torch.as_tensor(examples["user_index"].to_numpy(dtype=np.int64))  # (E,)
        self.target_items = torch.as_tensor(examples["target_item_index"].to_numpy(dtype=np.int64))  # (E,)
        history, offsets = flatten_histories(examples["history"], max_history)
        self.history = history  # (sum n_i,) item indices, example after example, oldest first
        self.offsets = torch.as_tensor(offsets)  # (E + 1,) example i's items are history[offsets[i]:offsets[i+1]]
        self.lengths = np.diff(offsets)  # (E,) history items per example, on the host for batch planning
        self._check_item_range(self.target_items, "target_item_index")
        self._check_item_range(self.history, "history")

    def __len__(self) -> int:
        return len(self.target_items)

    @property
    def device(self) -> torch.device:
        return self.history.device

    def to(self, device: torch.device | str) -> HistoryExamples:
        """Move every tensor to `device` (in place; returns self)."""
        for name, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(self, name, value.to(device))
        return self

    def history_matrix(self, indices: np.ndarray, left_aligned: bool) -> tuple[Tensor, Tensor, int]:
        """`(items (B, T), real (B, T) bool, longest)` of the examples `indices`: `longest` is their longest
        history (from the host-side lengths), T = max(longest, 1).

        Left-aligned puts each history at columns 0..n-1 (right padding); otherwise at T-n..T-1,
        so column T-1 is always the most recent item (left padding). Padded cells hold item 0.
        The width comes from the host-side lengths, so a batch on the GPU needs no device sync.
        """
        indices = np.asarray(indices, dtype=np.int64)
        longest = int(self.lengths[indices].max()) if len(indices) else 0
        width = max(longest, 1)
        index = torch.as_tensor(indices, device=self.device)  # (B,)
        starts = self.offsets[index]  # (B,)
        lengths = self.offsets[index + 1] - starts  # (B,)
        columns = torch.arange(width, device=self.device)[None, :]  # (1, T)
        if left_aligned:
            real = columns < lengths[:, None]  # (B, T)
            position = starts[:, None] + columns
        else:
            shift = width - lengths  # (B,) padded columns before the history
            real = columns >= shift[:, None]
            position = starts[:, None] + columns - shift[:, None]
        position = position.clamp(0, max(len(self.history) - 1, 0))
        items = self.history[position] if len(self.history) else torch.zeros_like(position)  # (B, T)
        return items.masked_fill(~real, 0), real, longest

    def _check_item_range(self, items: Tensor, field: str) -> None:
        bad = (items < 0) | (items >= self.n_items)
        if bad.any():
            position = int(bad.nonzero()[0])
            row = position if field == "target_item_index" else self._history_row(position)
            raise GenrecDataError(
                f"example row {row} refers to item {int(items[position])}, outside the catalog's {self.n_items} "
                "items; the splits and the catalog must come from the same item index",
                field=field,
            )

    def _history_row(self, position: int) -> int:
        """Example row holding the `position`-th item of all histories."""
        return int(np.searchsorted(self.offsets.cpu().numpy(), position, side="right")) - 1


def check_columns(examples: pd.DataFrame) -> None:
    missing = [c for c in EXAMPLE_COLUMNS if c not in examples.columns]
    if missing:
        raise GenrecDataError(
            f"examples lack columns {missing}; pass rows of the `splits` table (one scheme and split)",
            field=missing[0],
        )


def flatten_histories(histories: pd.Series, max_history: int | None) -> tuple[Tensor, np.ndarray]:
    """All histories in one (sum n_i,) item tensor, and (E + 1,) offsets of each example's slice."""
    if max_history is not None and max_history < 1:
        raise GenrecConfigError("max_history", f"must be >= 1 or None, got {max_history}")
    kept = [np.asarray(h, dtype=np.int64) for h in histories]
    if max_history is not None:
        kept = [h[-max_history:] for h in kept]
    lengths = np.fromiter((len(h) for h in kept), dtype=np.int64, count=len(kept))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(flat, dtype=torch.long), offsets
