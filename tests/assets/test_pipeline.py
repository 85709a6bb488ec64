"""In-process materialization of the data pipeline on a tiny `synthetic` partition."""

import shutil

import numpy as np
import pytest

from genrec_ml import warehouse
from tests.assets.pipeline import DATA_CHECKS, TINY, materialize, run_check

pytestmark = pytest.mark.slow


def _check_results(result) -> dict[str, bool]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def test_every_asset_and_check_succeeds(synthetic_warehouse):
    path, result = synthetic_warehouse
    assert result.success
    checks = _check_results(result)
    assert len(checks) == sum(len(list(c.check_keys)) for c in DATA_CHECKS)
    assert all(checks.values()), checks
    with warehouse.connect(path, read_only=True) as con:
        counts = dict(con.execute("""
            SELECT 'interactions', count(*) FROM interactions WHERE dataset = 'synthetic' UNION ALL
            SELECT 'items', count(*) FROM items WHERE dataset = 'synthetic' UNION ALL
            SELECT 'embeddings', count(*) FROM item_text_embeddings WHERE dataset = 'synthetic' UNION ALL
            SELECT 'propagated', count(*) FROM propagated_embeddings WHERE dataset = 'synthetic' UNION ALL
            SELECT 'edges', count(*) FROM cooccurrence_edges WHERE dataset = 'synthetic'""").fetchall())
    assert counts["items"] == counts["embeddings"] == counts["propagated"] > 300
    assert counts["interactions"] > 5 * 250 and counts["edges"] > 0


def test_same_seed_gives_same_tables(synthetic_warehouse, tmp_path):
    path, _ = synthetic_warehouse
    again = tmp_path / "again.duckdb"
    materialize(again, run_config=TINY, selection=["raw_interactions", "raw_items", "interactions", "items", "splits",
                                  "cooccurrence_edges"])
    query = "SELECT * EXCLUDE (dataset) FROM {} WHERE dataset = 'synthetic' ORDER BY ALL"
    for table in ("interactions", "splits", "cooccurrence_edges"):
        with warehouse.connect(path, read_only=True) as a, warehouse.connect(again, read_only=True) as b:
            assert a.execute(query.format(table)).df().equals(b.execute(query.format(table)).df()), table


def test_unchanged_items_are_not_re_encoded(synthetic_warehouse, tmp_path):
    path, _ = synthetic_warehouse
    copy = tmp_path / "copy.duckdb"
    shutil.copy(path, copy)
    result = materialize(copy, selection=["item_text_embeddings"])
    meta = result.asset_materializations_for_node("item_text_embeddings")[0].metadata
    assert meta["encoded"].value == 0
    assert meta["reused_unchanged"].value == meta["dagster/row_count"].value


PLANTED = {
    "interactions_ids_valid": "UPDATE interactions SET position = 0 WHERE user_index = 0",
    "interactions_items_exist": "DELETE FROM items WHERE item_index = (SELECT min(item_index) FROM items)",
    "interactions_k_core": "DELETE FROM interactions WHERE user_index = 0 AND position > 0",
    "items_ids_valid": "UPDATE items SET item_id = 'dup' WHERE item_index < 2",
    "items_texts_distinct": "UPDATE items SET text = 'same' WHERE item_index < 50",
    "splits_one_valid_one_test": "DELETE FROM splits WHERE split = 'test' AND user_index = 0",
    "splits_history_precedes_target": "UPDATE splits SET history = list_append(history, target_item_index) "
                                      "WHERE user_index = 1 AND split = 'test'",
    "item_text_embeddings_valid": "DELETE FROM item_text_embeddings WHERE item_index = 3",
    "propagated_embeddings_valid": "UPDATE propagated_embeddings SET embedding = "
                                   "list_transform(embedding, x -> x / 0.0) WHERE item_index = 2",
    "cooccurrence_edges_symmetric": "DELETE FROM cooccurrence_edges WHERE rowid = (SELECT min(rowid) "
                                    "FROM cooccurrence_edges)",
    "cooccurrence_edges_training_only": "UPDATE cooccurrence_edges SET weight = weight + 1000",
}


def test_every_check_has_planted_bad_data():
    assert set(PLANTED) == {key.name for check in DATA_CHECKS for key in check.check_keys}


@pytest.mark.parametrize("check_name", sorted(PLANTED))
def test_check_fails_on_planted_bad_data(synthetic_warehouse, tmp_path, check_name):
    path, _ = synthetic_warehouse
    copy = tmp_path / "bad.duckdb"
    shutil.copy(path, copy)
    assert run_check(copy, check_name), "check must pass on the good copy first"
    with warehouse.connect(copy) as con:
        con.execute(PLANTED[check_name])
    assert not run_check(copy, check_name)


def test_failed_materialization_keeps_previous_tables(synthetic_warehouse, tmp_path):
    path, _ = synthetic_warehouse
    copy = tmp_path / "keep.duckdb"
    shutil.copy(path, copy)
    with warehouse.connect(copy, read_only=True) as con:
        before = con.execute("SELECT count(*), sum(item_index) FROM interactions").fetchone()
    # k_core so high that cleaning empties the dataset: the asset fails, nothing is replaced.
    config = {"ops": {"cleaned_dataset": {"config": {"k_core": 10_000}}}}
    result = materialize(copy, run_config=config, selection=["interactions", "items"], raise_on_error=False)
    assert not result.success
    with warehouse.connect(copy, read_only=True) as con:
        assert con.execute("SELECT count(*), sum(item_index) FROM interactions").fetchone() == before


def test_propagated_embeddings_differ_from_text_only_for_connected_items(synthetic_warehouse):
    path, _ = synthetic_warehouse
    with warehouse.connect(path, read_only=True) as con:
        _, text = warehouse.read_vectors(con, "item_text_embeddings", "synthetic")
        _, prop = warehouse.read_vectors(con, "propagated_embeddings", "synthetic")
        connected = {r[0] for r in con.execute("SELECT DISTINCT src_item_index FROM cooccurrence_edges").fetchall()}
    moved = np.abs(prop - text).max(axis=1) > 1e-6
    assert {i for i in range(len(text)) if moved[i]} == connected
