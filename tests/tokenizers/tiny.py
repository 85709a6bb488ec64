"""Tiny data and configs so every tokenizer fits in well under a second."""

from __future__ import annotations

import numpy as np

from genrec_ml.tokenizers import TOKENIZERS

N_ITEMS, DIM = 240, 16

TINY = {
    "rq_kmeans": dict(n_levels=2, codebook_size=8, n_iter=20),
    "rq_vae": dict(hidden_dims=[32], latent_dim=8, n_levels=2, codebook_size=8, epochs=15,
                   batch_size=64, lr=1e-2, kmeans_iters=10),
    "coba_rqvae": dict(hidden_dims=[32], latent_dim=8, n_levels=2, codebook_size=8, epochs=15,
                       batch_size=64, lr=1e-2, kmeans_iters=10),
    "letter": dict(hidden_dims=[32], latent_dim=8, n_levels=2, codebook_size=8, epochs=15,
                   batch_size=64, lr=1e-2, kmeans_iters=10, projection_dim=8),
    "mpq": dict(hidden_dims=[32], latent_dim=8, n_experts=3, codebook_size=8, epochs=15,
                batch_size=64, lr=1e-2, kmeans_iters=10),
}


def tiny_tokenizer(name: str, **overrides):
    config_class, tokenizer_class = TOKENIZERS[name]
    return tokenizer_class(config_class(**{**TINY[name], **overrides}))


def clustered(n: int = N_ITEMS, dim: int = DIM, n_clusters: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)) * 3.0
    x = centers[rng.integers(n_clusters, size=n)] + rng.normal(size=(n, dim))
    return x.astype(np.float32)
