"""The DuckDB warehouse: one file, every table partitioned by a `dataset` column.

Writes replace one dataset's rows inside a single transaction, so a failed write leaves the
previous good rows in place. SQL lives in `sql/<name>.sql`, one statement per file, with `$name`
parameters bound by DuckDB (never spliced into the text).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from genrec_ml.published import PUBLISHED_RESULTS, read_published_results

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# Columns added to a partitioned table after warehouses were first written: these statements run
# before each write to it, so an old warehouse gains the column instead of failing the schema check.
ADDED_COLUMNS = {"raw_items": ("raw_items_add_brand",)}


def sql(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}; every statement lives in sql/<name>.sql")
    return path.read_text()


@contextmanager
def connect(path: str | Path, *, read_only: bool = False, wait_seconds: float = 60.0) -> Iterator[
        duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting while another process holds DuckDB's single-writer lock."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as err:
            if "lock" not in str(err).lower() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"cannot open the warehouse {path}: {err}. Close other DuckDB sessions on it "
                    f"(a SQL shell, a notebook) and retry."
                ) from err
            time.sleep(0.5)
    try:
        yield con
    finally:
        con.close()


def query(con: duckdb.DuckDBPyConnection, name: str, **params) -> pd.DataFrame:
    """Run `sql/<name>.sql` with named parameters and return a DataFrame."""
    return con.execute(sql(name), params).df()


def replace_partition(con: duckdb.DuckDBPyConnection, table: str, dataset: str,
                      data: pd.DataFrame | pa.Table, keys: dict[str, str] | None = None) -> int:
    """Atomically replace `dataset`'s rows of `table` (created on first write) with `data`."""
    return replace_partitions(con, dataset, {table: data}, keys)[table]


def replace_partitions(con: duckdb.DuckDBPyConnection, dataset: str,
                       tables: dict[str, pd.DataFrame | pa.Table],
                       keys: dict[str, str] | None = None) -> dict[str, int]:
    """Replace `dataset`'s rows of several tables in ONE transaction: all are written or none.

    `keys` narrows the partition further (e.g. {"tokenizer": "rq_vae"}): those columns are added
    to every row, and only rows matching dataset AND keys are replaced.
    """
    keys = {"dataset": dataset, **(keys or {})}
    arrows = {table: _with_keys(table, data, keys) for table, data in tables.items()}
    match = " AND ".join(f"{k} = ${k}" for k in keys)
    with transaction(con):
        for table, arrow in arrows.items():
            con.register("_incoming", arrow)
            try:
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _incoming LIMIT 0")
                for statement in ADDED_COLUMNS.get(table, ()):
                    con.execute(sql(statement))
                _check_same_columns(con, table, arrow.column_names)
                con.execute(f"DELETE FROM {table} WHERE {match}", keys)
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
            finally:
                con.unregister("_incoming")
    return {table: arrow.num_rows for table, arrow in arrows.items()}


def _with_keys(table: str, data: pd.DataFrame | pa.Table, keys: dict[str, str]) -> pa.Table:
    if not all(_IDENTIFIER.match(name) for name in (table, *keys)):
        raise ValueError(f"table {table!r} and key columns {list(keys)} must be lowercase identifiers")
    arrow = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    arrow = arrow.drop_columns([k for k in keys if k in arrow.column_names])
    for position, (name, value) in enumerate(keys.items()):
        arrow = arrow.add_column(position, name, pa.array([value] * arrow.num_rows, pa.string()))
    return arrow


def read_partition(con: duckdb.DuckDBPyConnection, table: str, dataset: str) -> pd.DataFrame:
    """One dataset's rows of `table`, without the `dataset` column; a clear error when absent."""
    if not _IDENTIFIER.match(table):
        raise ValueError(f"table name {table!r} must be a lowercase identifier")
    if not table_exists(con, table):
        raise LookupError(f"warehouse has no table {table}; materialize the asset that builds it first")
    df = con.execute(f"SELECT * EXCLUDE (dataset) FROM {table} WHERE dataset = $dataset",
                     {"dataset": dataset}).df()
    if df.empty:
        raise LookupError(f"table {table} has no rows for dataset {dataset!r}; materialize that partition first")
    return df


def item_count(con: duckdb.DuckDBPyConnection, dataset: str) -> int:
    """Items in `dataset`'s catalog (0 when none were materialized)."""
    return int(query(con, "items_count", dataset=dataset)["n"].iloc[0]) if table_exists(con, "items") else 0


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = $t", {"t": table}).fetchone()[0])


