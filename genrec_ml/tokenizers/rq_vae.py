"""RQ-VAE (TIGER, Rajput et al. 2023): MLP autoencoder with L residual codebooks.

    z = Enc(x);  r_1 = z;  c_l = argmin_k ‖r_l − e_{l,k}‖²;  r_{l+1} = r_l − sg(e_{l,c_l})
    ẑ = z + sg(Σ_l e_{l,c_l} − z)            (straight-through: decoder gradient reaches Enc)
    loss = ‖x − Dec(ẑ)‖² + Σ_l ( ‖sg(r_l) − e_{l,c_l}‖² + β ‖r_l − sg(e_{l,c_l})‖² )

Squared norms are summed over dimensions and averaged over the batch. The residual passed on
is r_l − sg(e_l) so that each codebook is trained by its own level's term only.

CoBa RQ-VAE and LETTER subclass ``RQVAETokenizer`` and override ``_select`` / ``_train_step``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from genrec_ml.errors import GenrecConfigError
from genrec_ml.tokenizers.base import (
    FitReport,
    Tokenizer,
    as_codes,
    as_embeddings,
    check_codebook_shape,
    check_enough_items,
    check_positive,
)
from genrec_ml.tokenizers.kmeans import kmeans, squared_distances
from genrec_ml.tokenizers.vq import StepOutput, gather_rows, mlp, seeded_fit

# (level, distances (B, K)) -> chosen codes (B,)
Selector = Callable[[int, torch.Tensor], torch.Tensor]
ENCODE_CHUNK = 8192  # rows per forward pass in encode(); bounds the (chunk, K) distance matrix


def nearest(level: int, distances: torch.Tensor) -> torch.Tensor:
    return distances.argmin(dim=1)


@dataclass
class RQVAEConfig:
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])  # TIGER's encoder
    latent_dim: int = 32  # d, size of the quantised latent (TIGER)
    n_levels: int = 3  # L residual codebooks
    codebook_size: int = 256  # K codes per level
    beta: float = 0.25  # commitment weight β
    epochs: int = 100  # ~35 s on 12k x 384 with 2 idle CPU cores; TIGER trains far longer
    batch_size: int = 1024  # also the k-means init sample, so it must be >= codebook_size
    lr: float = 1e-3  # Adam
    kmeans_iters: int = 25  # Lloyd iterations for the first-batch codebook init
    reset_dead_codes: bool = True  # re-seed codes unused over an epoch at current residuals
    seed: int = 0

    def validate(self) -> None:
        check_codebook_shape(self.n_levels, self.codebook_size)
        if any(width < 1 for width in self.hidden_dims):
            raise GenrecConfigError("hidden_dims", f"widths must be >= 1, got {self.hidden_dims}")
        check_positive(self, "latent_dim", "epochs", "lr", "kmeans_iters")
        if self.beta < 0:
            raise GenrecConfigError("beta", f"must be >= 0, got {self.beta}")
        if self.batch_size < self.codebook_size:
            raise GenrecConfigError(
                "batch_size",
                f"{self.batch_size} is smaller than codebook_size {self.codebook_size}; the "
                "first batch seeds the codebooks by k-means, so raise batch_size",
            )


@dataclass
class Quantized:
    z_st: torch.Tensor  # (B, d) straight-through latent fed to the decoder
    codes: torch.Tensor  # (B, L)
    residuals: list[torch.Tensor]  # L x (B, d) residual each level quantised, detached
    distances: list[torch.Tensor]  # L x (B, K) ‖r_l − e_{l,k}‖², differentiable
    codebook_loss: torch.Tensor  # Σ_l ‖sg(r_l) − e_l‖²
    commit_loss: torch.Tensor  # Σ_l ‖r_l − sg(e_l)‖²  (β not applied)


class ResidualQuantizer(nn.Module):
    def __init__(self, n_levels: int, codebook_size: int, dim: int):
        super().__init__()
        self.codebooks = nn.Parameter(torch.zeros(n_levels, codebook_size, dim))  # (L, K, d)

    @torch.no_grad()
    def init_from_kmeans(self, z: torch.Tensor, seed: int, n_iter: int) -> None:
        residual = z.detach()
        for level in range(self.codebooks.shape[0]):
            result = kmeans(residual, self.codebooks.shape[1], n_iter=n_iter, seed=seed + level,
                            field="codebook_size")
            self.codebooks.data[level] = result.centroids
            residual = residual - result.centroids[result.assignment]

    def forward(self, z: torch.Tensor, select: Selector = nearest) -> Quantized:
        residual = z
        quantized = torch.zeros_like(z)
        codes, residuals, distances = [], [], []
        codebook_loss = commit_loss = z.new_zeros(())
        for level, codebook in enumerate(self.codebooks):
            dist = squared_distances(residual, codebook)  # (B, K)
            idx = select(level, dist.detach())
            chosen = gather_rows(codebook, idx)  # (B, d)
            codebook_loss = codebook_loss + ((residual.detach() - chosen) ** 2).sum(1).mean()
            commit_loss = commit_loss + ((residual - chosen.detach()) ** 2).sum(1).mean()
            codes.append(idx)
            residuals.append(residual.detach())
            distances.append(dist)
            quantized = quantized + chosen
            residual = residual - chosen.detach()
        z_st = z + (quantized - z).detach()
        return Quantized(z_st, torch.stack(codes, dim=1), residuals, distances,
                         codebook_loss, commit_loss)


class RQVAE(nn.Module):
    def __init__(self, input_dim: int, cfg: RQVAEConfig):
        super().__init__()
        self.encoder = mlp([input_dim, *cfg.hidden_dims, cfg.latent_dim])
        self.decoder = mlp([cfg.latent_dim, *reversed(cfg.hidden_dims), input_dim])
        self.quantizer = ResidualQuantizer(cfg.n_levels, cfg.codebook_size, cfg.latent_dim)

    @property
    def codebooks(self) -> nn.Parameter:
        return self.quantizer.codebooks

    def init_codebooks(self, x: torch.Tensor, *, seed: int, n_iter: int) -> None:
        with torch.no_grad():
            self.quantizer.init_from_kmeans(self.encoder(x), seed, n_iter)

    def forward(
        self, x: torch.Tensor, select: Selector = nearest
    ) -> tuple[torch.Tensor, Quantized]:
        """x (B, D) -> (reconstruction (B, D), quantiser output)."""
        q = self.quantizer(self.encoder(x), select)
        return self.decoder(q.z_st), q


class RQVAETokenizer(Tokenizer):
    name = "rq_vae"
    config_class = RQVAEConfig
    ordered = True

    def __init__(self, config: RQVAEConfig | None = None):
        super().__init__(config)
        self.model: RQVAE | None = None
        self.input_dim: int | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.n_levels

    @property
    def is_fitted(self) -> bool:
        return self.model is not None

    # --- hooks the variants override --------------------------------------------------------
    def _build_model(self, input_dim: int) -> RQVAE:
        return RQVAE(input_dim, self.config)

    def _prepare_collab(self, collab: np.ndarray | None, n_items: int) -> torch.Tensor | None:
        """RQ-VAE ignores collaborative embeddings; LETTER requires them."""
        return None

    def _select(self, level: int, distances: torch.Tensor) -> torch.Tensor:
        """Code choice during training."""
        return nearest(level, distances)

    def _encode_select(self, level: int, distances: torch.Tensor) -> torch.Tensor:
        """Code choice in encode(); plain nearest code unless a variant says otherwise."""
        return nearest(level, distances)

    def _after_step(self, codes: torch.Tensor) -> None:
        """Called after each optimiser step with the batch's codes (B, L)."""

    def _train_step(
        self, x: torch.Tensor, batch_index: torch.Tensor, collab: torch.Tensor | None
    ) -> StepOutput:
        x_hat, q = self.model(x, self._select)
        return StepOutput(self._base_terms(x, x_hat, q), q.codes, q.residuals)

    def _base_terms(self, x: torch.Tensor, x_hat: torch.Tensor, q: Quantized) -> dict:
        return {
            "recon": ((x - x_hat) ** 2).sum(dim=1).mean(),
            "codebook": q.codebook_loss,
            "commit": self.config.beta * q.commit_loss,
        }

    # --- the Tokenizer contract ---------------------------------------------------------------
    def fit(
        self, X: np.ndarray, *, collab: np.ndarray | None = None, progress: bool = False
    ) -> FitReport:
        x = torch.from_numpy(as_embeddings(X))
        check_enough_items(x.shape[0], self.config.codebook_size)
        collab_t = self._prepare_collab(collab, x.shape[0])
        return seeded_fit(self, x, collab_t, progress=progress)

    @torch.no_grad()
    def encode(self, X: np.ndarray) -> np.ndarray:
        self._require_fitted()
        x = torch.from_numpy(as_embeddings(X, dim=self.input_dim))
        codes = [
            self.model.quantizer(self.model.encoder(chunk), self._encode_select).codes
            for chunk in x.split(ENCODE_CHUNK)
        ]
        return torch.cat(codes).numpy()  # (N, L)

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._require_fitted()
        codes = torch.from_numpy(as_codes(codes, self.codebook_sizes))
        levels = torch.arange(self.config.n_levels)
        latent = self.model.codebooks[levels, codes].sum(dim=1)  # (N, L, d) -> (N, d)
        return self.model.decoder(latent).numpy()

    def codebook_vectors(self, level: int) -> np.ndarray:
        self._require_fitted()
        self._check_level(level)
        return self.model.codebooks[level].detach().numpy().copy()

    def _state(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "model": self.model.state_dict()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.input_dim = state["input_dim"]
        self.model = self._build_model(self.input_dim)
        self.model.load_state_dict(state["model"])
        self.model.eval()
