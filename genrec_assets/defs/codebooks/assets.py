"""One asset per Semantic-ID codebook variant; SIDs and utilization land in the warehouse."""

import base64
import io
import json
import time

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import Artifacts, Tracking, Warehouse
from genrec_ml.graph.spectral import collaborative_embeddings
from genrec_ml.semantic_ids import SemanticIds, build_semantic_ids, save_semantic_ids
from genrec_ml.warehouse import read_partition, read_vectors, replace_partitions

GROUP = "codebooks"
# Which embeddings each variant quantizes: CoBa RQ-VAE reads the graph-propagated ones (S²GR §4.2).
VARIANT_INPUTS = {
    "rq_kmeans": "item_text_embeddings",
    "rq_vae": "item_text_embeddings",
    "coba_rqvae": "propagated_embeddings",
    "letter": "item_text_embeddings",
    "mpq": "item_text_embeddings",
    "rq_vae_8x300": "item_text_embeddings",  # REG4Rec's w/o MPQ (genrec_ml.semantic_ids.CODEBOOK_VARIANTS)
    "rq_kmeans_4x256": "item_text_embeddings",  # LASAR's and MiniOneRec's 4 x 256 RQ-KMeans codes
}


# Codebooks only REG4Rec or LASAR read sit in their groups, so the default job does not fit them (MPQ's
# 8 x 300 experts take minutes); the `reasoning`, `reg4rec_ablations` and `lasar` jobs do.
VARIANT_GROUPS = {"mpq": "reasoning", "rq_vae_8x300": "reg4rec_ablations", "rq_kmeans_4x256": "lasar"}


class CodebookRunConfig(dg.Config):
    seed: int = 0
    coarse_clusters: int = 16  # C: S²GR's clusters of each level's code vectors
    collab_dim: int = 64  # LETTER only: size of the graph-spectral collaborative embedding
    settings: dict = {}  # overrides of the tokenizer's dataclass config, e.g. {"n_levels": 4}


def utilization_table(result: SemanticIds) -> pd.DataFrame:
    stats = result.utilization
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame([{
        "level": level, "codebook_size": int(size),
        "used_codes": int(stats["levels"][level]["used_codes"]),
        "usage_entropy": float(stats["levels"][level]["usage_entropy"]),
        "largest_code_share": float(stats["levels"][level]["largest_code_share"]),
        "cur": float(stats["cur"]), "icr": float(stats["icr"]), "collision_rate": float(stats["collision_rate"]),
        "created_at": now,
    } for level, size in enumerate(result.tokenizer.codebook_sizes)])


def sid_table(result: SemanticIds, items: pd.DataFrame) -> pa.Table:
    """Long format: one row per (item, level), the disambiguation level last."""
    n, levels = result.sids.shape
    return pa.table({
        "item_index": np.repeat(items["item_index"].to_numpy(), levels),
        "item_id": np.repeat(items["item_id"].to_numpy(), levels),
        "level": np.tile(np.arange(levels), n),
        "code": result.sids.reshape(-1),
    })