def _check_same_columns(con: duckdb.DuckDBPyConnection, table: str, incoming: list[str]) -> None:
    existing = [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $t ORDER BY ordinal_position",
        {"t": table}).fetchall()]
    if sorted(existing) != sorted(incoming):
        raise RuntimeError(
            f"warehouse table {table} has columns {existing} but this code writes {incoming}; "
            f"the schema changed: run `DROP TABLE {table}` in the warehouse and re-materialize"
        )


def vectors_to_arrow(vectors) -> pa.Array:
    """(N, D) float array -> Arrow fixed-size list, stored by DuckDB as FLOAT[D]."""
    n, d = vectors.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype("float32").reshape(-1)), d)


def read_vectors(con: duckdb.DuckDBPyConnection, table: str, dataset: str, column: str = "embedding"):
    """(item_index (N,), vectors (N, D) float32) of one dataset, ordered by item_index."""
    import numpy as np

    if not _IDENTIFIER.match(table) or not _IDENTIFIER.match(column):
        raise ValueError(f"bad table or column name {table!r}.{column!r}")
    if not table_exists(con, table):
        raise LookupError(f"warehouse has no table {table}; materialize the asset that builds it first")
    arrow = con.execute(f"SELECT item_index, {column} FROM {table} WHERE dataset = $dataset ORDER BY item_index",
                        {"dataset": dataset}).to_arrow_table()
    if arrow.num_rows == 0:
        raise LookupError(f"table {table} has no rows for dataset {dataset!r}; materialize that partition first")
    col = arrow.column(column).combine_chunks()
    flat = np.asarray(col.flatten(), dtype=np.float32)
    return np.asarray(arrow.column("item_index")), flat.reshape(arrow.num_rows, -1)


EVALUATION_TABLES = ("metrics_table", "metrics_add_seed", "evaluation_runs_table", "evaluation_ranks_table",
                     "published_results_table", "significance_table")
METRIC_VIEWS = ("current_evaluations", "leaderboard_view", "seed_summary_view", "reproduction_view")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything inside commits together or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def insert(con: duckdb.DuckDBPyConnection, statement: str, frame: pd.DataFrame | pa.Table) -> None:
    """Run `sql/<statement>.sql`, which reads `frame` as the registered relation `_incoming`."""
    con.register("_incoming", frame)
    try:
        con.execute(sql(statement))
    finally:
        con.unregister("_incoming")


def append_metrics(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> int:
    """Append one evaluation's rows to `metrics` (created with its views on first use), atomically."""
    return append_evaluation(con, rows)


def append_evaluation(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, run: pd.DataFrame | None = None,
                      ranks: pd.DataFrame | None = None) -> int:
    """Append one evaluation: its `metrics` rows, its `evaluation_runs` row and its `evaluation_ranks`.

    All in one transaction: a failure leaves none of them. Creates the tables and views on first use,
    and fills `published_results` from the repository's CSV while it is empty, so the `reproduction`
    view works in a warehouse that only the CLI has written to.
    """
    with transaction(con):
        ensure_evaluation_tables(con)
        _check_same_columns(con, "metrics", list(rows.columns))
        for table, frame in (("metrics", rows), ("evaluation_runs", run), ("evaluation_ranks", ranks)):
            if frame is not None:
                insert(con, f"{table}_insert", frame)
    return len(rows)


def ensure_evaluation_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The evaluation tables and their views (inside the caller's transaction); `published_results`
    is filled from the repository's CSV while it is empty."""
    _create_evaluation_tables(con)
    if not con.execute("SELECT count(*) FROM published_results").fetchone()[0] and PUBLISHED_RESULTS.is_file():
        insert(con, "published_results_insert", read_published_results())
    _create_metric_views(con)


def replace_published_results(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
    """Replace every row of `published_results` with `frame`, atomically; refreshes the views."""
    with transaction(con):
        _create_evaluation_tables(con)
        con.execute(sql("published_results_clear"))
        insert(con, "published_results_insert", frame)
        _create_metric_views(con)
    return len(frame)


def _create_evaluation_tables(con: duckdb.DuckDBPyConnection) -> None:
    for statement in EVALUATION_TABLES:
        con.execute(sql(statement))


def _create_metric_views(con: duckdb.DuckDBPyConnection) -> None:
    for view in METRIC_VIEWS:
        con.execute(sql(view))
