"""Checks on embeddings and the co-occurrence graph. All block downstream assets."""


import dagster as dg
import numpy as np

from genrec_assets.defs.expectations import partitioned_check, zero_violations
from genrec_assets.defs.resources import Warehouse
from genrec_ml.warehouse import item_count, query, read_vectors, sql

TEXT_MODEL_DIMENSIONS = {"all-MiniLM-L6-v2": 384, "sentence-transformers/all-MiniLM-L6-v2": 384}


def embedding_table_result(warehouse: Warehouse, table: str, dataset: str,
                           expected_dim: int | None) -> dg.AssetCheckResult:
    """Finite values, the expected dimension, and exactly one row per item of `items`."""
    with warehouse.connect(read_only=True) as con:
        item_index, vectors = read_vectors(con, table, dataset)
        n_items = item_count(con, dataset)
    non_finite_rows = int((~np.isfinite(vectors)).any(axis=1).sum())
    one_per_item = bool(np.array_equal(item_index, np.arange(n_items)))
    dim_ok = expected_dim is None or vectors.shape[1] == expected_dim
    return dg.AssetCheckResult(
        passed=non_finite_rows == 0 and one_per_item and dim_ok,
        metadata={"rows": len(item_index), "items": int(n_items), "dimension": int(vectors.shape[1]),
                  "expected_dimension": expected_dim if expected_dim is not None else "any",
                  "non_finite_rows": non_finite_rows, "one_row_per_item": one_per_item})


def item_text_embeddings_valid(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """Finite, the model's dimension, one row per item."""
    with warehouse.connect(read_only=True) as con:
        model = query(con, "item_text_embeddings_model", dataset=dataset)["model"].iloc[0]
    return embedding_table_result(warehouse, "item_text_embeddings", dataset,
                                  TEXT_MODEL_DIMENSIONS.get(model))


def propagated_embeddings_valid(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """Finite, same dimension as the text embeddings, one row per item."""
    with warehouse.connect(read_only=True) as con:
        _, text = read_vectors(con, "item_text_embeddings", dataset)
    return embedding_table_result(warehouse, "propagated_embeddings", dataset, text.shape[1])


def cooccurrence_edges_symmetric(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """Every edge has its reverse with the same weight; no self-loops."""
    with warehouse.connect(read_only=True) as con:
        bad = query(con, "check_edges_asymmetric", dataset=dataset)
    return zero_violations(len(bad), "edge without an equal reverse edge, or a self-loop", bad)


def cooccurrence_edges_training_only(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """No edge weighs more than the users who hold both items in their training period."""
    with warehouse.connect() as con:
        # The macro is a TEMP object, so this connection must be writable to define it.
        con.execute(sql("training_interactions_macro"))
        bad = query(con, "check_edges_training_support", dataset=dataset)
    return zero_violations(len(bad), "edge not supported by training-period histories", bad)


ASSET_CHECKS = [
    partitioned_check("item_text_embeddings", item_text_embeddings_valid),
    partitioned_check("propagated_embeddings", propagated_embeddings_valid, additional_deps=["item_text_embeddings"]),
    partitioned_check("cooccurrence_edges", cooccurrence_edges_symmetric),
    partitioned_check("cooccurrence_edges", cooccurrence_edges_training_only, additional_deps=["splits"]),
]