def usage_plot(result: SemanticIds, title: str) -> bytes:
    """Per-level code usage, codes sorted by frequency: flat = balanced, steep = collapsed."""
    from matplotlib.figure import Figure

    sizes = result.tokenizer.codebook_sizes
    fig = Figure(figsize=(3.2 * len(sizes), 2.6))
    for level, size in enumerate(sizes):
        ax = fig.add_subplot(1, len(sizes), level + 1)
        counts = np.sort(np.bincount(result.codes[:, level], minlength=size))[::-1]
        ax.bar(np.arange(size), counts, width=1.0)
        ax.axhline(len(result.codes) / size, color="k", lw=0.8, ls="--")
        ax.set_title(f"level {level}: {int((counts > 0).sum())}/{size} used", fontsize=9)
        ax.set_xlabel("code (by frequency)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def codebook_asset(variant: str) -> dg.AssetsDefinition:
    source = VARIANT_INPUTS[variant]
    deps = [source, "items"] + (["cooccurrence_edges"] if variant == "letter" else [])

    @dg.asset(name=f"{variant}_codebook", partitions_def=dataset_partitions,
              group_name=VARIANT_GROUPS.get(variant, GROUP), deps=deps,
              description=f"{variant} Semantic IDs of every item (from {source}); rows in item_semantic_ids, "
                          f"stats in codebook_utilization, codebook files in the artifacts folder.")
    def _asset(context: dg.AssetExecutionContext, config: CodebookRunConfig, warehouse: Warehouse,
               artifacts: Artifacts, tracking: Tracking) -> dg.MaterializeResult:
        dataset = context.partition_key
        with warehouse.connect() as con:
            items = read_partition(con, "items", dataset).sort_values("item_index")
            _, x = read_vectors(con, source, dataset)
            edges = read_partition(con, "cooccurrence_edges", dataset) if variant == "letter" else None
        collab = collaborative_embeddings(edges, x, dim=config.collab_dim) if edges is not None else None
        started = time.perf_counter()
        result = build_semantic_ids(variant, x, collab=collab, overrides=config.settings, seed=config.seed,
                                    n_coarse=config.coarse_clusters, progress=True)
        fit_seconds = time.perf_counter() - started
        folder = artifacts.folder(dataset, variant)
        paths = save_semantic_ids(result, folder)
        plot = usage_plot(result, f"{variant} on {dataset}")
        (folder / "code_usage.png").write_bytes(plot)
        util = utilization_table(result).assign(fit_seconds=fit_seconds)
        with warehouse.connect() as con:
            replace_partitions(con, dataset, {"item_semantic_ids": sid_table(result, items),
                                              "codebook_utilization": util}, keys={"tokenizer": variant})
        run_id = _log_fit(tracking, dataset, variant, result, util, folder)
        return dg.MaterializeResult(metadata={
            "items": len(items), "levels": len(result.tokenizer.codebook_sizes),
            "codebook_sizes": str(result.tokenizer.codebook_sizes), "ordered": result.tokenizer.ordered,
            "cur": float(result.utilization["cur"]), "icr": float(result.utilization["icr"]),
            "collision_rate": float(result.utilization["collision_rate"]), "fit_seconds": round(fit_seconds, 1),
            "config": dg.MetadataValue.json(json.loads(json.dumps(result.tokenizer.config.__dict__, default=str))),
            "codebook": dg.MetadataValue.path(str(paths["tokenizer"])),
            "code_usage": dg.MetadataValue.md(
                f"![code usage](data:image/png;base64,{base64.b64encode(plot).decode()})"),
            "utilization": dg.MetadataValue.md(util.drop(columns=["created_at"]).to_markdown(index=False)),
            "mlflow_run_id": run_id,
        })

    return _asset


def _log_fit(tracking: Tracking, dataset: str, variant: str, result: SemanticIds, util: pd.DataFrame,
             folder) -> str:
    with tracking.run("codebooks", f"{variant}-{dataset}", {"dataset": dataset, "tokenizer": variant}) as run:
        import mlflow

        mlflow.log_params({k: str(v) for k, v in result.tokenizer.config.__dict__.items()})
        for step, entry in enumerate(result.fit.history):
            mlflow.log_metrics({k: float(v) for k, v in entry.items() if isinstance(v, (int, float))}, step=step)
        mlflow.log_metrics({"cur": float(result.utilization["cur"]), "icr": float(result.utilization["icr"]),
                            "collision_rate": float(result.utilization["collision_rate"]),
                            "fit_seconds": float(util["fit_seconds"].iloc[0])})
        mlflow.log_artifacts(str(folder))
        return run.info.run_id


CODEBOOK_ASSETS = [codebook_asset(variant) for variant in VARIANT_INPUTS]
