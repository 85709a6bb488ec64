import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from genrec_ml.data.raw import INTERACTION_COLUMNS, ITEM_COLUMNS
from genrec_ml.data.synthetic import SyntheticConfig, generate_synthetic
from genrec_ml.errors import GenrecConfigError

TINY = SyntheticConfig(n_items=300, n_users=200, branching=(4, 3, 2))


@pytest.fixture(scope="module")
def default():
    start = time.perf_counter()
    data = generate_synthetic(SyntheticConfig())
    return data, time.perf_counter() - start


def _k_core(interactions: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        user_counts = interactions.groupby("user_id")["item_id"].transform("size")
        item_counts = interactions.groupby("item_id")["user_id"].transform("size")
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            return interactions
        interactions = interactions[keep]


def test_same_config_gives_identical_tables_and_seed_changes_them():
    first, second = generate_synthetic(TINY), generate_synthetic(TINY)
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.items, second.items)
    other = generate_synthetic(replace(TINY, seed=1))
    assert not other.interactions["item_id"].equals(first.interactions["item_id"])
    assert not other.items["title"].equals(first.items["title"])


def test_tables_follow_the_raw_contract():
    data = generate_synthetic(TINY)
    assert list(data.interactions.columns) == INTERACTION_COLUMNS
    assert list(data.items.columns) == ITEM_COLUMNS
    assert str(data.interactions["timestamp"].dtype) == "Int64"
    assert str(data.interactions["position"].dtype) == "Int64"
    assert data.interactions[["timestamp", "position"]].notna().all().all()
    assert data.interactions["source_line"].tolist() == list(range(1, len(data.interactions) + 1))
    assert data.items["source_line"].tolist() == list(range(1, 301))
    assert set(data.interactions["source_file"]) == set(data.items["source_file"]) == {"synthetic"}
    assert data.items["item_id"].is_unique
    assert data.interactions["user_id"].nunique() == 200
    assert set(data.interactions["item_id"]) <= set(data.items["item_id"])
    assert (data.items["title"].str.len() > 0).all() and (
        data.items["description"].str.len() > 0
    ).all()


def test_histories_are_ordered_distinct_and_within_length_bounds():
    data = generate_synthetic(TINY)
    by_user = data.interactions.groupby("user_id", sort=False)
    lengths = by_user.size()
    assert lengths.between(TINY.min_history, TINY.max_history).all()
    assert (by_user["timestamp"].diff().dropna() > 0).all()  # strictly increasing within a user
    assert (data.interactions["position"] == by_user.cumcount()).all()
    assert not data.interactions.duplicated(["user_id", "item_id"]).any()


def test_three_level_hierarchy_with_readable_nested_names():
    items = generate_synthetic(TINY).items
    paths = items["categories"].map(tuple)
    assert (paths.map(len) == 3).all()
    assert paths.nunique() == 4 * 3 * 2  # every leaf holds items
    frame = pd.DataFrame(paths.tolist(), columns=["root", "sub", "leaf"])
    assert frame["root"].nunique() == 4
    assert (frame.groupby("sub")["root"].nunique() == 1).all()  # a subcategory has one parent
    assert (frame.groupby("leaf")["sub"].nunique() == 1).all()
    assert frame.stack().str.fullmatch(r"[A-Z][a-z]+").all()


def _mean_overlap(words: pd.Series, left: np.ndarray, right: np.ndarray) -> float:
    return float(
        np.mean(
            [
                len(words[a] & words[b]) / len(words[a] | words[b])
                for a, b in zip(left, right, strict=True)
            ]
        )
    )


def test_text_vocabulary_follows_the_hierarchy(default):
    items = default[0].items
    words = (items["title"].str.lower() + " " + items["description"]).str.split().map(set)
    paths = items["categories"].map(tuple)
    rng = np.random.default_rng(0)
    left, right = rng.integers(len(items), size=(2, 20_000))
    same_leaf = (paths[left].to_numpy() == paths[right].to_numpy()) & (left != right)
    parent = paths.map(lambda p: p[:2])
    siblings = (parent[left].to_numpy() == parent[right].to_numpy()) & ~same_leaf & (left != right)
    root = paths.map(lambda p: p[0])
    other_root = root[left].to_numpy() != root[right].to_numpy()
    leaf_overlap = _mean_overlap(words, left[same_leaf], right[same_leaf])
    sibling_overlap = _mean_overlap(words, left[siblings], right[siblings])
    far_overlap = _mean_overlap(words, left[other_root], right[other_root])
    assert leaf_overlap > sibling_overlap > far_overlap
    assert leaf_overlap > 2 * far_overlap


def test_popularity_is_skewed(default):
    interactions = default[0].interactions
    counts = interactions["item_id"].value_counts()
    top_share = counts.iloc[: 5000 // 10].sum() / len(interactions)
    assert top_share > 0.30
    assert counts.iloc[0] > 20 * counts.median()


def test_users_keep_an_interest_and_drift_across_categories(default):
    interactions, items = default[0].interactions, default[0].items
    leaf = interactions["item_id"].map(
        dict(zip(items["item_id"], items["categories"].map(tuple), strict=True))
    )
    same_user = interactions["user_id"].to_numpy()[1:] == interactions["user_id"].to_numpy()[:-1]
    same_leaf = leaf.to_numpy()[1:] == leaf.to_numpy()[:-1]
    assert 0.5 < same_leaf[same_user].mean() < 0.95  # an interest persists, and also moves on
    roots = leaf.map(lambda path: path[0]).groupby(interactions["user_id"]).nunique()
    assert (roots >= 2).mean() > 0.5


def test_default_size_is_fast_and_survives_a_5_core(default):
    data, seconds = default
    assert seconds < 3.0
    core = _k_core(data.interactions, 5)
    assert core["user_id"].nunique() >= 0.99 * 3000
    assert core["item_id"].nunique() >= 0.95 * 5000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_items": 100}, "n_items"),  # fewer items than the 128 leaves
        ({"n_items": 130, "max_history": 200}, "n_items"),
        ({"min_history": 0}, "min_history"),
        ({"min_history": 10, "max_history": 5}, "max_history"),
        ({"interest_drift": 1.5}, "interest_drift"),
        ({"popularity_floor": -0.1}, "popularity_floor"),
        ({"branching": (8, 0, 4)}, "branching"),
        ({"n_users": 0}, "n_users"),
    ],
)
def test_config_validation_names_the_field(changes, field):
    with pytest.raises(GenrecConfigError) as caught:
        SyntheticConfig(**changes)
    assert caught.value.field == field
    assert f"'{field}'" in str(caught.value)
