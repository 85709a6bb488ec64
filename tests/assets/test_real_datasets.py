"""The real datasets in ../shared/data through the relational part of the pipeline (no embeddings,
which take minutes on CPU: the closing notes record full runs)."""

import pytest

from genrec_ml import warehouse
from tests.assets.pipeline import DATA_CHECKS, materialize

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]
RELATIONAL = ["raw_interactions", "raw_items", "interactions", "items", "splits", "cooccurrence_edges"]


def test_amazon_beauty_is_already_5_core(shared_data, tmp_path):
    path = tmp_path / "w.duckdb"
    result = materialize(path, partition="amazon-beauty", data_root=shared_data, selection=RELATIONAL)
    assert result.success
    checks = [e.asset_check_evaluation_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    expected = {k.name for c in DATA_CHECKS for k in c.check_keys if k.asset_key.path[0] in RELATIONAL}
    assert {c.check_name for c in checks} == expected and all(c.passed for c in checks)
    with warehouse.connect(path, read_only=True) as con:
        n, users, items = con.execute("SELECT count(*), count(DISTINCT user_index), count(DISTINCT item_index) "
                                      "FROM interactions WHERE dataset = 'amazon-beauty'").fetchone()
        loo = dict(con.execute("SELECT split, count(*) FROM splits WHERE scheme = 'loo' GROUP BY split").fetchall())
    assert (n, users, items) == (198_502, 22_363, 12_101)
    assert loo["valid"] == loo["test"] == 22_363
    assert loo["train"] == 198_502 - 3 * 22_363  # every position but the first, minus valid and test
