"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained to fill in masked items.

The input is the history with a [MASK] token appended for the next item, as in RecBole:

    [item_1, ..., item_n, MASK]  ->  Transformer (every real token sees every other)

and the next item is predicted at the appended position, in training and at evaluation alike.
During training each real history item is also replaced by [MASK] with probability `mask_prob`
(the Cloze task), and the loss is the cross-entropy over the catalog at every masked position,
the appended one included. Padding is never masked. Unlike BERT, a chosen item always becomes
[MASK] (no 80/10/10 split), as in the paper's and RecBole's code.

The output head is BERT's: Linear, GELU, LayerNorm, then dot products with the item embedding
plus a per-item bias. The blocks are pre-LN (`genrec_ml.models.item_model.Transformer`); the
paper's are post-LN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.models.item_model import (
    ItemModel,
    ItemModelConfig,
    Transformer,
    attention_mask,
    catalog_scores,
    check_at_least,
    check_heads,
    check_probability,
    right_aligned_positions,
)

IGNORE = -100  # label of unmasked positions (F.cross_entropy's ignore_index)


@dataclass(frozen=True)
class BERT4RecConfig(ItemModelConfig):
    d_model: int = 64  # embedding and hidden size (RecBole's hidden_size)
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256  # MLP width, 4 * d_model (RecBole's inner_size)
    dropout: float = 0.2  # on embeddings, attention weights and residual branches
    mask_prob: float = 0.2  # share of history items masked in training (RecBole's default)

    def __post_init__(self):
        super().__post_init__()
        check_at_least(self, 1, "d_model", "n_layers", "n_heads", "d_ff")
        check_heads(self)
        check_probability(self, "dropout", "mask_prob")


class BERT4Rec(ItemModel):
    name = "bert4rec"
    config_class = BERT4RecConfig

    def __init__(self, config: BERT4RecConfig):
        super().__init__(config)
        d = config.d_model
        self.mask_token = config.n_items + 1  # after padding (0) and the items (1..n_items)
        self.item_embedding = nn.Embedding(config.n_items + 2, d, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_history + 1, d)  # + the appended [MASK]
        self.input_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        self.transformer = Transformer(d, config.n_heads, config.n_layers, config.d_ff, config.dropout)
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.output_bias = nn.Parameter(torch.zeros(config.n_items))
        self.init_weights()

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """`(logits (B, n_items) at the appended [MASK], loss over every masked position)`.

        Random history masking happens in training mode only; in eval mode the loss is the
        appended position's alone.
        """
        inputs, labels = self.mask_items(self.history(batch), self.targets(batch))  # (B, T + 1) each
        hidden = self.encode(inputs)  # (B, T + 1, d)
        masked = labels != IGNORE  # (B, T + 1)
        loss = F.cross_entropy(self.item_logits(hidden[masked]).float(), labels[masked])  # over (M, N) logits
        return self.item_logits(hidden[:, -1]), loss

    def next_item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        history = self.history(batch)  # (B, T)
        inputs = torch.cat([history, torch.full_like(history[:, :1], self.mask_token)], dim=1)  # (B, T + 1)
        return self.item_logits(self.encode(inputs)[:, -1])  # (B, N)

    def mask_items(self, history: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Cloze inputs and labels, `(B, T + 1)` each: [MASK] appended for `targets`, and in
        training each real item masked with probability mask_prob (torch's global RNG).

        labels hold the 0-based item at masked positions and IGNORE everywhere else.
        """
        masked = torch.zeros_like(history, dtype=torch.bool)  # (B, T)
        if self.training:
            masked = (torch.rand(history.shape, device=history.device) < self.config.mask_prob) & (history != 0)
        inputs = history.masked_fill(masked, self.mask_token)  # (B, T)
        labels = (history - 1).masked_fill(~masked, IGNORE)  # (B, T)
        appended = torch.full_like(history[:, :1], self.mask_token)  # (B, 1)
        return torch.cat([inputs, appended], dim=1), torch.cat([labels, targets[:, None]], dim=1)

    def encode(self, inputs: Tensor) -> Tensor:
        """`(B, S)` left-padded tokens (items, [MASK]) -> `(B, S, d)`, attending both ways."""
        x = self.item_embedding(inputs) + right_aligned_positions(self.position_embedding, inputs.shape[1])
        return self.transformer(self.dropout(self.input_norm(x)), attention_mask(inputs != 0, causal=False))

    def item_logits(self, hidden: Tensor) -> Tensor:
        """`(..., d)` -> `(..., n_items)` scores of every catalog item (never padding or [MASK])."""
        return catalog_scores(self.head(hidden), self.item_embedding, self.config.n_items) + self.output_bias
