"""Resources: every path is configuration (env vars with defaults in the git-ignored runtime area)."""


import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from genrec_ml import warehouse

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_DIR = REPO_ROOT / ".genrec"  # git-ignored


class Warehouse(dg.ConfigurableResource):
    """The DuckDB file that holds every table, each partitioned by a `dataset` column."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.path, read_only=read_only) as con:
            yield con


class DataRoot(dg.ConfigurableResource):
    """Folder whose sub-folders are datasets (one partition each); empty means only `synthetic`."""

    path: str = ""


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": Warehouse(path=os.environ.get("GENREC_WAREHOUSE", str(RUNTIME_DIR / "warehouse.duckdb"))),
        "data_root": DataRoot(path=os.environ.get("GENREC_DATA_ROOT", "")),
    }
