"""Next-item examples as padded token tensors for SID sequence models.

One example (a row of the `splits` table) becomes the encoder input

    [user token] + SID tokens of history item 1 + ... + SID tokens of history item n

(oldest item first, T = n * L history tokens; no user token when the vocabulary has no user
buckets) and the target item's L codes. Token ids come from `SidVocab`, so every model that
shares the vocabulary reads the same batches. Batches are right-padded: T5's relative position
bias then sees the real tokens at the same distances whatever the padding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.sid_vocab import PAD, SidVocab

EXAMPLE_COLUMNS = ("user_index", "target_item_index", "history")


class SequenceDataset(Dataset):
    """Examples (user_index, target_item_index, history) over a catalog of SIDs.

    `sids: (N_items, L)` codes of every item (row = item index); `max_history` keeps only the most
    recent items of longer histories (None keeps them all).
    """

    def __init__(self, examples: pd.DataFrame, sids, vocab: SidVocab, max_history: int | None = None):
        _check_columns(examples)
        sids = torch.as_tensor(np.asarray(sids), dtype=torch.long)
        if sids.ndim != 2 or sids.shape[1] != vocab.n_levels:
            raise GenrecDataError(
                f"SIDs of shape {tuple(sids.shape)} do not match the vocabulary's {vocab.n_levels} levels",
                field="sids",
            )
        self.vocab = vocab
        self.n_items = sids.shape[0]
        self.sids = sids  # (N_items, L) codes
        self.item_tokens = vocab.code_tokens(sids)  # (N_items, L) token ids
        self.users = torch.as_tensor(examples["user_index"].to_numpy(dtype=np.int64))  # (E,)
        self.target_items = torch.as_tensor(examples["target_item_index"].to_numpy(dtype=np.int64))  # (E,)
        self.history, self.offsets = _flatten_histories(examples["history"], max_history)
        self._check_item_range(self.target_items, "target_item_index")
        self._check_item_range(self.history, "history")

    def __len__(self) -> int:
        return len(self.target_items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        items = self.history[self.offsets[i] : self.offsets[i + 1]]  # (n,)
        tokens = self.item_tokens[items].reshape(-1)  # (n * L,), item-major: all levels of item 1 first
        if self.vocab.n_user_buckets:
            tokens = torch.cat([self.vocab.user_tokens(self.users[i : i + 1]), tokens])
        target = self.target_items[i]
        return {
            "input_ids": tokens,
            "targets": self.sids[target],  # (L,) codes, not token ids
            "target_items": target,
            "user_index": self.users[i],
        }

    def _check_item_range(self, items: Tensor, field: str) -> None:
        bad = (items < 0) | (items >= self.n_items)
        if bad.any():
            position = int(bad.nonzero()[0])
            raise GenrecDataError(
                f"example row {self._example_row(position, field)} refers to item {int(items[position])}, outside "
                f"the catalog's {self.n_items} items; the SIDs and the splits must come from the same item index",
                field=field,
            )

    def _example_row(self, position: int, field: str) -> int:
        """Example row of the `position`-th target, or of the `position`-th item of all histories."""
        if field == "target_item_index":
            return position
        return int(np.searchsorted(self.offsets, position, side="right")) - 1


def collate(examples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack examples into a batch; `input_ids` right-padded with PAD.

    Returns input_ids (B, S) long, attention_mask (B, S) bool (True on real tokens),
    targets (B, L) codes, target_items (B,), user_index (B,).
    """
    lengths = torch.tensor([len(e["input_ids"]) for e in examples])  # (B,)
    width = max(int(lengths.max()), 1)  # an all-empty batch still gets one (masked) position
    input_ids = torch.full((len(examples), width), PAD, dtype=torch.long)  # (B, S)
    for row, example in enumerate(examples):
        input_ids[row, : len(example["input_ids"])] = example["input_ids"]
    return {
        "input_ids": input_ids,
        "attention_mask": torch.arange(width)[None, :] < lengths[:, None],  # (B, S)
        "targets": torch.stack([e["targets"] for e in examples]),  # (B, L)
        "target_items": torch.stack([e["target_items"] for e in examples]),  # (B,)
        "user_index": torch.stack([e["user_index"] for e in examples]),  # (B,)
    }


def _check_columns(examples: pd.DataFrame) -> None:
    missing = [c for c in EXAMPLE_COLUMNS if c not in examples.columns]
    if missing:
        raise GenrecDataError(
            f"examples lack columns {missing}; pass rows of the `splits` table (one scheme and split)",
            field=missing[0],
        )


def _flatten_histories(histories: pd.Series, max_history: int | None) -> tuple[Tensor, np.ndarray]:
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
