"""Next-item examples as padded item-id tensors for the ID-based baselines (SASRec, GRU4Rec, ...).

One example (a row of the `splits` table) is a user's history of item indices, oldest first,
and the target item that follows it. Batches hold `item_index + 1` so that 0 can be padding,
and are LEFT-padded: position T-1 is always the most recent item, so a model reads its
prediction at the last column without gathering, and right-aligned position embeddings give
an item the same position whatever the batch pads to.

`ItemSequenceDataset.batch(indices)` builds a batch by gathers on the dataset's device (the
training loop's path); `__getitem__` + `collate_items` is the per-example reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from genrec_ml.data.examples import HistoryExamples
from genrec_ml.errors import GenrecConfigError

PAD_ITEM = 0  # padding id in `history`; item i is stored as i + 1


class ItemSequenceDataset(HistoryExamples):
    """Examples (user_index, target_item_index, history) over a catalog of `n_items` items.

    `max_history` keeps only the most recent items of longer histories (None keeps them all).
    """

    def __init__(self, examples: pd.DataFrame, n_items: int, max_history: int | None = None):
        if n_items < 1:
            raise GenrecConfigError("n_items", f"must be >= 1, got {n_items}")
        super().__init__(examples, n_items, max_history)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {
            "history": self.history[self.offsets[i] : self.offsets[i + 1]],  # (n,) 0-based item indices
            "target_items": self.target_items[i],
            "user_index": self.users[i],
        }

    def batch(self, indices: np.ndarray) -> dict[str, Tensor]:
        """`collate_items([self[i] for i in indices])`, built by gathers on the dataset's device."""
        items, real, _ = self.history_matrix(indices, left_aligned=False)  # (B, T) each
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.device)  # (B,)
        return {
            "history": (items + 1).masked_fill(~real, PAD_ITEM),  # (B, T)
            "lengths": real.sum(1),  # (B,)
            "target_items": self.target_items[index],  # (B,)
            "user_index": self.users[index],  # (B,)
        }


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
