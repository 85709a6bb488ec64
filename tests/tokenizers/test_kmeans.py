"""k-means: distance fast path vs reference, seeding, empty clusters, impossible k."""

from __future__ import annotations

import pytest
import torch

from genrec_ml.errors import GenrecConfigError
from genrec_ml.tokenizers.kmeans import (
    _update_centroids,
    kmeans,
    squared_distances,
    squared_distances_reference,
)


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.arange(60) % 3
    return centers[labels] + 0.3 * torch.randn(60, 2, generator=generator), labels


def test_fast_distances_agree_with_reference():
    generator = torch.Generator().manual_seed(0)
    x, c = torch.randn(50, 7, generator=generator), torch.randn(9, 7, generator=generator)
    assert torch.allclose(squared_distances(x, c), squared_distances_reference(x, c), atol=1e-4)


def test_recovers_well_separated_blobs():
    x, labels = blobs()
    result = kmeans(x, 3, seed=0)
    # Same partition up to relabelling: every true blob maps to exactly one cluster.
    pairs = {(int(a), int(b)) for a, b in zip(labels, result.assignment, strict=True)}
    assert len(pairs) == 3
    assert result.inertia < 60 * 2 * 0.3**2 * 1.5


def test_same_seed_same_result_and_assignment_matches_centroids():
    x, _ = blobs(seed=1)
    first, second = kmeans(x, 5, seed=3), kmeans(x, 5, seed=3)
    assert torch.equal(first.centroids, second.centroids)
    nearest = squared_distances(x, first.centroids).argmin(dim=1)
    assert torch.equal(nearest, first.assignment)


def test_empty_cluster_is_reseeded_at_the_farthest_point():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    assignment = torch.zeros(4, dtype=torch.int64)  # cluster 1 gets nothing
    distance_to_own = torch.tensor([0.0, 1.0, 1.0, 162.0])
    centroids = _update_centroids(x, assignment, distance_to_own, k=2)
    assert torch.allclose(centroids[0], x.mean(dim=0))
    assert torch.equal(centroids[1], x[3])


def test_duplicate_points_do_not_break_seeding():
    x = torch.ones(10, 3)
    result = kmeans(x, 4, seed=0)
    assert result.inertia == 0.0
    assert torch.allclose(result.centroids, torch.ones(4, 3))


@pytest.mark.parametrize("k", [0, 11])
def test_impossible_k_names_the_field(k):
    with pytest.raises(GenrecConfigError) as info:
        kmeans(torch.zeros(10, 2), k, field="codebook_size")
    assert info.value.field == "codebook_size"
