"""CoT anchor states (LASAR §2.3): the Stage-1 backbone's last-layer hidden state at the last token of each
teacher CoT segment, computed once before Stage 2, stored float16, one row per example and segment.

The backbone reads a segment as plain text, without the prompt around it: "the same backbone model
then encodes each segment (offline, before training) and extracts the last-token hidden state from
the final Transformer layer" (§2.3). The states are the backbone's final normed outputs, the same
states the latent loop produces (`genrec_ml.models.lasar`), so eq. 4 compares like with like. Each
distinct segment text is encoded once; texts are batched by length.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from genrec_ml.errors import GenrecDataError

ANCHOR_COLUMNS = ("user_index", "target_position", "segment", "state")


@torch.no_grad()
def encode_last_states(model, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """(n, d) float32: last-token, last-layer hidden state of each text under `model` (a MiniOneRec-family
    model: `tokenizer`, `lm`, `config.max_positions`); texts longer than max_positions keep their end."""
    model.eval()
    ids = [encoding.ids[-model.config.max_positions:] or [0] for encoding in model.tokenizer.encode_batch(list(texts))]
    order = np.argsort([len(i) for i in ids], kind="stable")
    states = np.zeros((len(ids), model.config.d_model), dtype=np.float32)
    device = model.device
    for start in tqdm(range(0, len(order), batch_size), desc="anchor states", disable=not progress):
        rows = order[start:start + batch_size]
        lengths = torch.tensor([len(ids[r]) for r in rows], device=device)  # (b,)
        tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long, device=device)  # right-padded
        for i, r in enumerate(rows):
            tokens[i, :len(ids[r])] = torch.tensor(ids[r], device=device)
        mask = torch.arange(tokens.shape[1], device=device)[None, :] < lengths[:, None]
        hidden = model.lm.model(input_ids=tokens, attention_mask=mask.long()).last_hidden_state  # (b, T, d)
        states[rows] = hidden[torch.arange(len(rows), device=device), lengths - 1].float().cpu().numpy()
    return states


def cot_anchor_rows(model, cot: pd.DataFrame, batch_size: int = 128, progress: bool = False) -> pd.DataFrame:
    """Rows of `cot_texts` (user_index, target_position, segments) -> one row per example and segment:
    user_index, target_position, segment (0-based), state (float16 bytes of the (d,) hidden state)."""
    segments = [list(s) for s in cot["segments"]]
    texts = sorted({text for example in segments for text in example})
    position = {text: i for i, text in enumerate(texts)}
    states = encode_last_states(model, texts, batch_size, progress).astype(np.float16)
    counts = np.array([len(s) for s in segments], dtype=np.int64)
    return pd.DataFrame({
        "user_index": np.repeat(cot["user_index"].to_numpy(dtype=np.int64), counts),
        "target_position": np.repeat(cot["target_position"].to_numpy(dtype=np.int64), counts),
        "segment": np.concatenate([np.arange(n) for n in counts]) if len(counts) else np.zeros(0, np.int64),
        "state": [states[position[text]].tobytes() for example in segments for text in example],
    }, columns=ANCHOR_COLUMNS)


def anchors_by_example(rows: pd.DataFrame, width: int | None = None) -> pd.DataFrame:
    """Stored anchor rows -> one row per example: user_index, target_position, n_segments, anchors ((S, d)
    float16). Errors name the example whose segments are not 0..S-1 or whose state is not `width` wide
    (default: the first row's width)."""
    rows = rows.sort_values(["user_index", "target_position", "segment"])
    if width is None:
        width = len(rows["state"].iloc[0]) // 2 if len(rows) else 1
    sizes = rows["state"].map(len).to_numpy()
    if len(rows) and (sizes != 2 * width).any():
        bad = rows.iloc[int(np.flatnonzero(sizes != 2 * width)[0])]
        raise GenrecDataError(f"the anchor of user_index {bad['user_index']}, target_position "
                              f"{bad['target_position']} is {len(bad['state']) // 2} wide, the backbone {width}; "
                              "materialize cot_anchor_states again from this Stage-1 checkpoint", field="state")
    flat = np.frombuffer(b"".join(rows["state"]), dtype=np.float16).reshape(-1, width)
    keys = rows[["user_index", "target_position"]].to_numpy()
    starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)]) if len(rows) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(rows)]
    segment = rows["segment"].to_numpy()
    for start, end in zip(starts, ends, strict=True):
        if not np.array_equal(segment[start:end], np.arange(end - start)):
            raise GenrecDataError(f"example user_index {keys[start][0]}, target_position {keys[start][1]} has "
                                  f"segments {segment[start:end].tolist()}, not 0..{end - start - 1}", field="segment")
    return pd.DataFrame({"user_index": keys[starts, 0] if len(rows) else [],
                         "target_position": keys[starts, 1] if len(rows) else [],
                         "n_segments": ends - starts,
                         "anchors": [flat[s:e] for s, e in zip(starts, ends, strict=True)]})


def stage1_anchor_rows(checkpoint: str | Path, cot: pd.DataFrame, batch_size: int = 128, device: str = "cpu",
                       progress: bool = False) -> pd.DataFrame:
    """`cot_anchor_rows` under the Stage-1 model stored in `checkpoint` (MiniOneRec's best.pt)."""
    from genrec_ml.train.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint, device)
    if not hasattr(model, "tokenizer"):
        raise GenrecDataError(f"{model.name} reads no text: anchors need a decoder-only Stage-1 model "
                              "(minionerec)", path=checkpoint)
    return cot_anchor_rows(model, cot, batch_size, progress)
