"""Item text embeddings -> co-occurrence graph -> propagated embeddings (S²GR §4.1)."""


import dagster as dg
import numpy as np
import pyarrow as pa

from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import Warehouse
from genrec_ml.config import CooccurrenceConfig, EmbeddingConfig, PropagationConfig
from genrec_ml.graph.cooccurrence import cooccurrence_edges as build_edges
from genrec_ml.graph.propagation import propagate
from genrec_ml.text.embed import embed_texts
from genrec_ml.warehouse import (
    item_count,
    query,
    read_partition,
    read_vectors,
    replace_partition,
    table_exists,
    vectors_to_arrow,
)

GROUP = "embeddings"


class EmbeddingRunConfig(dg.Config):
    model: str = "all-MiniLM-L6-v2"  # sentence-transformers name or local path
    batch_size: int = 128


class CooccurrenceRunConfig(dg.Config):
    window: int = 3
    max_seconds: int | None = None  # set to use a time window instead of a position window


class PropagationRunConfig(dg.Config):
    alpha: float = 0.2
    hops: int = 3


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=["items"])
def item_text_embeddings(context: dg.AssetExecutionContext, config: EmbeddingRunConfig,
                         warehouse: Warehouse) -> dg.MaterializeResult:
    """Sentence-transformers embedding of each item's text; unchanged texts are reused, not re-encoded."""
    dataset = context.partition_key
    embedding_config = EmbeddingConfig(model=config.model, batch_size=config.batch_size)
    with warehouse.connect() as con:
        items = read_partition(con, "items", dataset).sort_values("item_index")
        previous = _previous_embeddings(con, dataset)
    result = embed_texts(items["text"].tolist(), embedding_config, previous=previous, progress=True)
    table = pa.table({
        "item_index": pa.array(items["item_index"].to_numpy(), pa.int64()),
        "item_id": pa.array(items["item_id"].tolist(), pa.string()),
        "model": pa.array([config.model] * len(items), pa.string()),
        "text_sha": pa.array(result.text_sha, pa.string()),
        "embedding": vectors_to_arrow(result.vectors),
    })
    with warehouse.connect() as con:
        replace_partition(con, "item_text_embeddings", dataset, table)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(items), "dimension": result.vectors.shape[1], "model": config.model,
        "encoded": result.encoded, "reused_unchanged": result.reused})


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=["interactions", "splits"])
def cooccurrence_edges(context: dg.AssetExecutionContext, config: CooccurrenceRunConfig,
                       warehouse: Warehouse) -> dg.MaterializeResult:
    """Symmetric item pairs co-occurring in training histories; weight = number of users (sql/)."""
    dataset = context.partition_key
    with warehouse.connect() as con:
        edges = build_edges(con, dataset, CooccurrenceConfig(window=config.window, max_seconds=config.max_seconds))
        replace_partition(con, "cooccurrence_edges", dataset, edges)
        n_items = item_count(con, dataset)
    connected = edges["src_item_index"].nunique()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(edges), "undirected_edges": len(edges) // 2,
        "items_with_edges": int(connected), "isolated_items": int(n_items - connected),
        "mean_weight": float(edges["weight"].mean()) if len(edges) else 0.0})


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=["item_text_embeddings", "cooccurrence_edges"])
def propagated_embeddings(context: dg.AssetExecutionContext, config: PropagationRunConfig,
                          warehouse: Warehouse) -> dg.MaterializeResult:
    """H_align = Σ β_k H(k), H(k) = (1−α)ÂH(k−1) + αX (S²GR eq. 3–5)."""
    dataset = context.partition_key
    propagation = PropagationConfig(alpha=config.alpha, hops=config.hops)
    with warehouse.connect() as con:
        item_index, x = read_vectors(con, "item_text_embeddings", dataset)
        edges = read_partition(con, "cooccurrence_edges", dataset)
    if not np.array_equal(item_index, np.arange(len(item_index))):
        raise ValueError(f"item_text_embeddings for {dataset} do not cover item_index 0..{len(item_index) - 1}; "
                         f"re-materialize item_text_embeddings")
    h = propagate(x, edges, propagation)
    table = pa.table({"item_index": pa.array(item_index, pa.int64()), "embedding": vectors_to_arrow(h)})
    with warehouse.connect() as con:
        replace_partition(con, "propagated_embeddings", dataset, table)
    shift = float(np.linalg.norm(h - x, axis=1).mean())
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(h), "alpha": config.alpha, "hops": config.hops, "mean_shift_from_text": shift})


def _previous_embeddings(con, dataset: str) -> dict[str, np.ndarray]:
    if not table_exists(con, "item_text_embeddings"):
        return {}
    shas = query(con, "item_text_embedding_shas", dataset=dataset)["text_sha"]
    if shas.empty:
        return {}
    _, vectors = read_vectors(con, "item_text_embeddings", dataset)
    return {sha: vec for sha, vec in zip(shas, vectors, strict=True)}
