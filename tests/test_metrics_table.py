"""The `metrics` table, its `current_evaluations` and `leaderboard` views, and the popularity check."""

import pandas as pd
import pytest

from genrec_assets.defs.models.assets import write_metrics
from genrec_assets.defs.models.checks import beats_popularity
from genrec_assets.defs.resources import Warehouse
from genrec_ml import warehouse

POPULARITY = {"model": "popularity", "variant": "default", "tokenizer": None, "profile": "none", "scheme": "loo"}
TIGER = {"model": "tiger", "variant": "default", "tokenizer": "rq_vae", "profile": "smoke", "scheme": "loo"}


def evaluation(valid_ndcg: float, test_ndcg: float) -> pd.DataFrame:
    return pd.DataFrame([
        {"split": "valid", "metric": "ndcg", "k": 10, "value": valid_ndcg},
        {"split": "test", "metric": "ndcg", "k": 10, "value": test_ndcg},
        {"split": "test", "metric": "recall", "k": 10, "value": 2 * test_ndcg},
        {"split": "test", "metric": "mrr", "k": -1, "value": test_ndcg / 2},
    ])


@pytest.fixture
def store(tmp_path) -> Warehouse:
    return Warehouse(path=str(tmp_path / "warehouse.duckdb"))


def leaderboard(store: Warehouse) -> pd.DataFrame:
    with store.connect(read_only=True) as con:
        return con.execute("SELECT * FROM leaderboard").df()


def test_only_evaluations_beating_popularity_become_current(store):
    write_metrics(store, "beauty", POPULARITY, evaluation(0.10, 0.09), None, "run-0")
    good = write_metrics(store, "beauty", TIGER, evaluation(0.20, 0.18), "mlflow-1", "run-1")
    assert beats_popularity(store, "beauty", "tiger", "default").passed
    write_metrics(store, "beauty", TIGER, evaluation(0.05, 0.30), "mlflow-2", "run-2")  # newer, below the floor
    check = beats_popularity(store, "beauty", "tiger", "default")
    assert not check.passed and check.metadata["valid_ndcg_10"].value == pytest.approx(0.05)
    board = leaderboard(store).set_index("model")
    assert list(board.index) == ["tiger", "popularity"]  # best test NDCG@10 first
    assert board.loc["tiger", "evaluation_id"] == good and board.loc["tiger", "mlflow_run_id"] == "mlflow-1"
    assert board.loc["tiger", "ndcg_10"] == pytest.approx(0.18) and board.loc["tiger", "recall_10"] == 0.36
    assert board.loc["tiger", "mrr"] == pytest.approx(0.09)
    assert board.loc["tiger", "popularity_valid_ndcg_10"] == pytest.approx(0.10)


def test_newest_passing_evaluation_replaces_the_older_one(store):
    write_metrics(store, "beauty", POPULARITY, evaluation(0.10, 0.09), None, "run-0")
    write_metrics(store, "beauty", TIGER, evaluation(0.20, 0.18), "mlflow-1", "run-1")
    newer = write_metrics(store, "beauty", TIGER, evaluation(0.15, 0.12), "mlflow-2", "run-2")
    board = leaderboard(store).set_index("model")
    assert board.loc["tiger", "evaluation_id"] == newer and board.loc["tiger", "ndcg_10"] == pytest.approx(0.12)
    with store.connect(read_only=True) as con:  # the table keeps every evaluation
        assert con.execute("SELECT count(DISTINCT evaluation_id) FROM metrics").fetchone()[0] == 3


def test_datasets_are_judged_against_their_own_floor(store):
    write_metrics(store, "beauty", POPULARITY, evaluation(0.10, 0.09), None, "run-0")
    write_metrics(store, "lens", POPULARITY, evaluation(0.50, 0.40), None, "run-0")
    write_metrics(store, "lens", TIGER, evaluation(0.20, 0.18), "mlflow-1", "run-1")
    assert not beats_popularity(store, "lens", "tiger", "default").passed
    assert set(leaderboard(store)["dataset"]) == {"beauty", "lens"}
    assert "tiger" not in set(leaderboard(store)["model"])


def test_check_fails_with_a_reason_when_nothing_was_evaluated(store):
    write_metrics(store, "beauty", POPULARITY, evaluation(0.10, 0.09), None, "run-0")
    result = beats_popularity(store, "beauty", "tiger", "default")
    assert not result.passed and "materialize" in result.metadata["reason"].value


def test_a_failed_append_leaves_the_table_as_it_was(store):
    write_metrics(store, "beauty", POPULARITY, evaluation(0.10, 0.09), None, "run-0")
    bad = evaluation(0.2, 0.2).assign(value=None)  # NOT NULL violated
    with pytest.raises(Exception, match="NOT NULL"):
        write_metrics(store, "beauty", TIGER, bad, "mlflow-1", "run-1")
    with store.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == 4
        assert warehouse.table_exists(con, "leaderboard")
