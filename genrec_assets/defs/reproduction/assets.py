"""The reproduction table: every current evaluation of a dataset beside the papers' figures.

`reproduction` reloads `published_results` from published/published_results.csv, recomputes the
paired-bootstrap `significance` rows of the dataset (methods against their baselines, from
`evaluation_ranks`), and shows the comparison as a table and a bar plot. The `reproduction` and
`seed_summary` views themselves are SQL (sql/reproduction_view.sql) and stay current as `metrics`
grows; this asset refreshes what SQL cannot compute.
"""

import dagster as dg

from genrec_assets.defs.models.assets import png_markdown
from genrec_assets.defs.models.registry import MODEL_SPECS
from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import Warehouse
from genrec_ml.reproduction import plot_reproduction, refresh_reproduction

SHOWN = ["model", "variant", "tokenizer", "profile", "metric", "k", "ours", "ours_std", "n_seeds", "published",
         "relative_gap", "source"]


class ReproductionConfig(dg.Config):
    n_boot: int = 2000  # bootstrap resamples of the significance tests
    seed: int = 0  # of the resampling


@dg.asset(partitions_def=dataset_partitions, group_name="reproduction",
          deps=["popularity_metrics", *[f"{spec.prefix}_metrics" for spec in MODEL_SPECS]],
          description="Our current figures beside the published ones (view `reproduction`), the published "
                      "results table, and paired-bootstrap significance of each method against its baseline.")
def reproduction(context: dg.AssetExecutionContext, config: ReproductionConfig,
                 warehouse: Warehouse) -> dg.MaterializeResult:
    dataset = context.partition_key
    with warehouse.connect() as con:
        table, significance = refresh_reproduction(con, dataset, config.n_boot, config.seed)
    metadata = {"compared_rows": len(table), "significance_rows": len(significance)}
    if not table.empty:
        metadata["reproduction"] = dg.MetadataValue.md(table[SHOWN].round(4).to_markdown(index=False))
        metadata["ours_vs_published"] = png_markdown(plot_reproduction(table, dataset), "ours vs published")
    if not significance.empty:
        shown = significance[["model", "variant", "baseline_model", "profile", "metric", "k", "mean", "baseline_mean",
                              "diff", "ci_low", "ci_high", "p_value", "n_users"]]
        metadata["significance"] = dg.MetadataValue.md(shown.round(4).to_markdown(index=False))
    return dg.MaterializeResult(metadata=metadata)
