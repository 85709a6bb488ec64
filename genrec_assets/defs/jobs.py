"""Jobs users launch from the UI or CLI."""

import dagster as dg

from genrec_assets.defs.partitions import dataset_partitions

default_pipeline_job = dg.define_asset_job(
    "default_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=dataset_partitions,
    description="Everything for one dataset: raw logs -> interactions, items, splits -> text embeddings "
                "-> co-occurrence edges -> propagated embeddings, with every check.",
)
