"""k-means (k-means++ seeding, Lloyd iterations) in torch, shared by every tokenizer.

Used for RQ-KMeans levels, for initialising RQ-VAE / MPQ codebooks and for S²GR's coarse
clusters of codebook vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrec_ml.errors import GenrecConfigError


def squared_distances(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(N, d), (K, d) -> (N, K) squared Euclidean distances.

    Fast path: ‖x‖² − 2 x·c + ‖c‖² is one matmul instead of an (N, K, d) intermediate.
    Cancellation can make it slightly negative, hence the clamp.
    """
    x_sq = (x * x).sum(dim=1, keepdim=True)  # (N, 1)
    c_sq = (c * c).sum(dim=1)  # (K,)
    return (x_sq - 2.0 * (x @ c.T) + c_sq).clamp_min(0.0)


def squared_distances_reference(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Plain reference for ``squared_distances``: materialises (N, K, d)."""
    return ((x[:, None, :] - c[None, :, :]) ** 2).sum(dim=-1)


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # (K, d)
    assignment: torch.Tensor  # (N,) int64
    inertia: float  # Σ_i ‖x_i − c_{a_i}‖²
    iterations: int  # Lloyd iterations actually run


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centroid is drawn with probability ∝ D(x)², D = distance
    to the nearest centroid chosen so far. Returns (k, d)."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    nearest = squared_distances(x, x[first : first + 1]).squeeze(1)  # (N,)
    for _ in range(1, k):
        total = float(nearest.sum())
        if total > 0:
            index = int(torch.multinomial(nearest / total, 1, generator=generator))
        else:  # every point already sits on a centroid (duplicates): any point will do
            index = int(torch.randint(n, (1,), generator=generator))
        chosen.append(index)
        nearest = torch.minimum(nearest, squared_distances(x, x[index : index + 1]).squeeze(1))
    return x[chosen].clone()


def _update_centroids(
    x: torch.Tensor, assignment: torch.Tensor, distance_to_own: torch.Tensor, k: int
) -> torch.Tensor:
    """Lloyd's mean step. Empty clusters are re-seeded at the points farthest from their own
    centroid, which are the ones the current solution explains worst."""
    counts = torch.bincount(assignment, minlength=k)  # (K,)
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, assignment, x)  # (K, d)
    centroids = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
    empty = torch.nonzero(counts == 0).squeeze(1)
    if len(empty):
        farthest = torch.topk(distance_to_own, len(empty)).indices
        centroids[empty] = x[farthest]
    return centroids


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    n_iter: int = 50,
    seed: int = 0,
    field: str = "k",
) -> KMeansResult:
    """Cluster x (N, d) into k groups. ``field`` names the config field in errors."""
    if k < 1:
        raise GenrecConfigError(field, f"needs at least 1 cluster, got {k}")
    if k > x.shape[0]:
        raise GenrecConfigError(
            field, f"{k} clusters but only {x.shape[0]} points; use at most {x.shape[0]}"
        )
    x = x.detach()
    generator = torch.Generator().manual_seed(seed)
    centroids = kmeans_plus_plus(x, k, generator)
    previous = None
    iterations = 0
    while iterations < n_iter:
        iterations += 1
        distance_to_own, assignment = squared_distances(x, centroids).min(dim=1)
        if previous is not None and torch.equal(assignment, previous):
            break  # assignments settled: the centroids cannot move any more
        centroids = _update_centroids(x, assignment, distance_to_own, k)
        previous = assignment
    # Final assignment against the final centroids, so the two always agree.
    distance_to_own, assignment = squared_distances(x, centroids).min(dim=1)
    return KMeansResult(centroids, assignment, float(distance_to_own.sum()), iterations)
