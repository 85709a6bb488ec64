"""Collision handling and code-usage statistics shared by every tokenizer.

An SID is an item's row of codes. Ordered SIDs (RQ-*) compare as sequences; unordered ones
(MPQ) compare as multisets, so rows are sorted before comparing, never when returned.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.tokenizers.kmeans import kmeans


def _as_code_matrix(codes: Any) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or (codes.size and not np.issubdtype(codes.dtype, np.integer)):
        raise GenrecDataError(
            f"expected an (N, L) integer matrix, got {codes.dtype} {codes.shape}", field="codes"
        )
    return codes.astype(np.int64, copy=False)


def sid_keys(codes: np.ndarray, ordered: bool = True) -> list[tuple[int, ...]]:
    """One hashable key per item: the row itself, or the sorted row for unordered codes."""
    rows = codes if ordered else np.sort(codes, axis=1)
    return [tuple(row) for row in rows.tolist()]


def _collision_rate(keys: list[tuple[int, ...]], sizes: Counter) -> float:
    if not keys:
        return 0.0
    return sum(1 for key in keys if sizes[key] > 1) / len(keys)


def disambiguate(codes: Any, *, ordered: bool = True) -> tuple[np.ndarray, float]:
    """Append one level that makes every SID unique.

    (N, L) codes -> (sids (N, L+1), collision_rate). Items sharing a SID get 0, 1, 2, ... in
    item order; an item whose SID is unique gets 0. For unordered codes two items collide when
    their token multisets are equal; the returned rows keep their original token order.

        collision_rate = |{i : ∃ j ≠ i, SID_i = SID_j}| / N
    """
    codes = _as_code_matrix(codes)
    keys = sid_keys(codes, ordered)
    sizes = Counter(keys)
    seen: Counter = Counter()
    extra = np.zeros(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        extra[i] = seen[key]
        seen[key] += 1
    sids = np.concatenate([codes, extra[:, None]], axis=1)  # (N, L+1)
    return sids, _collision_rate(keys, sizes)


def _level_stats(column: np.ndarray) -> dict[str, Any]:
    _, counts = np.unique(column, return_counts=True)
    shares = counts / counts.sum()
    return {
        "used_codes": int(len(counts)),
        "usage_entropy": float(-(shares * np.log(shares)).sum()),
        "largest_code_share": float(shares.max()),
    }


def utilization(codes: Any, codebook_sizes: list[int], ordered: bool = True) -> dict[str, Any]:
    """Code usage per level and SID-level capacity, both before disambiguation.

    Per level l (column l; for MPQ, expert l), with p_k the share of items on code k:
        used_codes          = |{k : p_k > 0}|
        usage_entropy       = −Σ_k p_k ln p_k          (ln K_l when usage is uniform)
        largest_code_share  = max_k p_k
    Overall, with S the number of distinct SIDs (multisets when unordered) and N items:
        cur             = S / Π_l K_l              (codebook utilisation rate)
        icr             = S / N                    (item-to-code ratio; 1 = no collisions)
        collision_rate  = share of items whose SID another item also has

    Returns {"levels": [per-level dicts], "cur", "icr", "collision_rate", "distinct_sids",
    "n_items"}.
    """
    codes = _as_code_matrix(codes)
    if len(codebook_sizes) != codes.shape[1]:
        raise GenrecDataError(
            f"{len(codebook_sizes)} sizes for {codes.shape[1]} code levels", field="codebook_sizes"
        )
    if codes.shape[0] == 0:
        raise GenrecDataError("no items to measure", field="codes")
    keys = sid_keys(codes, ordered)
    sizes = Counter(keys)
    levels = [{"level": level, **_level_stats(codes[:, level])} for level in range(codes.shape[1])]
    return {
        "levels": levels,
        "cur": len(sizes) / math.prod(codebook_sizes),
        "icr": len(sizes) / len(keys),
        "collision_rate": _collision_rate(keys, sizes),
        "distinct_sids": len(sizes),
        "n_items": len(keys),
    }


def coarse_clusters(
    codebook_vectors: np.ndarray, C: int, seed: int = 0, n_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """S²GR coarse clusters: k-means of one level's codebook vectors (K, d) into C groups.

    Returns (centroids (C, d) float32, assignment (K,) int64).
    """
    vectors = np.asarray(codebook_vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise GenrecDataError(f"expected (K, d) vectors, got shape {vectors.shape}",
                              field="codebook_vectors")
    if not 1 <= C <= vectors.shape[0]:
        raise GenrecConfigError("C", f"needs 1 <= C <= {vectors.shape[0]} codes, got {C}")
    result = kmeans(torch.from_numpy(vectors), C, n_iter=n_iter, seed=seed, field="C")
    return result.centroids.numpy(), result.assignment.numpy()
