"""A model's metrics count only when it beats popularity on validation NDCG@10 (blocking)."""

import dagster as dg

from genrec_assets.defs.resources import Warehouse
from genrec_ml.warehouse import query


def beats_popularity(warehouse: Warehouse, dataset: str, model: str, variant: str) -> dg.AssetCheckResult:
    """The newest evaluation's validation NDCG@10 is above the popularity recommender's.

    The `leaderboard` view applies the same rule: an evaluation that fails it never becomes current.
    """
    with warehouse.connect(read_only=True) as con:
        found = query(con, "check_metrics_beat_popularity", dataset=dataset, model=model, variant=variant)
    if found.empty or found["model_ndcg_10"].isna().iloc[0] or found["popularity_ndcg_10"].isna().iloc[0]:
        return dg.AssetCheckResult(passed=False, metadata={
            "reason": "no evaluation of this model or of popularity for this dataset; materialize both"})
    row = found.iloc[0]
    return dg.AssetCheckResult(passed=bool(row["model_ndcg_10"] > row["popularity_ndcg_10"]), metadata={
        "valid_ndcg_10": float(row["model_ndcg_10"]), "popularity_valid_ndcg_10": float(row["popularity_ndcg_10"]),
        "evaluation_id": row["evaluation_id"]})


def metrics_checks(prefix: str, model: str, variant: str) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(name="beats_popularity", asset=f"{prefix}_metrics", blocking=True,
                    description=beats_popularity.__doc__)
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        return beats_popularity(warehouse, context.partition_key, model, variant)

    return [_check]
