"""`python -m genrec_assets.datasets`: register `synthetic` and every recognised folder under
GENREC_DATA_ROOT as dataset partitions of the Dagster instance (DAGSTER_HOME), and say which
folders no reader recognises and why. The `dataset_folders` sensor does the same while `dg dev`
runs; this is for runs launched from the command line."""

from __future__ import annotations

import os
import sys

import dagster as dg

from genrec_assets.defs.partitions import dataset_partitions
from genrec_ml.data.folders import scan_data_root
from genrec_ml.data.sources import SYNTHETIC


def register(instance: dg.DagsterInstance, data_root: str | None) -> tuple[list[str], list[str]]:
    """Add the missing partitions; `(added, problems)` where problems name a folder and the reader's error."""
    folders = scan_data_root(data_root)
    wanted = [SYNTHETIC] + [folder.name for folder in folders if folder.readable and folder.name != SYNTHETIC]
    known = set(instance.get_dynamic_partitions(dataset_partitions.name))
    added = [name for name in wanted if name not in known]
    if added:
        instance.add_dynamic_partitions(dataset_partitions.name, added)
    return added, [f"{folder.path}: {folder.error}" for folder in folders if not folder.readable]


def main() -> int:
    with dg.DagsterInstance.get() as instance:
        added, problems = register(instance, os.environ.get("GENREC_DATA_ROOT"))
        names = instance.get_dynamic_partitions(dataset_partitions.name)
    print(f"dataset partitions: {', '.join(names)}" + (f" (added {', '.join(added)})" if added else ""))
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
