"""The T5 decoder for beam search, with each user's encoder memory shared by all its beams.

HF's cached decoder keeps cross-attention keys and values per row. In beam search every row is
a beam, so each user's memory projections are copied W times (W = beams) and read W times per
step: at batch 256, beam 50, S = 81 and the paper's 4 decoder layers that is 4 GB of copies and
reads, most of a CPU decoding step. Here the cross-attention keys and values are computed once
per user, and the W beams' queries of one user attend to them as one (W·n)-row query block.
Self-attention (per beam, relative position bias, causal) and the feed-forward blocks are T5's,
computed with the modules of the HF decoder, so the weights are the trained model's; outputs
equal `T5Stack` with its KV cache up to float rounding (tested against it).

Row layout (what beam search and the brute-force scorer produce): the R rows are user-major
blocks of equal width, row r reading memory row r // (R / B). A stepper whose rows leave that
layout `regroup`s to one memory row per beam (HF's layout). Inference only: no dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers.models.t5.modeling_t5 import T5Stack


@dataclass
class BeamCache:
    """Per decoder layer: self-attention keys/values `(R, H, t, d_kv)` of each beam's tokens so
    far, and cross-attention keys/values `(B, H, S, d_kv)` of each user's memory."""

    self_keys: list[Tensor]
    self_values: list[Tensor]
    cross_keys: list[Tensor]
    cross_values: list[Tensor]

    @classmethod
    def start(cls, decoder: T5Stack, memory: Tensor) -> BeamCache:
        """Empty self-attention caches and every layer's memory projections; `memory: (B, S, d)`."""
        cross_keys, cross_values = [], []
        for block in decoder.block:
            attention = block.layer[1].EncDecAttention
            cross_keys.append(_heads(attention.k(memory), attention))  # (B, H, S, d_kv)
            cross_values.append(_heads(attention.v(memory), attention))
        rows = memory.shape[0]
        empty = [memory.new_zeros(rows, block.layer[0].SelfAttention.n_heads, 0,
                                  block.layer[0].SelfAttention.key_value_proj_dim) for block in decoder.block]
        return cls(empty, list(empty), cross_keys, cross_values)

    @property
    def users(self) -> int:
        return self.cross_keys[0].shape[0]

    @property
    def rows(self) -> int:
        """Beams (decoder rows) the cache holds."""
        return self.self_keys[0].shape[0]

    @property
    def length(self) -> int:
        """Decoder tokens cached per beam."""
        return self.self_keys[0].shape[2]

    def regroup(self, memory_rows: Tensor) -> BeamCache:
        """One memory row per beam, `memory_rows: (R,)` the current memory row of each beam."""
        return BeamCache(self.self_keys, self.self_values, [k.index_select(0, memory_rows) for k in self.cross_keys],
                         [v.index_select(0, memory_rows) for v in self.cross_values])

    def reorder(self, rows: Tensor) -> BeamCache:
        """Gather beams `rows: (R',)`; the memory projections are per user and stay as they are."""
        return BeamCache([k.index_select(0, rows) for k in self.self_keys],
                         [v.index_select(0, rows) for v in self.self_values], self.cross_keys, self.cross_values)


