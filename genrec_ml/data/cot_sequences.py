"""SID examples that carry their teacher CoT's supervision: LASAR's policy-head label (the segment count)
and the anchor states its latent steps align to (LASAR §2.3), or the CoT text itself (the explicit-CoT
baseline, `genrec_ml.models.explicit_cot`).

`attach_cot` joins one row per example (user_index, target_position, n_segments, anchors (S, d)) onto
training examples; an example without a CoT gets n_segments 0 and no anchors (CE only). The anchors
of all examples sit in one flat float16 tensor with offsets, as the histories do, so a batch is a
gather; they are widened to float32 per batch (appendix E.3 keeps them on the CPU and converts them
per batch; here they live on the training device, which a GPU's memory affords: 131k Beauty
examples x 4.3 segments x 1024 x 2 bytes = 1.2 GB at Qwen3-0.6B's width).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from genrec_ml.data.sequences import SequenceDataset
from genrec_ml.errors import GenrecDataError
from genrec_ml.vocab import PAD

COT_FIELDS = ("n_segments", "anchors")
TEXT_FIELD = "cot_text"


def attach_supervision(examples: pd.DataFrame, cot: pd.DataFrame) -> pd.DataFrame:
    """`attach_cot` for anchor rows (`anchors_by_example`), `attach_cot_texts` for rows of `cot_texts`."""
    if "anchors" in cot.columns:
        return attach_cot(examples, cot)
    if "segments" in cot.columns:
        return attach_cot_texts(examples, cot)
    raise GenrecDataError(f"CoT rows with columns {list(cot.columns)} hold neither anchors nor segments",
                          field="cot")


def attach_cot(examples: pd.DataFrame, cot: pd.DataFrame) -> pd.DataFrame:
    """`examples` (rows of `splits`, with target_position) with `n_segments` and `anchors` from `cot`."""
    if "target_position" not in examples.columns:
        raise GenrecDataError("examples lack target_position; pass rows of the `splits` table",
                              field="target_position")
    joined = examples.merge(cot[["user_index", "target_position", *COT_FIELDS]],
                            on=["user_index", "target_position"], how="left", validate="one_to_one")
    joined["n_segments"] = joined["n_segments"].fillna(0).astype("int64")
    return joined


def attach_cot_texts(examples: pd.DataFrame, cot: pd.DataFrame) -> pd.DataFrame:
    """`examples` with `cot_text` from rows of `cot_texts` (user_index, target_position, segments): the
    segments joined by spaces, "" where an example has none."""
    if "target_position" not in examples.columns:
        raise GenrecDataError("examples lack target_position; pass rows of the `splits` table",
                              field="target_position")
    texts = cot[["user_index", "target_position"]].assign(
        **{TEXT_FIELD: [" ".join(str(s) for s in segments) for segments in cot["segments"]]})
    joined = examples.merge(texts, on=["user_index", "target_position"], how="left", validate="one_to_one")
    joined[TEXT_FIELD] = joined[TEXT_FIELD].fillna("")
    return joined


class CotTextSequenceDataset(SequenceDataset):
    """`SequenceDataset` whose batches add the CoT's token ids: `cot_ids (B, C_max)` right-padded with PAD and
    `cot_lengths (B,)` (0 = no CoT; C_max >= 1). `encode` turns texts into token-id lists (the model's
    tokenizer); each keeps its first `max_tokens` tokens."""

    def __init__(self, examples: pd.DataFrame, sids, vocab, max_history: int | None = None, *,
                 encode, max_tokens: int | None = None):
        super().__init__(examples, sids, vocab, max_history)
        ids = [list(row)[:max_tokens] if text else [] for row, text in
               zip(encode(list(examples[TEXT_FIELD])), examples[TEXT_FIELD], strict=True)]
        counts = np.array([len(row) for row in ids], dtype=np.int64)
        self.cot_lengths = torch.as_tensor(counts)  # (E,)
        self.cot_offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]))  # (E + 1,)
        self.cot_tokens = torch.as_tensor(np.concatenate([np.asarray(r, np.int64) for r in ids]) if counts.sum()
                                          else np.zeros(0, np.int64))  # (sum C,)
        self.cot_counts = counts  # on the host: the batch's C_max without a device sync

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        example = super().__getitem__(i)
        return {**example, "cot_ids": self.cot_tokens[self.cot_offsets[i]:self.cot_offsets[i + 1]]}

    def batch(self, indices: np.ndarray) -> dict[str, Tensor]:
        batch = super().batch(indices)
        indices = np.asarray(indices, dtype=np.int64)
        longest = max(int(self.cot_counts[indices].max()) if len(indices) else 0, 1)
        index = torch.as_tensor(indices, device=self.device)
        lengths = self.cot_lengths[index]  # (B,)
        column = torch.arange(longest, device=self.device)[None, :]  # (1, C_max)
        real = column < lengths[:, None]
        flat = (self.cot_offsets[index][:, None] + column).clamp(max=max(len(self.cot_tokens) - 1, 0))
        tokens = self.cot_tokens[flat] if len(self.cot_tokens) else torch.zeros_like(flat)
        return {**batch, "cot_ids": tokens.masked_fill(~real, PAD), "cot_lengths": lengths}


class CotSequenceDataset(SequenceDataset):
    """`SequenceDataset` whose batches add `n_segments (B,)` and `anchors (B, S_max, d)` float32, zero
    past a row's S (S_max = 1 when no row of the batch has a CoT)."""

    def __init__(self, examples: pd.DataFrame, sids, vocab, max_history: int | None = None):
        super().__init__(examples, sids, vocab, max_history)
        counts = examples["n_segments"].to_numpy(dtype=np.int64)
        anchors = [a for a, n in zip(examples["anchors"], counts, strict=True) if n > 0]
        widths = {np.asarray(a).shape[-1] for a in anchors}
        if len(widths) > 1:
            raise GenrecDataError(f"anchors of several widths {sorted(widths)}", field="anchors")
        bad = [i for i, (a, n) in enumerate(zip(examples["anchors"], counts, strict=True))
               if n > 0 and np.asarray(a).shape[0] != n]
        if bad:
            raise GenrecDataError(f"example row {bad[0]} has {counts[bad[0]]} segments but "
                                  f"{np.asarray(examples['anchors'].iloc[bad[0]]).shape[0]} anchor states",
                                  field="anchors")
        width = widths.pop() if widths else 1
        self.n_segments = torch.as_tensor(counts)  # (E,)
        self.anchor_offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]))  # (E + 1,)
        self.anchor_states = torch.as_tensor(np.concatenate(anchors).astype(np.float16) if anchors
                                             else np.zeros((0, width), np.float16))  # (sum S, d)
        self.anchor_counts = counts  # on the host: the batch's S_max without a device sync

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        example = super().__getitem__(i)
        states = self.anchor_states[self.anchor_offsets[i]:self.anchor_offsets[i + 1]].float()  # (S, d)
        return {**example, "n_segments": self.n_segments[i], "anchors": states}

    def batch(self, indices: np.ndarray) -> dict[str, Tensor]:
        batch = super().batch(indices)
        indices = np.asarray(indices, dtype=np.int64)
        longest = max(int(self.anchor_counts[indices].max()) if len(indices) else 0, 1)
        index = torch.as_tensor(indices, device=self.device)
        counts = self.n_segments[index]  # (B,)
        column = torch.arange(longest, device=self.device)[None, :]  # (1, S_max)
        real = column < counts[:, None]  # (B, S_max)
        flat = (self.anchor_offsets[index][:, None] + column).clamp(max=max(len(self.anchor_states) - 1, 0))
        states = (self.anchor_states[flat].float() if len(self.anchor_states)
                  else torch.zeros(*flat.shape, self.anchor_states.shape[1], device=self.device))
        return {**batch, "n_segments": counts, "anchors": states * real[..., None]}  # (B,), (B, S_max, d)
