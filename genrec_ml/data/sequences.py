"""Next-item examples as padded token tensors for SID sequence models.

One example (a row of the `splits` table) becomes the encoder input

    [user token] + SID tokens of history item 1 + ... + SID tokens of history item n [+ EOS]

(oldest item first, T = n * L history tokens; no user token when the vocabulary has no user
buckets) and the target item's L codes. Token ids come from `SidVocab`, so every model that
shares the vocabulary reads the same batches. Batches are right-padded: T5's relative position
bias then sees the real tokens at the same distances whatever the padding.

`SequenceDataset.batch(indices)` builds a batch with a few gathers on the dataset's device (the
training loop's path); `__getitem__` + `collate` is the per-example reference it is tested against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from genrec_ml.data.examples import HistoryExamples
from genrec_ml.errors import GenrecDataError
from genrec_ml.vocab import BOS as EOS
from genrec_ml.vocab import PAD, SidVocab


class SequenceDataset(HistoryExamples):
    """Examples (user_index, target_item_index, history) over a catalog of SIDs.

    `sids: (N_items, L)` codes of every item (row = item index); `max_history` keeps only the most
    recent items of longer histories (None keeps them all).
    """

    def __init__(self, examples: pd.DataFrame, sids, vocab: SidVocab, max_history: int | None = None):
        sids = torch.as_tensor(np.asarray(sids), dtype=torch.long)
        if sids.ndim != 2 or sids.shape[1] != vocab.n_levels:
            raise GenrecDataError(
                f"SIDs of shape {tuple(sids.shape)} do not match the vocabulary's {vocab.n_levels} levels",
                field="sids",
            )
        super().__init__(examples, sids.shape[0], max_history)
        self.vocab = vocab
        self.sids = sids  # (N_items, L) codes
        self.item_tokens = vocab.code_tokens(sids)  # (N_items, L) token ids

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        items = self.history[self.offsets[i] : self.offsets[i + 1]]  # (n,)
        tokens = self.item_tokens[items].reshape(-1)  # (n * L,), item-major: all levels of item 1 first
        if self.vocab.n_user_buckets:
            tokens = torch.cat([self.vocab.user_tokens(self.users[i : i + 1]), tokens])
        if self.vocab.history_eos:
            tokens = torch.cat([tokens, tokens.new_full((1,), EOS)])
        target = self.target_items[i]
        return {
            "input_ids": tokens,
            "targets": self.sids[target],  # (L,) codes, not token ids
            "target_items": target,
            "user_index": self.users[i],
        }

    def batch(self, indices: np.ndarray) -> dict[str, Tensor]:
        """`collate([self[i] for i in indices])`, built by gathers on the dataset's device."""
        items, real, longest = self.history_matrix(indices, left_aligned=True)  # (B, n_max) each
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.device)  # (B,)
        tokens = self.item_tokens[items].flatten(1)  # (B, n_max * L), item-major
        mask = real.repeat_interleave(self.vocab.n_levels, dim=1)  # (B, n_max * L)
        if self.vocab.n_user_buckets:
            users = self.vocab.user_tokens(self.users[index])[:, None]  # (B, 1)
            tokens, mask = torch.cat([users, tokens], 1), torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
        users = int(bool(self.vocab.n_user_buckets))
        width = max(users + longest * self.vocab.n_levels + self.vocab.history_eos, 1)  # as `collate` pads
        tokens, mask = tokens[:, :width], mask[:, :width]
        if self.vocab.history_eos:  # one more column; each row's EOS right after its last item
            tokens, mask = F.pad(tokens, (0, 1), value=PAD)[:, :width], F.pad(mask, (0, 1))[:, :width]
            end = users + (self.offsets[index + 1] - self.offsets[index]) * self.vocab.n_levels  # (B,)
            rows = torch.arange(len(index), device=self.device)
            tokens[rows, end], mask[rows, end] = EOS, True
        targets = self.target_items[index]
        return {
            "input_ids": tokens.masked_fill(~mask, PAD),  # (B, S)
            "attention_mask": mask,  # (B, S)
            "targets": self.sids[targets],  # (B, L)
            "target_items": targets,  # (B,)
            "user_index": self.users[index],  # (B,)
        }


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
