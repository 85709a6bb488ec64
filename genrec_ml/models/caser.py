"""Caser (Tang & Wang, WSDM 2018): convolutions over the embedding "image" of the last L items.

The last `window` = L items' embeddings form an (L, d) image. Horizontal filters of heights
1..L (n_h each, ReLU, max-pooled over positions) catch union- and skip-level sequential
patterns; n_v vertical filters of shape (L, 1) take weighted sums over the L items.

    z = ReLU(W_1 dropout([vertical; horizontal]) + b_1),   score(i) = W_2 [z; P_u] . E[i]

P_u is the optional user embedding (`n_users` > 0). The paper has separate output item vectors;
here, as in RecBole, the input item embedding E scores the catalog, after the projection W_2
back to d. Trained with full-softmax cross-entropy instead of the paper's sampled BCE, like
the other baselines. Histories shorter than L are padded with the zero padding embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.item_model import (
    ItemModel,
    ItemModelConfig,
    catalog_scores,
    check_at_least,
    check_probability,
)


@dataclass(frozen=True)
class CaserConfig(ItemModelConfig):
    d_model: int = 64  # item embedding size
    window: int = 5  # L, the last items the convolutions see (the paper's best L on most data)
    n_vertical: int = 4  # n_v vertical filters (the paper's choice)
    n_horizontal: int = 16  # n_h horizontal filters per height 1..L
    n_users: int = 0  # rows of the user embedding P; 0 leaves it out
    dropout: float = 0.2  # on the concatenated convolution features

    def __post_init__(self):
        super().__post_init__()
        check_at_least(self, 1, "d_model", "window", "n_vertical", "n_horizontal")
        check_at_least(self, 0, "n_users")
        check_probability(self, "dropout")
        if self.window > self.max_history:
            raise GenrecConfigError("window", f"{self.window} is more items than max_history = {self.max_history}")


class Caser(ItemModel):
    name = "caser"
    config_class = CaserConfig

    def __init__(self, config: CaserConfig):
        super().__init__(config)
        d, L = config.d_model, config.window
        self.item_embedding = nn.Embedding(config.n_items + 1, d, padding_idx=0)
        self.user_embedding = nn.Embedding(config.n_users, d) if config.n_users else None
        self.vertical = nn.Conv2d(1, config.n_vertical, kernel_size=(L, 1))
        self.horizontal = nn.ModuleList(nn.Conv2d(1, config.n_horizontal, kernel_size=(h, d)) for h in range(1, L + 1))
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.n_vertical * d + config.n_horizontal * L, d)
        self.project = nn.Linear(2 * d if config.n_users else d, d)
        self.init_weights()  # convolutions keep PyTorch's init
        for linear in (self.fc, self.project):  # Xavier, as RecBole: N(0, 0.02) would shrink the features 50-fold
            nn.init.xavier_normal_(linear.weight)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """`(logits (B, n_items), loss)` for the item after the last history item."""
        logits = self.next_item_scores(batch)  # (B, N)
        return logits, F.cross_entropy(logits.float(), self.targets(batch))

    def next_item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        L = self.config.window
        last_window = F.pad(self.history(batch), (L, 0))[:, -L:]  # (B, L), zero-padded in front
        hidden = self.represent(last_window, self._users(batch))  # (B, d)
        return catalog_scores(hidden, self.item_embedding, self.config.n_items)  # (B, N)

    def encode(self, history: Tensor, users: Tensor | None = None) -> Tensor:
        """`(B, T)` left-padded history -> `(B, T, d)`: position t reads the window ending at item t.

        Training and scoring read the last position only (`next_item_scores`); this is the
        per-position view, for checking what each prediction can see.
        """
        B, T = history.shape
        L = self.config.window
        windows = F.pad(history, (L - 1, 0)).unfold(1, L, 1)  # (B, T, L): items t-L+1..t
        users = None if users is None else users[:, None].expand(B, T).reshape(B * T)  # (B * T,)
        return self.represent(windows.reshape(B * T, L), users).view(B, T, -1)  # (B, T, d)

    def represent(self, windows: Tensor, users: Tensor | None) -> Tensor:
        """`(R, L)` item windows (and `(R,)` users) -> `(R, d)` states that score the next item."""
        image = self.item_embedding(windows)[:, None]  # (R, 1, L, d)
        vertical = self.vertical(image).flatten(1)  # (R, n_v, 1, d) -> (R, n_v * d)
        horizontal = [
            F.relu(conv(image)).squeeze(3).amax(dim=2)  # (R, n_h, L - h + 1, 1) -> (R, n_h), max over positions
            for conv in self.horizontal
        ]
        z = F.relu(self.fc(self.dropout(torch.cat([vertical, *horizontal], dim=1))))  # (R, d)
        if self.user_embedding is not None:
            z = torch.cat([z, self.user_embedding(users)], dim=1)  # (R, 2d)
        return self.project(z)

    def _users(self, batch: dict[str, Tensor]) -> Tensor | None:
        if self.user_embedding is None:
            return None
        users = batch["user_index"].to(self.device)  # (B,)
        if users.min() < 0 or users.max() >= self.config.n_users:
            raise GenrecDataError(
                f"user indices span [{int(users.min())}, {int(users.max())}], the user embedding has "
                f"{self.config.n_users} rows; set n_users to the number of users (or 0 to leave users out)",
                field="user_index",
            )
        return users
