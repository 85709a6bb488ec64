"""MPQ, MoE-based Parallel Quantisation (REG4Rec §3.3.1): M experts, M unordered tokens.

Expert r projects the item to its own latent, e_i^r = E_r(x_i) (an MLP, D -> d), and picks
its nearest codeword in its own codebook C_r of K codes: c_i^r = argmin_j ‖e_i^r − z_{r,j}‖².
A routing gate mixes the chosen codewords, q_i = Σ_r h_r · z_{r,c_i^r}, and a shared decoder
reconstructs x_i from q_i.

Gate input: REG4Rec writes h_r(x_i). We feed the gate the concatenated chosen codewords
instead, which carry the item's information after quantisation and keep ``decode`` a
function of the token set alone (decode has no x to gate on).

Loss, squared norms summed over dimensions and averaged over the batch:

    L = ‖x − Dec(q)‖²                                            reconstruction
      + Σ_r ‖sg(e^r) − z_{r,c^r}‖² + β ‖e^r − sg(z_{r,c^r})‖²     codebook + commitment
      + α · Σ_{r<s} ‖P̂_rᵀ P̂_s‖²_F                                 orthogonality, α = 0.001

P̂_r (B, d) is expert r's projections of the batch with every latent dimension centred and
L2-normalised over the batch, so P̂_rᵀ P̂_s holds the correlations between the two experts'
latent dimensions; the sum is ‖P̂ᵀP̂ − I‖²_F restricted to the cross-expert blocks of
P̂ = [P̂_1 … P̂_M]. Why the batch form and not the per-item one (‖Ê_i Ê_iᵀ − I‖²_F over one
item's M normalised projections): per item, experts satisfy it by writing to disjoint latent
dimensions while still sorting items into the same clusters. Correlation across items is what
redundant experts show. Within-expert blocks are left out: whitening each expert as well cost
reconstruction and ICR in our runs.

Expect redundant experts on strongly clustered data: when cluster identity is all that can be
reconstructed, averaging M quantisations of it is what the gate prefers. On 12k clustered
items (100 epochs) ICR was about 0.07 with this loss (0.03 per item); α = 0.1 gave ICR about
0.36 at a higher reconstruction error (0.33 vs 0.20). α is therefore configurable, and
``collisions.disambiguate`` separates whatever still collides.

Codewords reach the decoder through the straight-through estimator, as in RQ-VAE.

Tokens: expert r's code k is token r·K + k. Tokens of different experts never clash, so an
item's row is a true set: it can be shuffled, and ``decode`` sorts it back by expert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.tokenizers.base import (
    FitReport,
    Tokenizer,
    as_embeddings,
    check_enough_items,
    check_positive,
)
from genrec_ml.tokenizers.kmeans import kmeans, squared_distances
from genrec_ml.tokenizers.vq import StepOutput, gather_rows, mlp, seeded_fit

ENCODE_CHUNK = 8192


@dataclass
class MPQConfig:
    n_experts: int = 8  # M experts = M tokens per item (REG4Rec §4.1: 8)
    codebook_size: int = 300  # K codes per expert codebook (REG4Rec's D = 300)
    # each expert's MLP: one hidden layer keeps 8 experts affordable on a CPU (REG4Rec gives no sizes)
    hidden_dims: list[int] = field(default_factory=lambda: [256])
    latent_dim: int = 32  # d, shared so the gate can mix codewords of different experts
    beta: float = 0.25  # commitment weight
    alpha: float = 0.001  # orthogonality weight (REG4Rec)
    epochs: int = 50  # 807 s on amazon-beauty (12k x 384, 8 x 300) on a 2-core CPU shared with 3 other jobs
    batch_size: int = 1024  # also the k-means init sample, so it must be >= codebook_size
    lr: float = 1e-3  # Adam
    kmeans_iters: int = 25  # Lloyd iterations for the first-batch codebook init
    reset_dead_codes: bool = True  # re-seed codes unused over an epoch at current latents
    seed: int = 0

    def validate(self) -> None:
        if self.n_experts < 1:
            raise GenrecConfigError("n_experts", f"needs at least 1 expert, got {self.n_experts}")
        if self.codebook_size < 2:
            raise GenrecConfigError(
                "codebook_size", f"needs at least 2 codes per codebook, got {self.codebook_size}"
            )
        if any(width < 1 for width in self.hidden_dims):
            raise GenrecConfigError("hidden_dims", f"widths must be >= 1, got {self.hidden_dims}")
        check_positive(self, "latent_dim", "epochs", "lr", "kmeans_iters")
        for name in ("beta", "alpha"):
            if getattr(self, name) < 0:
                raise GenrecConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.batch_size < self.codebook_size:
            raise GenrecConfigError(
                "batch_size",
                f"{self.batch_size} is smaller than codebook_size {self.codebook_size}; the "
                "first batch seeds the codebooks by k-means, so raise batch_size",
            )


def orthogonality_loss(projections: torch.Tensor) -> torch.Tensor:
    """(B, M, d) expert projections -> Σ_{r<s} ‖P̂_rᵀ P̂_s‖²_F (see module docstring)."""
    n_experts, dim = projections.shape[1:]
    centred = projections - projections.mean(dim=0, keepdim=True)
    p_hat = F.normalize(centred, dim=0).flatten(1)  # unit columns over the batch, (B, M*d)
    correlation = p_hat.T @ p_hat  # (M*d, M*d)
    expert = torch.arange(n_experts).repeat_interleave(dim)  # expert owning each column
    cross = expert[:, None] < expert[None, :]  # blocks (r, s) with r < s
    return ((correlation * cross) ** 2).sum()


def orthogonality_loss_reference(projections: list[list[list[float]]]) -> float:
    """Plain loops over expert pairs and latent dimensions, for tests of ``orthogonality_loss``.

    projections[i][r][a] is item i, expert r, latent dimension a.
    """
    n_items, n_experts, dim = len(projections), len(projections[0]), len(projections[0][0])

    def unit_column(r: int, a: int) -> list[float]:
        column = [projections[i][r][a] for i in range(n_items)]
        mean = sum(column) / n_items
        centred = [v - mean for v in column]
        norm = max(sum(v * v for v in centred) ** 0.5, 1e-12)
        return [v / norm for v in centred]

    total = 0.0
    for r in range(n_experts):
        for s in range(r + 1, n_experts):
            for a in range(dim):
                for b in range(dim):
                    corr = sum(u * v for u, v in zip(unit_column(r, a), unit_column(s, b),
                                                     strict=True))
                    total += corr**2
    return total


@dataclass
class MPQOutput:
    projections: torch.Tensor  # (B, M, d) expert latents e^r
    codes: torch.Tensor  # (B, M) code index within each expert's codebook
    codebook_loss: torch.Tensor
    commit_loss: torch.Tensor


class MPQModel(nn.Module):
    def __init__(self, input_dim: int, cfg: MPQConfig):
        super().__init__()
        dims = [input_dim, *cfg.hidden_dims, cfg.latent_dim]
        self.experts = nn.ModuleList(mlp(dims) for _ in range(cfg.n_experts))
        self.codebooks = nn.Parameter(
            torch.zeros(cfg.n_experts, cfg.codebook_size, cfg.latent_dim)
        )  # (M, K, d)
        self.gate = nn.Linear(cfg.n_experts * cfg.latent_dim, cfg.n_experts)
        self.decoder = mlp([cfg.latent_dim, *reversed(cfg.hidden_dims), input_dim])

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, M, d)

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, *, seed: int, n_iter: int) -> None:
        projections = self.project(x)
        for r in range(self.codebooks.shape[0]):
            result = kmeans(projections[:, r], self.codebooks.shape[1], n_iter=n_iter,
                            seed=seed + r, field="codebook_size")
            self.codebooks.data[r] = result.centroids

    def nearest_codes(self, projections: torch.Tensor) -> torch.Tensor:
        """(B, M, d) -> (B, M) nearest code of each expert's own codebook."""
        return torch.stack([
            squared_distances(projections[:, r], codebook).argmin(dim=1)
            for r, codebook in enumerate(self.codebooks)
        ], dim=1)

    def codewords(self, codes: torch.Tensor) -> torch.Tensor:
        n_experts, codebook_size, dim = self.codebooks.shape
        rows = codes + torch.arange(n_experts) * codebook_size  # row in the flattened codebooks
        return gather_rows(self.codebooks.reshape(-1, dim), rows)  # (B, M) -> (B, M, d)

    def mix_and_decode(self, codewords: torch.Tensor) -> torch.Tensor:
        """(B, M, d) chosen codewords -> (B, D) reconstruction through the routing gate."""
        weights = torch.softmax(self.gate(codewords.flatten(1)), dim=1)  # (B, M*d) -> (B, M)
        mixed = (weights.unsqueeze(2) * codewords).sum(dim=1)  # (B, M, d) -> (B, d)
        return self.decoder(mixed)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, MPQOutput]:
        projections = self.project(x)
        codes = self.nearest_codes(projections.detach())
        chosen = self.codewords(codes)  # (B, M, d)
        codebook_loss = ((projections.detach() - chosen) ** 2).sum(dim=2).mean(dim=0).sum()
        commit_loss = ((projections - chosen.detach()) ** 2).sum(dim=2).mean(dim=0).sum()
        chosen_st = projections + (chosen - projections).detach()  # straight-through
        return self.mix_and_decode(chosen_st), MPQOutput(
            projections, codes, codebook_loss, commit_loss
        )


