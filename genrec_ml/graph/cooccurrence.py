"""Item co-occurrence edges over training-period histories, computed by DuckDB SQL in sql/."""

from __future__ import annotations

import duckdb
import pandas as pd

from genrec_ml.config import CooccurrenceConfig
from genrec_ml.warehouse import query, sql

EDGE_COLUMNS = ["src_item_index", "dst_item_index", "weight"]


def cooccurrence_edges(con: duckdb.DuckDBPyConnection, dataset: str, config: CooccurrenceConfig) -> pd.DataFrame:
    """Symmetric weighted edges from the warehouse tables `interactions` and `splits`."""
    con.execute(sql("training_interactions_macro"))
    if config.max_seconds is None:
        edges = query(con, "cooccurrence_edges_window", dataset=dataset, window=config.window)
    else:
        edges = query(con, "cooccurrence_edges_time", dataset=dataset, max_seconds=config.max_seconds)
    return edges.astype({"src_item_index": "int64", "dst_item_index": "int64", "weight": "int64"})
