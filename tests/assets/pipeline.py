"""Shared helpers for the asset tests: every asset and check, materialized in process."""

import dagster as dg

from genrec_assets.defs.data import assets as data_assets
from genrec_assets.defs.data import checks as data_checks
from genrec_assets.defs.embeddings import assets as embedding_assets
from genrec_assets.defs.embeddings import checks as embedding_checks
from genrec_assets.defs.resources import DataRoot, Warehouse

ALL_ASSETS = dg.load_assets_from_modules([data_assets, embedding_assets])
ALL_CHECKS = [*data_checks.ASSET_CHECKS, *embedding_checks.ASSET_CHECKS]
CHECK_FUNCTIONS = {key.name: getattr(module, key.name) for module in (data_checks, embedding_checks)
                   for check in module.ASSET_CHECKS for key in check.check_keys}
TINY = {"ops": {"raw_data": {"config": {"synthetic_items": 400, "synthetic_users": 300}}}}


def materialize(warehouse_path, partition="synthetic", run_config=None, data_root="", selection=None,
                raise_on_error=True):
    """Run config defaults to the tiny synthetic size for full runs and to none for selections."""
    if run_config is None:
        run_config = TINY if selection is None else {}
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], partition_key=partition, run_config=run_config, selection=selection,
        resources={"warehouse": Warehouse(path=str(warehouse_path)), "data_root": DataRoot(path=str(data_root))},
        raise_on_error=raise_on_error,
    )



def run_check(warehouse_path, name: str, dataset: str = "synthetic") -> bool:
    """Run one check's logic directly against what the warehouse holds now."""
    return CHECK_FUNCTIONS[name](Warehouse(path=str(warehouse_path)), dataset).passed
