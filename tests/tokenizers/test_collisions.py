"""Disambiguation, utilisation and coarse clusters on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.tokenizers import coarse_clusters, disambiguate, utilization

# (1,2) three times, (3,4) and (3,5) once each.
HAND = np.array([[1, 2], [1, 2], [3, 4], [1, 2], [3, 5]])


def test_disambiguate_numbers_shared_sids_in_item_order():
    sids, rate = disambiguate(HAND)
    assert sids.tolist() == [[1, 2, 0], [1, 2, 1], [3, 4, 0], [1, 2, 2], [3, 5, 0]]
    assert rate == pytest.approx(3 / 5)


def test_disambiguated_sids_are_unique():
    codes = np.random.default_rng(0).integers(0, 3, size=(200, 2))
    sids, rate = disambiguate(codes)
    assert len({tuple(row) for row in sids.tolist()}) == 200
    assert rate == 1.0  # only 9 possible SIDs for 200 items


def test_no_collisions_gives_zero_rate_and_zero_extra_level():
    sids, rate = disambiguate(np.array([[0, 1], [1, 0], [2, 2]]))
    assert rate == 0.0
    assert sids[:, -1].tolist() == [0, 0, 0]


def test_unordered_codes_collide_as_multisets():
    codes = np.array([[5, 1, 9], [9, 5, 1], [1, 5, 8]])
    sids, rate = disambiguate(codes, ordered=False)
    assert sids[:, -1].tolist() == [0, 1, 0]
    assert rate == pytest.approx(2 / 3)
    assert sids[1, :3].tolist() == [9, 5, 1]  # rows keep their own token order
    _, ordered_rate = disambiguate(codes, ordered=True)
    assert ordered_rate == 0.0


def test_utilization_hand_numbers():
    stats = utilization(HAND, codebook_sizes=[4, 6])
    level0, level1 = stats["levels"]
    assert level0["used_codes"] == 2 and level1["used_codes"] == 3
    # level 0 shares 0.6 / 0.4; level 1 shares 0.6 / 0.2 / 0.2
    assert level0["usage_entropy"] == pytest.approx(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4)))
    assert level0["usage_entropy"] == pytest.approx(0.673012, abs=1e-6)
    assert level1["usage_entropy"] == pytest.approx(0.950271, abs=1e-6)
    assert level0["largest_code_share"] == pytest.approx(0.6)
    assert stats["distinct_sids"] == 3
    assert stats["cur"] == pytest.approx(3 / 24)
    assert stats["icr"] == pytest.approx(3 / 5)
    assert stats["collision_rate"] == pytest.approx(3 / 5)


def test_utilization_unordered_counts_multisets():
    codes = np.array([[0, 4], [4, 0], [1, 5]])
    assert utilization(codes, [8, 8], ordered=False)["distinct_sids"] == 2
    assert utilization(codes, [8, 8], ordered=True)["distinct_sids"] == 3


def test_utilization_rejects_wrong_number_of_sizes():
    with pytest.raises(GenrecDataError) as info:
        utilization(HAND, codebook_sizes=[4])
    assert info.value.field == "codebook_sizes"


def test_coarse_clusters_groups_codebook_vectors():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(size=(10, 4)), rng.normal(size=(10, 4)) + 20])
    centroids, assignment = coarse_clusters(vectors, C=2, seed=0)
    assert centroids.shape == (2, 4) and assignment.shape == (20,)
    assert len(set(assignment[:10])) == 1 and len(set(assignment[10:])) == 1
    assert assignment[0] != assignment[10]


def test_coarse_clusters_refuses_more_clusters_than_codes():
    with pytest.raises(GenrecConfigError) as info:
        coarse_clusters(np.zeros((5, 3)), C=6)
    assert info.value.field == "C"