@torch.no_grad()
def decode_shared(decoder: T5Stack, embeds: Tensor, memory_mask: Tensor, cache: BeamCache) -> tuple[Tensor, BeamCache]:
    """Decoder outputs `(R, n, d)` for `embeds: (R, n, d)` after the cached tokens, and the grown cache.

    `memory_mask` is the user's `(B, S)` padding mask (1 = visible) or an additive `(B, 1, n|1, S)`
    mask (0 visible, a large negative value hidden), as CARE's progressive mask is.
    """
    if decoder.training:
        raise RuntimeError("decode_shared is for inference; put the model in eval mode")
    rows, n, _ = embeds.shape
    users = cache.users
    if rows % users:
        raise ValueError(f"{rows} decoder rows for {users} users: rows must be user-major blocks of equal width")
    width = rows // users
    past = cache.length
    first = decoder.block[0].layer[0].SelfAttention
    position_bias = first.compute_bias(n, past + n, device=embeds.device, past_seen_tokens=past)  # (1, H, n, t)
    future = torch.ones(n, past + n, dtype=torch.bool, device=embeds.device).triu(past + 1)  # key after query
    self_bias = position_bias.masked_fill(future, torch.finfo(position_bias.dtype).min)  # (1, H, n, t)
    cross_bias = _cross_bias(memory_mask, n, width, embeds.dtype)  # (B, 1, W*n | 1, S)
    hidden = embeds
    new_keys, new_values = [], []
    for index, block in enumerate(decoder.block):
        self_layer, cross_layer, feed_forward = block.layer[0], block.layer[1], block.layer[-1]
        attention = self_layer.SelfAttention
        normed = self_layer.layer_norm(hidden)
        keys = torch.cat([cache.self_keys[index], _heads(attention.k(normed), attention)], dim=2)  # (R, H, t, d_kv)
        values = torch.cat([cache.self_values[index], _heads(attention.v(normed), attention)], dim=2)
        new_keys.append(keys)
        new_values.append(values)
        attended = _attend(_heads(attention.q(normed), attention), keys, values, self_bias)  # (R, H, n, d_kv)
        hidden = hidden + attention.o(_merge_heads(attended))

        attention = cross_layer.EncDecAttention
        query = _heads(attention.q(cross_layer.layer_norm(hidden)), attention)  # (R, H, n, d_kv)
        heads, d_kv = query.shape[1], query.shape[3]
        grouped = query.view(users, width, heads, n, d_kv).transpose(1, 2).reshape(users, heads, width * n, d_kv)
        attended = _attend(grouped, cache.cross_keys[index], cache.cross_values[index], cross_bias)  # (B, H, W*n, d_kv)
        attended = attended.view(users, heads, width, n, d_kv).transpose(1, 2).reshape(rows, heads, n, d_kv)
        hidden = hidden + attention.o(_merge_heads(attended))
        hidden = feed_forward(hidden)
    hidden = decoder.final_layer_norm(hidden)
    return hidden, BeamCache(new_keys, new_values, cache.cross_keys, cache.cross_values)


def _cross_bias(memory_mask: Tensor, n: int, width: int, dtype: torch.dtype) -> Tensor:
    """Additive cross-attention bias `(B, 1, W*n, S)` or `(B, 1, 1, S)`: query row w*n + i gets row i."""
    if memory_mask.dim() == 2:
        hidden = torch.zeros(memory_mask.shape, dtype=dtype, device=memory_mask.device)
        return hidden.masked_fill(memory_mask == 0, torch.finfo(dtype).min)[:, None, None, :]
    if memory_mask.dim() != 4 or memory_mask.shape[2] not in (1, n):
        raise ValueError(f"cross-attention mask of shape {tuple(memory_mask.shape)}; expected (B, S) or "
                         f"(B, 1, {n} or 1, S)")
    return memory_mask if memory_mask.shape[2] == 1 else memory_mask.repeat(1, 1, width, 1)


def _heads(x: Tensor, attention) -> Tensor:
    """`(R, n, H*d_kv)` -> `(R, H, n, d_kv)`."""
    return x.view(x.shape[0], x.shape[1], attention.n_heads, attention.key_value_proj_dim).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """`(R, H, n, d_kv)` -> `(R, n, H*d_kv)`."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def _attend(query: Tensor, keys: Tensor, values: Tensor, bias: Tensor) -> Tensor:
    """T5 attention: no 1/sqrt(d) scaling, the bias (positions and masks) added to the scores."""
    scores = torch.matmul(query, keys.transpose(2, 3)) + bias  # (., H, q, k)
    weights = torch.softmax(scores.float(), dim=-1).to(values.dtype)
    return torch.matmul(weights, values)
