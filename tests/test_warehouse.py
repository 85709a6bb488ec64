import pandas as pd
import pytest

from genrec_ml import warehouse


def test_replace_partition_only_touches_its_dataset(tmp_path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        warehouse.replace_partition(con, "t", "a", pd.DataFrame({"x": [1, 2]}))
        warehouse.replace_partition(con, "t", "b", pd.DataFrame({"x": [3]}))
        warehouse.replace_partition(con, "t", "a", pd.DataFrame({"x": [7]}))
        assert warehouse.read_partition(con, "t", "a")["x"].tolist() == [7]
        assert warehouse.read_partition(con, "t", "b")["x"].tolist() == [3]


def test_failed_multi_table_write_keeps_previous_rows(tmp_path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        warehouse.replace_partitions(con, "a", {"t1": pd.DataFrame({"x": [1]}), "t2": pd.DataFrame({"y": [1]})})
        # t2 now arrives with another schema: the whole write must roll back, t1 included.
        with pytest.raises(RuntimeError, match="DROP TABLE t2"):
            warehouse.replace_partitions(con, "a", {"t1": pd.DataFrame({"x": [9, 9]}),
                                                    "t2": pd.DataFrame({"z": [2]})})
        assert warehouse.read_partition(con, "t1", "a")["x"].tolist() == [1]
        assert warehouse.read_partition(con, "t2", "a")["y"].tolist() == [1]


def test_missing_partition_says_what_to_materialize(tmp_path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(LookupError, match="materialize"):
            warehouse.read_partition(con, "nope", "a")
        warehouse.replace_partition(con, "t", "a", pd.DataFrame({"x": [1]}))
        with pytest.raises(LookupError, match="dataset 'b'"):
            warehouse.read_partition(con, "t", "b")


def test_vectors_round_trip(tmp_path):
    import numpy as np
    import pyarrow as pa

    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        warehouse.replace_partition(con, "e", "a", pa.table({"item_index": [2, 0, 1],
                                                             "embedding": warehouse.vectors_to_arrow(v)}))
        idx, got = warehouse.read_vectors(con, "e", "a")
    assert idx.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(got, v[[1, 2, 0]])


def test_group_by_after_large_arrow_insert(tmp_path):
    """Regression: duckdb 2.0.0 returned no groups here (> one 122,880-row group from Arrow)."""
    import pyarrow as pa

    n = 130_000
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        warehouse.replace_partition(con, "t", "a", pa.table({"x": list(range(n))}))
        assert con.execute("SELECT dataset, count(*) FROM t GROUP BY dataset").fetchall() == [("a", n)]


def test_extra_keys_narrow_the_replaced_rows(tmp_path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        warehouse.replace_partition(con, "s", "a", pd.DataFrame({"x": [1]}), keys={"tokenizer": "p"})
        warehouse.replace_partition(con, "s", "a", pd.DataFrame({"x": [2]}), keys={"tokenizer": "q"})
        warehouse.replace_partition(con, "s", "a", pd.DataFrame({"x": [3, 4]}), keys={"tokenizer": "p"})
        rows = con.execute("SELECT tokenizer, x FROM s ORDER BY ALL").fetchall()
    assert rows == [("p", 3), ("p", 4), ("q", 2)]


def test_raw_items_of_an_old_warehouse_gain_the_brand_column(tmp_path):
    from genrec_ml.data.raw import items_frame

    with warehouse.connect(tmp_path / "w.duckdb") as con:
        # As written before readers kept the brand.
        con.execute("CREATE TABLE raw_items AS SELECT 'old' AS dataset, 'a' AS item_id, 'A' AS title, "
                    "'' AS description, ['x'] AS categories, 'f' AS source_file, 2::BIGINT AS source_line")
        new = items_frame(["b"], ["B"], [""], [["y"]], "g", [2], ["OPI"])
        warehouse.replace_partition(con, "raw_items", "new", new)
        assert warehouse.read_partition(con, "raw_items", "old")["brand"].tolist() == [""]
        assert warehouse.read_partition(con, "raw_items", "new")["brand"].tolist() == ["OPI"]
