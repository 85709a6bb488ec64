"""Raw logs -> cleaned interactions and items -> train/valid/test splits."""


import json

import dagster as dg
import pandas as pd

from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import DataRoot, Warehouse
from genrec_ml.config import CleaningConfig, SplitConfig
from genrec_ml.data.cleaning import clean
from genrec_ml.data.sources import load_raw_dataset
from genrec_ml.data.splits import build_splits
from genrec_ml.data.synthetic import SyntheticConfig
from genrec_ml.warehouse import read_partition, replace_partition, replace_partitions

GROUP = "data"


class RawDataConfig(dg.Config):
    """Size of the embedded `synthetic` dataset (ignored for folders under the data root).

    The default is the first run's size: README command 1 (data, embeddings, every codebook,
    popularity and TIGER, every check) in minutes on 2 cores, TIGER still clearly above popularity
    (`benchmarks/first_run.py` prints the time per stage). Texts are the cost of the embeddings
    (MiniLM's time grows with tokens), so descriptions are short. The library's `SyntheticConfig`
    defaults (5,000 items, 3,000 users, 18-word descriptions) are one config away, as is any size.
    """

    synthetic_seed: int = 0
    synthetic_items: int = 2000
    synthetic_users: int = 1000
    synthetic_description_words: int = 8


class CleaningRunConfig(dg.Config):
    """Maps onto genrec_ml CleaningConfig, whose comments say why these defaults."""

    k_core: int = 5
    shared_title_share: float = 0.01
    shared_title_min_items: int = 5


class SplitRunConfig(dg.Config):
    max_history: int = 20


@dg.multi_asset(
    specs=[
        dg.AssetSpec("raw_interactions", group_name=GROUP,
                     description="Interaction rows as read, with source file and line."),
        dg.AssetSpec("raw_items", group_name=GROUP,
                     description="Item metadata rows as read, with source file and line."),
    ],
    partitions_def=dataset_partitions,
)
def raw_data(context: dg.AssetExecutionContext, config: RawDataConfig, warehouse: Warehouse, data_root: DataRoot):
    raw = load_raw_dataset(
        context.partition_key, data_root.path,
        SyntheticConfig(seed=config.synthetic_seed, n_items=config.synthetic_items, n_users=config.synthetic_users,
                        description_words=config.synthetic_description_words),
    )
    with warehouse.connect() as con:
        counts = replace_partitions(con, context.partition_key,
                                    {"raw_interactions": raw.interactions, "raw_items": raw.items})
    n_inter, n_items = counts["raw_interactions"], counts["raw_items"]
    yield dg.MaterializeResult(asset_key="raw_interactions", metadata={"dagster/row_count": n_inter})
    yield dg.MaterializeResult(asset_key="raw_items", metadata={"dagster/row_count": n_items, **raw.report})


@dg.multi_asset(
    specs=[
        dg.AssetSpec("interactions", group_name=GROUP, deps=["raw_interactions", "raw_items"],
                     description="Deduplicated, known items only, iterative k-core, chronological, integer indices."),
        dg.AssetSpec("items", group_name=GROUP, deps=["raw_items", "raw_interactions"],
                     description="Items that survive cleaning: index, text to embed, category labels. A title "
                                 "with no words or shared by much of the catalog is replaced by brand, "
                                 "categories or description."),
    ],
    partitions_def=dataset_partitions,
)
def cleaned_dataset(context: dg.AssetExecutionContext, config: CleaningRunConfig, warehouse: Warehouse):
    dataset = context.partition_key
    with warehouse.connect() as con:
        cleaned = clean(read_partition(con, "raw_interactions", dataset), read_partition(con, "raw_items", dataset),
                        CleaningConfig(k_core=config.k_core, shared_title_share=config.shared_title_share,
                                       shared_title_min_items=config.shared_title_min_items))
        report = cleaned.report
        audit = pd.DataFrame([{"k_core": config.k_core, "report": json.dumps(report),
                               "created_at": pd.Timestamp.now(tz="UTC")}])
        replace_partitions(con, dataset, {
            "interactions": cleaned.interactions, "items": cleaned.items, "cleaning_runs": audit})
    context.log.info(f"cleaning {dataset}: {report}")
    yield dg.MaterializeResult(asset_key="interactions", metadata={
        "dagster/row_count": report["interactions"], "users": report["users"], "items": report["items"],
        "k_core": config.k_core, "drops": dg.MetadataValue.json(report)})
    yield dg.MaterializeResult(asset_key="items", metadata={
        "dagster/row_count": report["items"],
        **{key: value for key, value in report.items() if key.startswith("titles_")}})


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=["interactions"])
def splits(context: dg.AssetExecutionContext, config: SplitRunConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Leave-one-out and per-user chronological 8:1:1 examples; history = up to `max_history` prior items."""
    dataset = context.partition_key
    with warehouse.connect() as con:
        interactions = read_partition(con, "interactions", dataset).sort_values(["user_index", "position"])
        examples = build_splits(interactions, SplitConfig(max_history=config.max_history))
        replace_partition(con, "splits", dataset, examples)
    counts = examples.groupby(["scheme", "split"]).size()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(examples), "max_history": config.max_history,
        **{f"{scheme}_{split}": int(n) for (scheme, split), n in counts.items()}})