class MPQTokenizer(Tokenizer):
    name = "mpq"
    config_class = MPQConfig
    ordered = False

    def __init__(self, config: MPQConfig | None = None):
        super().__init__(config)
        self.model: MPQModel | None = None
        self.input_dim: int | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.n_experts

    @property
    def is_fitted(self) -> bool:
        return self.model is not None

    def _build_model(self, input_dim: int) -> MPQModel:
        return MPQModel(input_dim, self.config)

    def _after_step(self, codes: torch.Tensor) -> None:
        """MPQ keeps no per-step statistics."""

    def _train_step(self, x, batch_index, collab) -> StepOutput:
        cfg = self.config
        x_hat, out = self.model(x)
        terms = {
            "recon": ((x - x_hat) ** 2).sum(dim=1).mean(),
            "codebook": out.codebook_loss,
            "commit": cfg.beta * out.commit_loss,
            "orthogonality": cfg.alpha * orthogonality_loss(out.projections),
        }
        targets = list(out.projections.detach().unbind(dim=1))  # M x (B, d)
        return StepOutput(terms, out.codes, targets)

    def fit(
        self, X: np.ndarray, *, collab: np.ndarray | None = None, progress: bool = False
    ) -> FitReport:
        """``collab`` is accepted and ignored."""
        x = torch.from_numpy(as_embeddings(X))
        check_enough_items(x.shape[0], self.config.codebook_size)
        return seeded_fit(self, x, None, progress=progress)

    @torch.no_grad()
    def encode(self, X: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, M) global tokens; column r holds expert r's token r·K + code."""
        self._require_fitted()
        x = torch.from_numpy(as_embeddings(X, dim=self.input_dim))
        codes = torch.cat([
            self.model.nearest_codes(self.model.project(chunk)) for chunk in x.split(ENCODE_CHUNK)
        ])  # (N, M)
        offsets = torch.arange(self.config.n_experts) * self.config.codebook_size
        return (codes + offsets).numpy()

    def tokens_to_codes(self, tokens: np.ndarray) -> np.ndarray:
        """(N, M) token sets in any order -> (N, M) per-expert code indices, column r = expert r.

        Each row must hold exactly one token of every expert. Collision statistics need either
        the global tokens with ``ordered=False`` or these per-expert codes with ``ordered=True``:
        sorting per-expert codes would mix experts up ((3, 5) and (5, 3) are different items).
        """
        m, k = self.config.n_experts, self.config.codebook_size
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != m or not np.issubdtype(tokens.dtype, np.integer):
            raise GenrecDataError(f"expected integer tokens of shape (N, {m}), got "
                                  f"{tokens.dtype} {tokens.shape}", field="codes")
        ordered = np.sort(tokens.astype(np.int64), axis=1)  # tokens of expert r sort to column r
        bad_rows = ((ordered < 0) | (ordered // k != np.arange(m))).any(axis=1)
        if bad_rows.any():
            raise GenrecDataError(
                f"row {int(np.flatnonzero(bad_rows)[0])} is not one token from each of the "
                f"{m} experts (expert r owns tokens [r*{k}, (r+1)*{k}))",
                field="codes",
            )
        return ordered - np.arange(m) * k

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(N, M) token sets, any order within a row -> (N, D) reconstruction."""
        self._require_fitted()
        local = torch.from_numpy(self.tokens_to_codes(codes))
        return self.model.mix_and_decode(self.model.codewords(local)).numpy()

    def codebook_vectors(self, level: int) -> np.ndarray:
        """Expert ``level``'s codebook (K, d); its tokens are level·K + row index."""
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
