"""Our figures beside the papers': load the published results, test methods against their baselines,
and plot the comparison. The warehouse views do the joining (`sql/reproduction_view.sql`,
`sql/seed_summary_view.sql`); this module fills what SQL cannot: the published CSV and the bootstrap.

    with warehouse.connect() as con:
        table, significance = refresh_reproduction(con, "amazon-beauty")
"""

from __future__ import annotations

import pandas as pd

from genrec_ml import warehouse
from genrec_ml.eval.significance import DEFAULT_METRICS, significance_rows
from genrec_ml.published import PUBLISHED_RESULTS, read_published_results

PLOTTED = (("recall", 10), ("ndcg", 10))


def refresh_reproduction(con, dataset: str, n_boot: int = 2000, seed: int = 0,
                         published: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reload `published_results` from the CSV, recompute `dataset`'s significance rows; return both tables.

    Returns `(reproduction rows of dataset, significance rows of dataset)`. The significance table's
    dataset partition is replaced atomically; the other datasets' rows stay.
    """
    frame = read_published_results(published or PUBLISHED_RESULTS)
    warehouse.replace_published_results(con, frame)
    ranks = warehouse.query(con, "current_test_ranks", dataset=dataset)
    significance = significance_rows(ranks, DEFAULT_METRICS, n_boot=n_boot, seed=seed)
    if significance.empty:
        con.execute(warehouse.sql("significance_clear"), {"dataset": dataset})
    else:
        warehouse.replace_partition(con, "significance", dataset, significance)
    return warehouse.query(con, "reproduction_of_dataset", dataset=dataset), significance


def plot_reproduction(table: pd.DataFrame, title: str):
    """Ours (mean ± std over seeds) against published, one bar pair per (model, variant, paper), per metric."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6), layout="constrained")
    axes = figure.subplots(1, len(PLOTTED), squeeze=False)[0]
    for ax, (metric, k) in zip(axes, PLOTTED, strict=True):
        rows = table[(table["metric"] == metric) & (table["k"] == k)]
        labels = [f"{r.model}/{r.variant}\n{r.profile} · {r.source}" for r in rows.itertuples()]
        positions = range(len(rows))
        ax.bar([p - 0.2 for p in positions], rows["ours"], 0.4, yerr=rows["ours_std"].fillna(0), label="genrec")
        ax.bar([p + 0.2 for p in positions], rows["published"], 0.4, label="published")
        ax.set_xticks(list(positions), labels, rotation=60, ha="right", fontsize=7)
        ax.set(title=f"{title}: {metric}@{k}")
        ax.legend(fontsize=7)
    return figure
