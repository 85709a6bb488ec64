"""The popularity floor recommender."""

import numpy as np
import pytest

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.eval import popularity_topk

# Counts 5 1 1 0 3 rank items as 0, 4, 1, 2, 3 (the 1-1 tie goes to the lower id).
COUNTS = np.array([5, 1, 1, 0, 3])


def test_same_list_for_everyone():
    assert popularity_topk(COUNTS, n_users=2, k=3).tolist() == [[0, 4, 1], [0, 4, 1]]


def test_pads_when_catalog_is_smaller_than_k():
    assert popularity_topk(COUNTS, n_users=1, k=7).tolist() == [[0, 4, 1, 2, 3, -1, -1]]


def test_exclusions_skip_each_users_items():
    exclude = np.array([[0, -1], [4, 1], [-1, -1]])
    got = popularity_topk(COUNTS, n_users=3, k=3, exclude=exclude)
    assert got.tolist() == [[4, 1, 2], [0, 2, 3], [0, 4, 1]]


def test_exclusions_can_leave_fewer_than_k_items():
    got = popularity_topk(COUNTS, n_users=1, k=5, exclude=np.array([[0, 4]]))
    assert got.tolist() == [[1, 2, 3, -1, -1]]


def test_bad_inputs_are_named():
    with pytest.raises(GenrecConfigError, match="'k'"):
        popularity_topk(COUNTS, n_users=1, k=0)
    with pytest.raises(GenrecDataError, match="exclude"):
        popularity_topk(COUNTS, n_users=2, k=2, exclude=np.array([[0]]))
