"""Next-item examples as padded item-id tensors for the ID-based baselines (SASRec, GRU4Rec, ...).

One example (a row of the `splits` table) is a user's history of item indices, oldest first,
and the target item that follows it. Batches hold `item_index + 1` so that 0 can be padding,
and are LEFT-padded: position T-1 is always the most recent item, so a model reads its
prediction at the last column without gathering, and right-aligned position embeddings give
an item the same position whatever the batch pads to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from genrec_ml.data.sequences import _check_columns, _flatten_histories
from genrec_ml.errors import GenrecConfigError, GenrecDataError

PAD_ITEM = 0  # padding id in `history`; item i is stored as i + 1


class ItemSequenceDataset(Dataset):
    """Examples (user_index, target_item_index, history) over a catalog of `n_items` items.

    `max_history` keeps only the most recent items of longer histories (None keeps them all).
    """

    def __init__(self, examples: pd.DataFrame, n_items: int, max_history: int | None = None):
        _check_columns(examples)
        if n_items < 1:
            raise GenrecConfigError("n_items", f"must be >= 1, got {n_items}")
        self.n_items = n_items
        self.users = torch.as_tensor(examples["user_index"].to_numpy(dtype=np.int64))  # (E,)
        self.target_items = torch.as_tensor(examples["target_item_index"].to_numpy(dtype=np.int64))  # (E,)
        self.history, self.offsets = _flatten_histories(examples["history"], max_history)
        self._check_item_range(self.target_items, "target_item_index")
        self._check_item_range(self.history, "history")

    def __len__(self) -> int:
        return len(self.target_items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {
            "history": self.history[self.offsets[i] : self.offsets[i + 1]],  # (n,) 0-based item indices
            "target_items": self.target_items[i],
            "user_index": self.users[i],
        }

    def _check_item_range(self, items: Tensor, field: str) -> None:
        bad = (items < 0) | (items >= self.n_items)
        if bad.any():
            position = int(bad.nonzero()[0])
            row = position if field == "target_item_index" else self._history_row(position)
            raise GenrecDataError(
                f"example row {row} refers to item {int(items[position])}, outside the catalog's {self.n_items} "
                "items; the splits and n_items must come from the same item index",
                field=field,
            )

    def _history_row(self, position: int) -> int:
        """Example row holding the `position`-th item of all histories."""
        return int(np.searchsorted(self.offsets, position, side="right")) - 1


def collate_items(examples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack examples into a batch with the history left-padded by PAD_ITEM.

    Returns history (B, T) long (item_index + 1, 0 = padding, column T-1 the most recent item;
    T = longest history, at least 1), lengths (B,), target_items (B,) 0-based, user_index (B,).
    """
    lengths = torch.tensor([len(e["history"]) for e in examples], dtype=torch.long)  # (B,)
    width = max(int(lengths.max()), 1)  # an all-empty batch still gets one (padding) column
    history = torch.full((len(examples), width), PAD_ITEM, dtype=torch.long)  # (B, T)
    for row, example in enumerate(examples):
        n = len(example["history"])
        if n:
            history[row, width - n :] = example["history"] + 1
    return {
        "history": history,
        "lengths": lengths,
        "target_items": torch.stack([e["target_items"] for e in examples]),  # (B,)
        "user_index": torch.stack([e["user_index"] for e in examples]),  # (B,)
    }
