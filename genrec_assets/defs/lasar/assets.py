"""LASAR's data: teacher chains of thought per training example, segmented (LASAR §2.3, appendix E.2)."""


import dagster as dg
import pyarrow as pa

from genrec_assets.defs.lasar.anchors import cot_anchor_states
from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import Warehouse
from genrec_ml.config import EmbeddingConfig
from genrec_ml.text.cot import CotConfig, ItemFacts, build_cot_texts
from genrec_ml.text.embed import sentence_encoder
from genrec_ml.warehouse import query, read_partition, replace_partition

GROUP = "lasar"


class CotRunConfig(dg.Config):
    scheme: str = "loo"  # the split scheme whose training examples get a CoT
    teacher: str = "template"  # "template" (from item metadata) or "jsonl" (a file from any LLM: `path`)
    path: str | None = None
    segmenter_model: str = "all-MiniLM-L6-v2"  # sentence-transformers name or local path
    breakpoint_distance: float = 0.5
    max_segments: int = 8
    max_evidence: int = 4
    long_history: int = 8
    recency_decay: float = 0.8


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=["splits", "items"])
def cot_texts(context: dg.AssetExecutionContext, config: CotRunConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """A teacher chain of thought per training example, cut into semantic segments; the segment count
    is LASAR's policy-head label (`genrec_ml.text.cot` says how the template teacher writes)."""
    dataset = context.partition_key
    cot_config = CotConfig(**config.model_dump(exclude={"scheme"}))
    with warehouse.connect(read_only=True) as con:
        examples = query(con, "cot_training_examples", dataset=dataset, scheme=config.scheme)
        facts = ItemFacts.from_items(read_partition(con, "items", dataset))
        user_ids = query(con, "user_ids", dataset=dataset)["user_id"].tolist()
    if examples.empty:
        raise ValueError(f"{dataset} has no training examples of scheme {config.scheme!r}; "
                         f"materialize splits (schemes: loo, ratio)")
    encode = sentence_encoder(EmbeddingConfig(model=config.segmenter_model), progress=True)
    cot = build_cot_texts(examples, facts, cot_config, encode, user_ids=user_ids)
    table = pa.Table.from_pandas(cot.assign(scheme=config.scheme), preserve_index=False)
    with warehouse.connect() as con:
        replace_partition(con, "cot_texts", dataset, table)
        counts = query(con, "cot_segment_counts", dataset=dataset)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(cot), "teacher": config.teacher, "scheme": config.scheme,
        "mean_segments": float(cot["n_segments"].mean()),
        "segment_counts": dg.MetadataValue.md(counts.to_markdown(index=False, floatfmt=".3f")),
        "example": dg.MetadataValue.md("\n".join(f"{i + 1}. {s}" for i, s in enumerate(cot["segments"].iloc[0]))),
    })


ASSETS = [cot_texts, cot_anchor_states]
