"""The genrec code location: every asset, check, job, schedule and sensor, with resources bound once."""

import dagster as dg

from genrec_assets.defs.codebooks import assets as codebook_assets
from genrec_assets.defs.codebooks import checks as codebook_checks
from genrec_assets.defs.data import assets as data_assets
from genrec_assets.defs.data import checks as data_checks
from genrec_assets.defs.embeddings import assets as embedding_assets
from genrec_assets.defs.embeddings import checks as embedding_checks
from genrec_assets.defs.jobs import MODEL_JOBS, default_pipeline_job, nightly_retraining, train_evaluate_job
from genrec_assets.defs.lasar import assets as lasar_assets
from genrec_assets.defs.lasar import checks as lasar_checks
from genrec_assets.defs.models.registry import MODEL_ASSETS, MODEL_CHECKS
from genrec_assets.defs.reproduction.assets import reproduction
from genrec_assets.defs.resources import default_resources
from genrec_assets.defs.sensors import dataset_folders

defs = dg.Definitions(
    assets=[*dg.load_assets_from_modules([data_assets, embedding_assets]), *codebook_assets.CODEBOOK_ASSETS,
            *MODEL_ASSETS, *lasar_assets.ASSETS, reproduction],
    asset_checks=[*data_checks.ASSET_CHECKS, *embedding_checks.ASSET_CHECKS, *codebook_checks.ASSET_CHECKS,
                  *MODEL_CHECKS, *lasar_checks.ASSET_CHECKS],
    jobs=[default_pipeline_job, train_evaluate_job, *MODEL_JOBS],
    schedules=[nightly_retraining],
    sensors=[dataset_folders],
    resources=default_resources(),
    # One process: DuckDB has one writer, and torch already uses every core.
    executor=dg.in_process_executor,
)
