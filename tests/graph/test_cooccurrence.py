from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from genrec_ml import warehouse
from genrec_ml.config import CooccurrenceConfig, SplitConfig
from genrec_ml.data.splits import build_splits
from genrec_ml.errors import GenrecConfigError
from genrec_ml.graph.cooccurrence import cooccurrence_edges


def _random_interactions(seed: int, n_users=40, n_items=25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(2, 12))
        t = np.cumsum(rng.integers(0, 50, n))
        for p, item in enumerate(rng.integers(0, n_items, n)):  # repeats and self-pairs happen
            rows.append((u, int(item), p, int(t[p])))
    return pd.DataFrame(rows, columns=["user_index", "item_index", "position", "timestamp"])


def _reference(inter: pd.DataFrame, window: int | None, max_seconds: int | None) -> dict:
    """Plain Python: per user, training part = all but the last two items (users with >= 3)."""
    users_of_pair = defaultdict(set)
    for u, g in inter.groupby("user_index"):
        g = g.sort_values("position")
        n = len(g)
        train = g.iloc[: n - 2] if n >= 3 else g
        items, times = train["item_index"].tolist(), train["timestamp"].tolist()
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                close = (b - a < window) if max_seconds is None else (times[b] - times[a] <= max_seconds)
                if close and items[a] != items[b]:
                    users_of_pair[(items[a], items[b])].add(u)
                    users_of_pair[(items[b], items[a])].add(u)
    return {pair: len(users) for pair, users in users_of_pair.items()}


def _edges(tmp_path, inter, config):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        warehouse.replace_partition(con, "interactions", "d", inter)
        warehouse.replace_partition(con, "splits", "d", build_splits(inter, SplitConfig()))
        # a second dataset must not bleed into the first
        other = inter.assign(item_index=inter["item_index"] + 1000)
        warehouse.replace_partition(con, "interactions", "other", other)
        warehouse.replace_partition(con, "splits", "other", build_splits(other, SplitConfig()))
        edges = cooccurrence_edges(con, "d", config)
    return {(s, t): w for s, t, w in edges.itertuples(index=False)}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window", [2, 3, 5])
def test_window_edges_match_python_reference(tmp_path, seed, window):
    inter = _random_interactions(seed)
    got = _edges(tmp_path, inter, CooccurrenceConfig(window=window))
    assert got == _reference(inter, window, None)
    assert got  # the random data must produce edges for the comparison to mean something


@pytest.mark.parametrize("seed", [0, 3])
def test_time_edges_match_python_reference(tmp_path, seed):
    inter = _random_interactions(seed)
    got = _edges(tmp_path, inter, CooccurrenceConfig(max_seconds=40))
    assert got == _reference(inter, None, 40)


def test_valid_and_test_items_never_make_edges(tmp_path):
    # user 0: a b | c d -> c (valid) and d (test) are outside the training period
    inter = pd.DataFrame({"user_index": [0, 0, 0, 0], "item_index": [0, 1, 2, 3],
                          "position": [0, 1, 2, 3], "timestamp": [0, 1, 2, 3]})
    got = _edges(tmp_path, inter, CooccurrenceConfig(window=10))
    assert got == {(0, 1): 1, (1, 0): 1}


def test_window_below_two_is_rejected():
    with pytest.raises(GenrecConfigError, match="window"):
        CooccurrenceConfig(window=1)
