"""Collaborative item embeddings from the co-occurrence graph, for LETTER's regulariser.

Connected items: the top-`dim` eigenvectors of Â = D^-½ A D^-½ (largest eigenvalues, i.e. the
smoothest signals on the graph), scaled by sqrt(|λ|). Items without edges have no collaborative
signal, so a ridge regression from text embeddings to the spectral space (fitted on the connected
items) gives them a cold-start estimate instead of a zero vector.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse.linalg as spla

from genrec_ml.errors import GenrecConfigError
from genrec_ml.graph.propagation import normalized_adjacency


def collaborative_embeddings(edges: pd.DataFrame, text: np.ndarray, dim: int = 64,
                             ridge: float = 1.0) -> np.ndarray:
    """(N, dim) float32; deterministic (fixed ARPACK start vector)."""
    n_items = len(text)
    adj = normalized_adjacency(edges, n_items)
    connected = np.asarray(adj.getnnz(axis=1)) > 0
    sub = adj[connected][:, connected]
    if dim >= sub.shape[0] - 1:
        raise GenrecConfigError("dim", f"{dim} dimensions need more than {dim + 1} connected items, "
                                       f"the graph has {sub.shape[0]}")
    start = np.ones(sub.shape[0]) / np.sqrt(sub.shape[0])
    values, vectors = spla.eigsh(sub.astype(np.float64), k=dim, which="LA", v0=start)
    order = np.argsort(-values)
    spectral = vectors[:, order] * np.sqrt(np.abs(values[order]))[None, :]
    # ARPACK returns each eigenvector up to sign; fix the sign so reruns agree exactly.
    spectral *= np.sign(spectral[np.abs(spectral).argmax(axis=0), np.arange(dim)])[None, :]

    out = np.zeros((n_items, dim), np.float64)
    out[connected] = spectral
    if (~connected).any():
        x = text[connected].astype(np.float64)
        weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ spectral)
        out[~connected] = text[~connected].astype(np.float64) @ weights
    return out.astype(np.float32)
