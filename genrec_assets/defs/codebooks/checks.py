"""Checks on every codebook variant's Semantic IDs. All block downstream training."""

import dagster as dg
import pandas as pd

from genrec_assets.defs.codebooks.assets import VARIANT_INPUTS
from genrec_assets.defs.expectations import zero_violations
from genrec_assets.defs.resources import Warehouse
from genrec_ml.warehouse import query


class IcrFloorConfig(dg.Config):
    floor: float = 0.5  # ICR = distinct SIDs / items before disambiguation; below this SIDs are too coarse


def sids_complete(warehouse: Warehouse, dataset: str, tokenizer: str) -> dg.AssetCheckResult:
    """Every item has exactly one code at every level."""
    with warehouse.connect(read_only=True) as con:
        bad = query(con, "check_sids_incomplete", dataset=dataset, tokenizer=tokenizer)
    return zero_violations(len(bad), "item without a full SID", bad)


def sids_in_range(warehouse: Warehouse, dataset: str, tokenizer: str) -> dg.AssetCheckResult:
    """Codes in [0, codebook_size) at each level; full SIDs unique across items."""
    with warehouse.connect(read_only=True) as con:
        out_of_range = query(con, "check_sids_out_of_range", dataset=dataset, tokenizer=tokenizer)
        duplicated = query(con, "check_sids_duplicated", dataset=dataset, tokenizer=tokenizer)
    result = zero_violations(len(out_of_range) + len(duplicated), "code out of range, or SID shared by items",
                             out_of_range if len(out_of_range) else duplicated)
    return dg.AssetCheckResult(passed=result.passed, metadata={
        **result.metadata, "out_of_range": len(out_of_range), "duplicated_sids": len(duplicated)})


def icr_above_floor(warehouse: Warehouse, dataset: str, tokenizer: str, floor: float) -> dg.AssetCheckResult:
    """Item-to-code ratio (distinct SIDs / items, before disambiguation) is at least `floor`."""
    with warehouse.connect(read_only=True) as con:
        icr, cur, collisions = query(con, "codebook_icr", dataset=dataset, tokenizer=tokenizer).iloc[0]
    icr, cur, collisions = (None if pd.isna(v) else float(v) for v in (icr, cur, collisions))
    return dg.AssetCheckResult(passed=icr is not None and icr >= floor,
                               metadata={"icr": icr, "floor": floor, "cur": cur, "collision_rate": collisions})


def _variant_checks(variant: str) -> list[dg.AssetChecksDefinition]:
    asset = f"{variant}_codebook"

    @dg.asset_check(name="sids_complete", asset=asset, blocking=True,
                    additional_deps=["items"], description=sids_complete.__doc__)
    def _complete(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        return sids_complete(warehouse, context.partition_key, variant)

    @dg.asset_check(name="sids_in_range", asset=asset, blocking=True,
                    description=sids_in_range.__doc__)
    def _in_range(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        return sids_in_range(warehouse, context.partition_key, variant)

    @dg.asset_check(name="icr_above_floor", asset=asset, blocking=True,
                    description=icr_above_floor.__doc__)
    def _icr(context: dg.AssetCheckExecutionContext, config: IcrFloorConfig,
             warehouse: Warehouse) -> dg.AssetCheckResult:
        return icr_above_floor(warehouse, context.partition_key, variant, config.floor)

    return [_complete, _in_range, _icr]


ASSET_CHECKS = [check for variant in VARIANT_INPUTS for check in _variant_checks(variant)]
