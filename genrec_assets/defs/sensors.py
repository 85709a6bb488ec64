"""The data-root sensor: folders copied under GENREC_DATA_ROOT become dataset partitions and run.

Every tick it scans the root (`genrec_ml.data.folders`). A recognised folder that is not a
partition yet is registered and the default job is requested for it; a registered one whose files'
content hash changed is requested again; a folder no reader recognises is logged with the reader's
error, once per state of its files. Run keys carry the content hash, so a dataset runs once per
content. Partitions registered before the sensor first saw them (by `python -m
genrec_assets.datasets`, or in the UI) are only remembered, not re-run. The cursor holds, per
folder, its cheap stat fingerprint and its content hash. Off by default like the nightly schedule:
turn it on in the UI (Automation) or start with GENREC_DATASET_SENSOR=on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import dagster as dg

from genrec_assets.defs.jobs import default_pipeline_job
from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import DataRoot
from genrec_ml.data.folders import DatasetFolder, content_hash, scan_data_root, stat_fingerprint
from genrec_ml.data.sources import SYNTHETIC


@dataclass
class Plan:
    register: list[str] = field(default_factory=list)  # new partition keys
    run: list[tuple[str, str]] = field(default_factory=list)  # (dataset, content hash) to materialize
    unreadable: list[DatasetFolder] = field(default_factory=list)  # newly seen folders no reader takes
    cursor: dict[str, dict[str, str]] = field(default_factory=dict)


def plan_tick(folders: list[DatasetFolder], known: set[str], cursor: dict[str, dict[str, str]]) -> Plan:
    """What one tick does, from the folders now, the registered partitions and the last cursor."""
    plan = Plan(register=[SYNTHETIC] if SYNTHETIC not in known else [])
    for folder in folders:
        if folder.name == SYNTHETIC:
            continue
        seen = cursor.get(folder.name, {})
        stat = stat_fingerprint(folder.path)
        if not folder.readable:
            if seen.get("stat") != stat:
                plan.unreadable.append(folder)
            plan.cursor[folder.name] = {"stat": stat}
            continue
        digest = seen.get("hash") if seen.get("stat") == stat else content_hash(folder.path)
        plan.cursor[folder.name] = {"stat": stat, "hash": digest}
        if folder.name not in known:
            plan.register.append(folder.name)
            plan.run.append((folder.name, digest))
        elif "hash" in seen and seen["hash"] != digest:
            plan.run.append((folder.name, digest))
    return plan


@dg.sensor(
    job=default_pipeline_job, minimum_interval_seconds=30,
    default_status=(dg.DefaultSensorStatus.RUNNING if os.environ.get("GENREC_DATASET_SENSOR") == "on"
                    else dg.DefaultSensorStatus.STOPPED),
    description="Registers each recognised folder under GENREC_DATA_ROOT as a dataset partition and runs "
                "`default_pipeline` for it; re-runs a dataset whose files' content changed; logs folders no "
                "reader recognises. Off until turned on in the UI or started with GENREC_DATASET_SENSOR=on.",
)
def dataset_folders(context: dg.SensorEvaluationContext, data_root: DataRoot) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(dataset_partitions.name))
    plan = plan_tick(scan_data_root(data_root.path), known, json.loads(context.cursor or "{}"))
    for folder in plan.unreadable:
        context.log.warning(f"skipped {folder.path}: {folder.error}")
    for name in plan.register:
        context.log.info(f"new dataset partition {name!r}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"{name}-{digest[:16]}", partition_key=name) for name, digest in plan.run],
        dynamic_partitions_requests=[dataset_partitions.build_add_request(plan.register)] if plan.register else [],
        cursor=json.dumps(plan.cursor, sort_keys=True),
    )
