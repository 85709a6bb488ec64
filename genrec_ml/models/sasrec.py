"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item history.

    x_t = LayerNorm(E[item_t] + P[T-1-t]),  h = Transformer_causal(x),  score(i) = h_{T-1} . E[i]

The item embedding E scores the catalog too (shared input/output embeddings, as in the paper).
Positions P count back from the most recent item (batches are left-padded, see
`genrec_ml.models.item_model.right_aligned_positions`). The blocks are pre-LN, as in the
paper's code; RecBole's port is post-LN.

Only the last position is trained: the `splits` table already holds every prefix of each
user's sequence as its own example (RecBole's augmentation), which covers the paper's
every-position loss. Two losses (`loss`):

- "ce": full-softmax cross-entropy over the catalog, the stronger variant in later
  reproductions (e.g. Klenitskiy & Vasilev, RecSys 2023) and RecBole's default;
- "bce": the paper's binary cross-entropy with one negative per positive, drawn uniformly from
  the catalog minus the positive (the paper also avoids the user's history; we do not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.item_model import (
    ItemModel,
    ItemModelConfig,
    Transformer,
    attention_mask,
    catalog_scores,
    check_at_least,
    check_choice,
    check_heads,
    check_probability,
    right_aligned_positions,
)

LOSSES = ("ce", "bce")


@dataclass(frozen=True)
class SASRecConfig(ItemModelConfig):
    d_model: int = 64  # embedding and hidden size (RecBole's hidden_size)
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256  # MLP width, 4 * d_model (RecBole's inner_size)
    dropout: float = 0.2  # on embeddings, attention weights and residual branches
    loss: str = "ce"  # "ce": softmax over every item; "bce": the paper's one sampled negative

    def __post_init__(self):
        super().__post_init__()
        check_at_least(self, 1, "d_model", "n_layers", "n_heads", "d_ff")
        check_heads(self)
        check_probability(self, "dropout")
        check_choice(self, "loss", LOSSES)
        if self.loss == "bce" and self.n_items < 2:
            raise GenrecConfigError("loss", "'bce' needs a negative item, and the catalog has a single item")


class SASRec(ItemModel):
    name = "sasrec"
    config_class = SASRecConfig

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        self.item_embedding = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_history, config.d_model)
        self.input_norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.transformer = Transformer(config.d_model, config.n_heads, config.n_layers, config.d_ff, config.dropout)
        self.init_weights()

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """`(logits (B, n_items), loss)` for the item after the last history item."""
        logits = self.next_item_scores(batch)  # (B, N)
        targets = self.targets(batch)  # (B,)
        if self.config.loss == "ce":
            return logits, F.cross_entropy(logits.float(), targets)
        negatives = sample_negatives(targets, self.config.n_items)  # (B,)
        positive = logits.gather(1, targets[:, None]).float()  # (B, 1)
        negative = logits.gather(1, negatives[:, None]).float()  # (B, 1)
        loss = -(F.logsigmoid(positive) + F.logsigmoid(-negative)).mean()
        return logits, loss

    def next_item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        hidden = self.encode(self.history(batch))  # (B, T, d)
        return catalog_scores(hidden[:, -1], self.item_embedding, self.config.n_items)  # (B, N)

    def encode(self, history: Tensor) -> Tensor:
        """`(B, T)` left-padded history -> `(B, T, d)`; position t sees items 0..t only."""
        return self.transformer(self.embed(history), attention_mask(history != 0, causal=True))

    def embed(self, history: Tensor) -> Tensor:
        """`(B, T)` -> `(B, T, d)` item plus position embeddings, normalised as the blocks expect."""
        x = self.item_embedding(history) + right_aligned_positions(self.position_embedding, history.shape[1])
        return self.dropout(self.input_norm(x))


def sample_negatives(positives: Tensor, n_items: int) -> Tensor:
    """One item per positive, uniform over the n_items - 1 others (never the positive itself).

    Draws from torch's global RNG, so a seeded run draws the same negatives.
    """
    draws = torch.randint(0, n_items - 1, positives.shape, device=positives.device)  # (B,)
    # Shift draws at or above the positive up by one: 0..n-2 maps onto every item but the positive.
    return draws + (draws >= positives).long()
