"""The contract of the ID-based baselines and the pieces more than one of them uses.

Every item model reads batches of `genrec_ml.data.item_sequences.collate_items`:
`history (B, T)` holds item_index + 1 with 0 = padding, left-padded so column T-1 is the most
recent item, and `target_items (B,)` the 0-based next item. It implements

- `forward(batch) -> (logits (B, n_items), loss)`: the training loss; logits score every item for
  the predicted position.
- `next_item_scores(batch) -> (B, n_items)`: scores of every item for the next item, in the
  current train/eval mode. Callers use `full_sort_scores` (eval mode) or `recommend` (top-k).

Item 0-based index i is row i + 1 of every item embedding table (row 0 is padding), so the
catalog's scores are `hidden @ embedding.weight[1 : n_items + 1].T`.

Shared here because several models use them: the config base with `n_items` / `max_history`,
right-aligned position embeddings and the pre-LN transformer (SASRec, BERT4Rec, ReaRec).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.errors import GenrecConfigError


@dataclass(frozen=True)
class ItemModelConfig:
    n_items: int  # catalog size: models score item indices 0..n_items-1; set from the catalog
    max_history: int = 20  # most recent items a model reads (RecBole's MAX_ITEM_LIST_LENGTH for short Amazon data)

    def __post_init__(self):
        check_at_least(self, 1, "n_items", "max_history")


def check_at_least(config, minimum: float, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            raise GenrecConfigError(name, f"must be >= {minimum}, got {value}")


def check_probability(config, *names: str) -> None:
    """Dropout and masking rates: a rate of 1 would drop (or mask) everything."""
    for name in names:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise GenrecConfigError(name, f"must be in [0, 1), got {value}")


def check_choice(config, name: str, choices: tuple[str, ...]) -> None:
    if getattr(config, name) not in choices:
        raise GenrecConfigError(name, f"must be one of {choices}, got {getattr(config, name)!r}")


def check_heads(config) -> None:
    if config.d_model % config.n_heads:
        raise GenrecConfigError("n_heads", f"{config.n_heads} heads do not divide d_model = {config.d_model}")


class ItemModel(nn.Module):
    """Base of the models that score item ids; see the module docstring for the contract."""

    name: ClassVar[str]  # key in genrec_ml.models.registry.MODELS, stored in checkpoints
    config_class: ClassVar[type[ItemModelConfig]]
    input_kind = "items"  # the training loop ranks these by a full sort, not beam search

    def __init__(self, config: ItemModelConfig):
        super().__init__()
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def next_item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def full_sort_scores(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, n_items) float scores of every catalog item as the next item, without dropout."""
        with self.eval_mode():
            return self.next_item_scores(batch).float()

    @torch.no_grad()
    def recommend(self, batch: dict[str, Tensor], top_k: int = 10) -> tuple[Tensor, Tensor]:
        """`(items (B, top_k) 0-based, scores (B, top_k))`: the best of a full sort over every item.

        History items are not excluded: a user may well buy an item again.
        """
        if not 1 <= top_k <= self.config.n_items:
            raise GenrecConfigError("top_k", f"must be in [1, {self.config.n_items}] (the catalog size), got {top_k}")
        scores, items = self.full_sort_scores(batch).topk(top_k, dim=-1)  # (B, top_k) each
        return items, scores

    @contextlib.contextmanager
    def eval_mode(self):
        """Eval mode for the block, then back to the train/eval mode found."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def history(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, T') history on the model's device, T' <= max_history: the most recent columns."""
        return batch["history"][:, -self.config.max_history :].to(self.device)

    def targets(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["target_items"].to(self.device)  # (B,) 0-based

    def init_weights(self) -> None:
        """BERT-style init (RecBole's): N(0, 0.02) linear and embedding weights, zero padding rows."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])


def catalog_scores(hidden: Tensor, item_embedding: nn.Embedding, n_items: int) -> Tensor:
    """`(..., d)` user states -> `(..., n_items)` dot products with every item's embedding."""
    return hidden @ item_embedding.weight[1 : n_items + 1].T


def right_aligned_positions(table: nn.Embedding, length: int) -> Tensor:
    """`(length, d)` position embeddings counted back from the last column (which gets row 0).

    Batches are left-padded, so counting from the end gives the most recent item the same
    position whatever the padding: predictions do not depend on how long the batch is.
    """
    if length > table.num_embeddings:
        raise ValueError(f"{length} positions, the table holds {table.num_embeddings}")
    return table(torch.arange(length - 1, -1, -1, device=table.weight.device))


def attention_mask(valid: Tensor, causal: bool) -> Tensor:
    """`(B, T)` real-token mask -> `(B, T, T)` bool, True where query t may attend to key s.

    Keys are real tokens (and, if causal, s <= t). Every token may also attend to itself: a
    padding query would otherwise have no key at all, an empty softmax is NaN in some attention
    kernels, and that NaN would reach real tokens in the next layer (0 * NaN is NaN).
    """
    T = valid.shape[1]
    allowed = valid[:, None, :].expand(-1, T, -1)  # (B, T, T)
    if causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
    return allowed | torch.eye(T, dtype=torch.bool, device=valid.device)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # (B, T, d) each
        q, k, v = (t.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None], dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, d)  # (B, T, d)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block (as in the SASRec paper's code and nanoGPT), GELU MLP."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """`n_layers` pre-LN blocks and a final LayerNorm: `(B, T, d)`, `(B, T, T)` mask -> `(B, T, d)`."""

    def __init__(self, d_model: int, n_heads: int, n_layers: int, d_ff: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)
