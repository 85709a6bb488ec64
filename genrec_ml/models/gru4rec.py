"""GRU4Rec (Hidasi et al., ICLR 2016), in RecBole's form for user histories.

    h = GRU(dropout(E[item_1..n])),  score(i) = W h_n . E[i]

The last GRU state, projected back to the embedding size, scores every item against the
shared item embedding, trained with full-softmax cross-entropy (RecBole's default). The paper's
session-parallel mini-batches and ranking losses (BPR, TOP1) are left out: every prefix is
already its own example in the `splits` table.

A GRU updates its state even on a zero (padding) input, so left padding would leak into the
state. Each row is therefore rotated so that its items come first, run through the GRU, and
rotated back: the state at an item then depends on that item and the ones before it only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.models.item_model import (
    ItemModel,
    ItemModelConfig,
    catalog_scores,
    check_at_least,
    check_probability,
)


@dataclass(frozen=True)
class GRU4RecConfig(ItemModelConfig):
    d_model: int = 64  # item embedding size (RecBole's embedding_size)
    d_hidden: int = 128  # GRU state size (RecBole's hidden_size)
    n_layers: int = 1  # stacked GRU layers (RecBole: 1)
    dropout: float = 0.2  # on the item embeddings

    def __post_init__(self):
        super().__post_init__()
        check_at_least(self, 1, "d_model", "d_hidden", "n_layers")
        check_probability(self, "dropout")


class GRU4Rec(ItemModel):
    name = "gru4rec"
    config_class = GRU4RecConfig

    def __init__(self, config: GRU4RecConfig):
        super().__init__(config)
        self.item_embedding = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.d_model, config.d_hidden, num_layers=config.n_layers, batch_first=True)
        self.project = nn.Linear(config.d_hidden, config.d_model)
        self.init_weights()  # the GRU keeps PyTorch's uniform init

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """`(logits (B, n_items), loss)` for the item after the last history item."""
        logits = self.next_item_scores(batch)  # (B, N)
        return logits, F.cross_entropy(logits.float(), self.targets(batch))

    def next_item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        hidden = self.encode(self.history(batch))  # (B, T, d)
        return catalog_scores(hidden[:, -1], self.item_embedding, self.config.n_items)  # (B, N)

    def encode(self, history: Tensor) -> Tensor:
        """`(B, T)` left-padded history -> `(B, T, d)`; position t sees items 0..t only."""
        T = history.shape[1]
        shift = (T - (history != 0).sum(1)) % T  # (B,) padding columns in front of each row
        items_first = _rotate(history, shift)  # (B, T) items, then the padding
        states, _ = self.gru(self.dropout(self.item_embedding(items_first)))  # (B, T, d_hidden)
        return self.project(_rotate(states, -shift))  # (B, T, d), back to left-padded columns


def _rotate(x: Tensor, shift: Tensor) -> Tensor:
    """Row b of `x (B, T, ...)` rotated left by shift[b] columns: out[b, t] = x[b, (t + shift[b]) % T]."""
    B, T = x.shape[:2]
    index = (torch.arange(T, device=x.device)[None, :] + shift[:, None]) % T  # (B, T)
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)  # (B, T, ...) like x
    return x.gather(1, index)
