"""RQ-KMeans: residual k-means. Level l clusters what levels < l left unexplained."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genrec_ml.errors import GenrecConfigError
from genrec_ml.tokenizers.base import (
    FitReport,
    Tokenizer,
    as_codes,
    as_embeddings,
    check_codebook_shape,
    check_enough_items,
)
from genrec_ml.tokenizers.kmeans import kmeans, squared_distances


@dataclass
class RQKMeansConfig:
    n_levels: int = 3  # L; LASAR uses 4
    codebook_size: int = 256  # K codes per level
    n_iter: int = 50  # Lloyd iterations per level (stops early once assignments settle)
    seed: int = 0  # level l uses seed + l

    def validate(self) -> None:
        check_codebook_shape(self.n_levels, self.codebook_size)
        if self.n_iter < 1:
            raise GenrecConfigError("n_iter", f"needs at least 1 iteration, got {self.n_iter}")


class RQKMeansTokenizer(Tokenizer):
    name = "rq_kmeans"
    config_class = RQKMeansConfig
    ordered = True

    def __init__(self, config: RQKMeansConfig | None = None):
        super().__init__(config)
        self.codebooks: torch.Tensor | None = None  # (L, K, D)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.n_levels

    @property
    def is_fitted(self) -> bool:
        return self.codebooks is not None

    def fit(
        self, X: np.ndarray, *, collab: np.ndarray | None = None, progress: bool = False
    ) -> FitReport:
        """Fit L k-means in turn on the residuals. ``collab`` is accepted and ignored."""
        cfg = self.config
        x = torch.from_numpy(as_embeddings(X))
        check_enough_items(x.shape[0], cfg.codebook_size)
        start = time.perf_counter()
        residual = x.clone()
        codebooks, history = [], []
        for level in tqdm(range(cfg.n_levels), desc="rq_kmeans levels", disable=not progress):
            result = kmeans(
                residual, cfg.codebook_size, n_iter=cfg.n_iter, seed=cfg.seed + level,
                field="codebook_size",
            )
            codebooks.append(result.centroids)
            residual = residual - result.centroids[result.assignment]
            history.append({
                "level": level,
                "inertia": result.inertia,
                "mse": result.inertia / x.numel(),
                "iterations": result.iterations,
                "used_codes": int(torch.unique(result.assignment).numel()),
            })
        self.codebooks = torch.stack(codebooks)  # (L, K, D)
        return FitReport(history=history, fit_seconds=time.perf_counter() - start)

    def encode(self, X: np.ndarray) -> np.ndarray:
        self._require_fitted()
        residual = torch.from_numpy(as_embeddings(X, dim=self.codebooks.shape[2]))
        codes = []
        for codebook in self.codebooks:  # greedy nearest code, level by level
            level_codes = squared_distances(residual, codebook).argmin(dim=1)
            codes.append(level_codes)
            residual = residual - codebook[level_codes]
        return torch.stack(codes, dim=1).numpy()  # (N, L)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._require_fitted()
        codes = torch.from_numpy(as_codes(codes, self.codebook_sizes))
        levels = torch.arange(self.config.n_levels)
        return self.codebooks[levels, codes].sum(dim=1).numpy()  # (N, L, D) -> (N, D)

    def codebook_vectors(self, level: int) -> np.ndarray:
        self._require_fitted()
        self._check_level(level)
        return self.codebooks[level].numpy().copy()

    def _state(self) -> dict[str, Any]:
        return {"codebooks": self.codebooks}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.codebooks = state["codebooks"]
