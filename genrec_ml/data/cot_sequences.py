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

COT_FIELDS = ("n_segments", "anchors")
TEXT_FIELD = "cot_text"


def ragged_rows(values: Tensor, offsets: Tensor, counts: Tensor, host_counts: np.ndarray, indices: np.ndarray
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Rows `indices` of a ragged table (example i's rows are `values[offsets[i]:offsets[i + 1]]`, `counts[i]`
    of them) as `(gathered (B, W, ...) zero past each count, real (B, W), counts (B,))`, W = the longest (>= 1),
    read from `host_counts` so that a batch on the GPU needs no device sync."""
    indices = np.asarray(indices, dtype=np.int64)
    longest = max(int(host_counts[indices].max()) if len(indices) else 0, 1)
    index = torch.as_tensor(indices, device=values.device)
    chosen = counts[index]  # (B,)
    real = torch.arange(longest, device=values.device)[None, :] < chosen[:, None]  # (B, W)
    if not len(values):
        return values.new_zeros(len(indices), longest, *values.shape[1:]), real, chosen
    flat = (offsets[index][:, None] + torch.arange(longest, device=values.device)).clamp(max=len(values) - 1)
    mask = real.view(*real.shape, *([1] * (values.dim() - 1)))
    return values[flat] * mask.to(values.dtype), real, chosen


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
    joined = _join(examples, cot[["user_index", "target_position", *COT_FIELDS]])
    joined["n_segments"] = joined["n_segments"].fillna(0).astype("int64")
    return joined


def attach_cot_texts(examples: pd.DataFrame, cot: pd.DataFrame) -> pd.DataFrame:
    """`examples` with `cot_text` from rows of `cot_texts` (user_index, target_position, segments): the
    segments joined by spaces, "" where an example has none."""
    texts = cot[["user_index", "target_position"]].assign(
        **{TEXT_FIELD: [" ".join(str(s) for s in segments) for segments in cot["segments"]]})
    joined = _join(examples, texts)
    joined[TEXT_FIELD] = joined[TEXT_FIELD].fillna("")
    return joined


def _join(examples: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One CoT row (or none) per example, by (user_index, target_position)."""
    if "target_position" not in examples.columns:
        raise GenrecDataError("examples lack target_position; pass rows of the `splits` table",
                              field="target_position")
    return examples.merge(rows, on=["user_index", "target_position"], how="left", validate="one_to_one")


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
        tokens, _, lengths = ragged_rows(self.cot_tokens, self.cot_offsets, self.cot_lengths, self.cot_counts, indices)
        return {**batch, "cot_ids": tokens, "cot_lengths": lengths}  # zero = PAD past each length


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
        states, _, counts = ragged_rows(self.anchor_states, self.anchor_offsets, self.n_segments,
                                        self.anchor_counts, indices)
        return {**batch, "n_segments": counts, "anchors": states.float()}  # (B,), (B, S_max, d) zero past S
