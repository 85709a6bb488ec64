"""Resources: every path is configuration (env vars with defaults in the git-ignored runtime area)."""


import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


class Artifacts(dg.ConfigurableResource):
    """Folder for files that are not tables: codebooks, checkpoints, plots."""

    path: str

    def folder(self, *parts: str) -> Path:
        folder = Path(self.path).joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


class Tracking(dg.ConfigurableResource):
    """MLflow tracking: a sqlite store (file stores are refused by MLflow 3) and a local artifact root."""

    tracking_uri: str
    artifact_root: str

    @contextmanager
    def run(self, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[Any]:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        found = mlflow.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else mlflow.create_experiment(
            experiment, artifact_location=Path(self.artifact_root).resolve().as_uri())
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as active:
            yield active

    @contextmanager
    def resume(self, run_id: str) -> Iterator[Any]:
        """Log more into an existing run (e.g. test metrics into the run that trained the model)."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=run_id) as active:
            yield active


def default_resources() -> dict[str, dg.ConfigurableResource]:
    runtime = Path(os.environ.get("GENREC_RUNTIME_DIR", str(RUNTIME_DIR)))
    runtime.mkdir(parents=True, exist_ok=True)
    return {
        "warehouse": Warehouse(path=os.environ.get("GENREC_WAREHOUSE", str(runtime / "warehouse.duckdb"))),
        "data_root": DataRoot(path=os.environ.get("GENREC_DATA_ROOT", "")),
        "artifacts": Artifacts(path=os.environ.get("GENREC_ARTIFACTS", str(runtime / "artifacts"))),
        "tracking": Tracking(
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{runtime.resolve() / 'mlflow.db'}"),
            artifact_root=os.environ.get("GENREC_MLFLOW_ARTIFACTS", str(runtime / "mlflow-artifacts"))),
    }
