"""Graph embedding propagation of S²GR (§4.1, eq. 3–5).

    Â = D^-½ A D^-½                      (A: symmetric co-occurrence weights)
    H(0) = X,  H(k) = (1−α)·Â·H(k−1) + α·X
    H_align = Σ_{k=0..K} β_k H(k),  β_k = α(1−α)^k / Σ_j α(1−α)^j

Items without edges keep their text embedding X unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genrec_ml.config import PropagationConfig
from genrec_ml.errors import GenrecDataError


def normalized_adjacency(edges: pd.DataFrame, n_items: int) -> sp.csr_matrix:
    """Â = D^-½ A D^-½ as a sparse (N, N) matrix; isolated items get all-zero rows."""
    src = edges["src_item_index"].to_numpy()
    dst = edges["dst_item_index"].to_numpy()
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n_items):
        raise GenrecDataError(f"edge endpoints must be item indices in [0, {n_items})", field="cooccurrence_edges")
    weights = edges["weight"].to_numpy(dtype=np.float64)
    adj = sp.csr_matrix((weights, (src, dst)), shape=(n_items, n_items))
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    scale = sp.diags(inv_sqrt)
    return (scale @ adj @ scale).tocsr()


def hop_weights(config: PropagationConfig) -> np.ndarray:
    """β_k ∝ α(1−α)^k for k = 0..K, normalised to sum to one."""
    raw = config.alpha * (1 - config.alpha) ** np.arange(config.hops + 1)
    return raw / raw.sum()


def propagate(x: np.ndarray, edges: pd.DataFrame, config: PropagationConfig) -> np.ndarray:
    """H_align (N, D) from text embeddings x (N, D) and the co-occurrence edges."""
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise GenrecDataError(f"embedding of item_index {row} is not finite", field="embedding")
    adj = normalized_adjacency(edges, len(x))
    x64 = x.astype(np.float64)
    betas = hop_weights(config)
    h = x64
    out = betas[0] * h
    for beta in betas[1:]:
        h = (1 - config.alpha) * (adj @ h) + config.alpha * x64
        out += beta * h
    isolated = np.asarray(adj.getnnz(axis=1)) == 0
    out[isolated] = x64[isolated]
    return out.astype(np.float32)


def propagate_dense_reference(x: np.ndarray, adjacency: np.ndarray, config: PropagationConfig) -> np.ndarray:
    """Plain dense NumPy version of `propagate` for tests (A given as a dense weight matrix)."""
    degree = adjacency.sum(axis=1)
    inv_sqrt = np.where(degree > 0, 1 / np.sqrt(np.where(degree > 0, degree, 1)), 0.0)
    a_hat = inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]
    hs = [x.astype(np.float64)]
    for _ in range(config.hops):
        hs.append((1 - config.alpha) * a_hat @ hs[-1] + config.alpha * x)
    betas = np.array([config.alpha * (1 - config.alpha) ** k for k in range(config.hops + 1)])
    out = sum(b * h for b, h in zip(betas / betas.sum(), hs, strict=True))
    isolated = degree == 0
    out[isolated] = x[isolated]
    return out.astype(np.float32)
