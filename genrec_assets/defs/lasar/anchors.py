"""LASAR's CoT anchor states: the Stage-1 backbone's hidden state of every teacher CoT segment (LASAR §2.3)."""

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from genrec_assets.defs.models.assets import read_seed_folders, set_threads
from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import Artifacts, Warehouse
from genrec_ml.text.anchors import stage1_anchor_rows
from genrec_ml.train.distributed import Processes, resolve_device
from genrec_ml.warehouse import read_partition, replace_partition

GROUP = "lasar"
STAGE1 = "minionerec"  # the model whose weights LASAR's Stage 2 starts from


class AnchorRunConfig(dg.Config):
    batch_size: int = 128  # segments per forward pass
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 = one per core


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=["cot_texts", f"{STAGE1}_checkpoint"])
def cot_anchor_states(context: dg.AssetExecutionContext, config: AnchorRunConfig, warehouse: Warehouse,
                      artifacts: Artifacts) -> dg.MaterializeResult:
    """Last-token, last-layer hidden state of each CoT segment under each trained Stage-1 run (seed folder),
    float16 bytes, one row per run, example and segment: LASAR's alignment targets (eq. 4)."""
    set_threads(config.threads)
    dataset = context.partition_key
    with warehouse.connect(read_only=True) as con:
        cot = read_partition(con, "cot_texts", dataset)
    if cot.empty:
        raise ValueError(f"{dataset} has no cot_texts rows; materialize cot_texts first")
    folder = artifacts.folder(dataset, "models", STAGE1)
    device = str(resolve_device(config.device, Processes()))
    runs = []
    for name in read_seed_folders(folder):
        rows = stage1_anchor_rows(folder / name / "best.pt", cot, config.batch_size, device, progress=True)
        runs.append(rows.assign(stage1=name, width=len(rows["state"].iloc[0]) // 2))
    table = pd.concat(runs, ignore_index=True).assign(scheme=cot["scheme"].iloc[0])
    with warehouse.connect() as con:
        replace_partition(con, "cot_anchor_states", dataset, pa.Table.from_pandas(table, preserve_index=False))
    first = np.frombuffer(table["state"].iloc[0], dtype=np.float16)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(table), "stage1_runs": [str(n) for n in read_seed_folders(folder)],
        "width": int(table["width"].iloc[0]), "examples": len(cot),
        "distinct_segments": int(len({t for s in cot["segments"] for t in s})),
        "first_state_norm": float(np.linalg.norm(first.astype(np.float32))),
    })


ASSETS = [cot_anchor_states]
