"""Training curves kept in the workdir, and MLflow tracking wherever MLflow exists.

Every `cli train` run writes `<workdir>/curves.jsonl`, whatever is installed, one JSON object a line:

    {"kind": "run", "identity": {...}, "mlflow_run_id": "9f3c...", "time": 1767225600000}
    {"kind": "train", "step": 50, "time": ..., "metrics": {"loss": 3.21, "lr": 0.001}}
    {"kind": "valid", "step": 400, "time": ..., "metrics": {"valid_ndcg_at_10": 0.031, ...}}
    {"kind": "pars", ...}  {"kind": "pars_valid", ...}    REG4Rec's post-training (PARS) steps and validations
    {"kind": "rl", ...}    {"kind": "rl_valid", ...}      LASAR's RL steps and validations

A `run` line per process that trained; metric names are MLflow's ("@" becomes "_at_"), times
milliseconds. A resumed run (same identity, `training/last.pt` left by a kill) appends only the
steps not written yet; readers keep one point per (kind, step) all the same.

Tracking is on where `mlflow` imports and a tracking URI is given (`--tracking-uri`, default
$MLFLOW_TRACKING_URI): `cli train` then logs its run live (params, curves, best.pt, final metrics).
On the GPU machine there is no MLflow; `cli record` later creates the run from the workdir, with
the curves' own steps, values and times. Nothing here imports mlflow before it is needed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from genrec_ml.progress import plain

CURVES_FILE = "curves.jsonl"
CHECKPOINT_FILE = "best.pt"
EXPERIMENT = "training"  # the MLflow experiment of every trained model, CLI and Dagster runs alike
POST_TRAINING = ("pars", "rl")  # the `event` names of genrec_ml.rl.post_training's phases: REG4Rec's PARS, LASAR's RL
EVENT_KINDS = {"eval": ("valid", "valid_"),
               **{f"{phase}_step": (phase, f"{phase}_") for phase in POST_TRAINING},
               **{f"{phase}_eval": (f"{phase}_valid", f"{phase}_valid_") for phase in POST_TRAINING}}

Sink = Callable[[str, int, dict[str, float]], None]  # (kind, step, metrics)


def metric_name(name: str) -> str:
    """MLflow refuses "@" in metric names: ndcg@10 -> ndcg_at_10."""
    return name.replace("@", "_at_")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class CurvePoint:
    kind: str  # train | valid | pars | pars_valid | rl | rl_valid
    step: int
    metrics: dict[str, float]
    time: int | None = None  # ms since the epoch


@dataclass
class Curves:
    points: list[CurvePoint] = field(default_factory=list)  # one per (kind, step), the last one written
    runs: list[dict[str, Any]] = field(default_factory=list)  # the `run` lines, oldest first

    @property
    def mlflow_run_id(self) -> str | None:
        return self.runs[-1].get("mlflow_run_id") if self.runs else None


class CurveLogger:
    """Training-loop callback: curve points to every sink, as (kind, step, metrics).

    Train points carry the mean of each `loss*` value over the step events since the last point
    and the latest lr, one every `every` steps (1: each step event the loop emits, already a mean
    over its `log_every_steps`); then every validation, and the post-training phases' steps and
    validations (REG4Rec's PARS, LASAR's RL).
    Points whose (kind, step) is in `skip` (written before a resume) go nowhere.
    """

    def __init__(self, *sinks: Sink, every: int = 1, skip: Iterable[tuple[str, int]] = ()):
        self.sinks, self.every, self.skip = sinks, every, set(skip)
        self.sums: dict[str, float] = {}
        self.count = 0

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        point = self.point(event, payload)
        if point is None or (point.kind, point.step) in self.skip:
            return
        for sink in self.sinks:
            sink(point.kind, point.step, point.metrics)

    def point(self, event: str, payload: dict[str, Any]) -> CurvePoint | None:
        if event == "step":
            for key, value in payload.items():
                if key.startswith("loss"):
                    self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.count += 1
            if payload["step"] % self.every:
                return None
            metrics = {key: total / self.count for key, total in self.sums.items()} | {"lr": float(payload["lr"])}
            self.sums, self.count = {}, 0
            return CurvePoint("train", int(payload["step"]), metrics)
        if event not in EVENT_KINDS:
            return None
        kind, prefix = EVENT_KINDS[event]
        return CurvePoint(kind, int(payload["step"]), {
            metric_name(prefix + key): float(value) for key, value in payload.items()
            if key not in ("step", "epoch") and isinstance(value, int | float)})


class MlflowLogger(CurveLogger):
    """The curves into the active MLflow run (the Dagster checkpoint assets train inside one)."""

    def __init__(self, every: int = 50):
        super().__init__(log_to_active_run, every=every)


def log_to_active_run(kind: str, step: int, metrics: dict[str, float]) -> None:
    import mlflow

    mlflow.log_metrics(metrics, step=step)


def fan_out(*callbacks: Callable[[str, dict[str, Any]], None]) -> Callable[[str, dict[str, Any]], None]:
    """One training-loop callback calling each of `callbacks` in turn."""
    def callback(event: str, payload: dict[str, Any]) -> None:
        for each in callbacks:
            each(event, payload)
    return callback


def read_curves(path: str | Path) -> Curves:
    """The points of a curves file, one per (kind, step); empty when there is none. A line cut
    short by a kill is skipped."""
    path = Path(path)
    if not path.is_file():
        return Curves()
    points: dict[tuple[str, int], CurvePoint] = {}
    runs = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "run":
            runs.append(record)
        elif "step" in record and "metrics" in record:
            point = CurvePoint(record["kind"], int(record["step"]), record["metrics"], record.get("time"))
            points[(point.kind, point.step)] = point
    return Curves(list(points.values()), runs)


class CurvesFile:
    """`<workdir>/curves.jsonl` of one training run: continued when `resume` (the loop will pick up
    its last.pt) and the file is of the same `identity` (settings, data), else started afresh."""

    def __init__(self, path: str | Path, identity: dict[str, Any], resume: bool):
        self.path, self.identity = Path(path), plain(identity)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        previous = read_curves(self.path) if resume else Curves()
        if previous.runs and previous.runs[0].get("identity") == self.identity:
            self.previous = previous
            text = self.path.read_bytes()
            if text and not text.endswith(b"\n"):  # a line cut short by the kill: end it, so appends start clean
                self._write_line("")
        else:
            self.previous = Curves()
            self.path.write_text("")
        self.keys = {(p.kind, p.step) for p in self.previous.points}

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run the interrupted process logged to, if it did."""
        return self.previous.mlflow_run_id

    def start(self, mlflow_run_id: str | None) -> None:
        """A `run` line: this process trains now, logging to `mlflow_run_id` (None: to no MLflow run)."""
        self._write_line(json.dumps({"kind": "run", "identity": self.identity, "mlflow_run_id": mlflow_run_id,
                                     "time": now_ms()}))

    def append(self, kind: str, step: int, metrics: dict[str, float]) -> None:
        self._write_line(json.dumps({"kind": kind, "step": step, "time": now_ms(), "metrics": metrics}))
        self.keys.add((kind, step))

    def _write_line(self, line: str) -> None:
        with self.path.open("a") as out:
            out.write(line + "\n")


@lru_cache(maxsize=4)
def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def mlflow_available() -> bool:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


def tracking_state(tracking_uri: str | None) -> str | None:
    """Why tracking is off (a line to print), or None when it is on."""
    if not tracking_uri:
        return "no tracking URI (set MLFLOW_TRACKING_URI or pass --tracking-uri)"
    if not mlflow_available():
        return "mlflow is not installed here"
    return None


def artifact_root(tracking_uri: str, artifacts: str | Path | None) -> str | None:
    """Where a new experiment keeps its files: `artifacts`, else `mlflow-artifacts` beside a sqlite
    store (the layout of the Dagster resources), else MLflow's default."""
    if artifacts:
        return Path(artifacts).resolve().as_uri()
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlflow-artifacts").resolve().as_uri()
    return None


class MlflowRun:
    """One MLflow run, written through a client (no global active run, so any process may log).

    `tolerant` runs (live logging during training) never fail the training: the first error is
    reported, the run marked FAILED where possible, `on_failure` called, and logging stops;
    `cli record` can then create the run from the workdir.
    """

    def __init__(self, client, run_id: str, resumed: bool = False, tolerant: bool = False,
                 on_failure: Callable[[], None] | None = None):
        self.client, self.run_id, self.resumed = client, run_id, resumed
        self.tolerant, self.on_failure, self.failed = tolerant, on_failure, False

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow's limit of params per batch
            self._do(self.client.log_batch, self.run_id, params=items[start:start + 100])

    def log_point(self, kind: str, step: int, metrics: dict[str, float]) -> None:
        self.log_points([CurvePoint(kind, step, metrics, now_ms())])

    def log_points(self, points: Iterable[CurvePoint]) -> None:
        from mlflow.entities import Metric

        items = [Metric(key, float(value), point.time or now_ms(), point.step)
                 for point in points for key, value in point.metrics.items()]
        for start in range(0, len(items), 1000):  # MLflow's limit of metrics per batch
            self._do(self.client.log_batch, self.run_id, metrics=items[start:start + 1000])

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self.log_points([CurvePoint("final", 0, metrics, now_ms())])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._do(self.client.log_batch, self.run_id, tags=[RunTag(key, value) for key, value in tags.items()])

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).is_file():
            self._do(self.client.log_artifact, self.run_id, str(path))

    def finish(self, status: str = "FINISHED", end_time: int | None = None) -> str | None:
        """End the run; its id, or None when logging failed on the way (the run is not whole)."""
        self._do(self.client.set_terminated, self.run_id, status, end_time)
        return None if self.failed else self.run_id

    def _do(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.failed:
            return
        try:
            action(*args, **kwargs)
        except Exception as err:  # a tracker must not end hours of training
            if not self.tolerant:
                raise
            self.failed = True
            print(f"warning: MLflow logging of run {self.run_id} stopped: {err}. The curves are in {CURVES_FILE}; "
                  "`python -m genrec_ml.cli record` logs the whole run afterwards", file=sys.stderr)
            try:
                self.client.set_terminated(self.run_id, "FAILED")
            except Exception:
                pass  # the store itself may be what failed
            if self.on_failure is not None:
                self.on_failure()


@contextmanager
def ended_on_error(run: MlflowRun | None) -> Iterator[None]:
    """Mark `run` KILLED (Ctrl-C) or FAILED when the block raises; a SIGKILL leaves it RUNNING until
    the resumed process takes it up again."""
    try:
        yield
    except BaseException as err:
        if run is not None:
            run.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise


def start_run(tracking_uri: str | None, artifacts: str | Path | None, run_name: str, tags: dict[str, str],
              resume_id: str | None = None, start_time: int | None = None, tolerant: bool = False,
              on_failure: Callable[[], None] | None = None) -> MlflowRun | None:
    """An MLflow run in experiment `training`: run `resume_id` again when the store has it, else a new
    one; None when tracking is off (see `tracking_state`)."""
    if tracking_state(tracking_uri) is not None:
        return None
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    if resume_id:
        try:
            client.get_run(resume_id)
            client.update_run(resume_id, status="RUNNING")
            return MlflowRun(client, resume_id, resumed=True, tolerant=tolerant, on_failure=on_failure)
        except MlflowException:
            pass  # not in this store: a new run, to which the caller logs the curves so far
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = found.experiment_id if found else client.create_experiment(
        EXPERIMENT, artifact_location=artifact_root(tracking_uri, artifacts))
    run = client.create_run(experiment_id, start_time=start_time, tags=tags, run_name=run_name)
    return MlflowRun(client, run.info.run_id, tolerant=tolerant, on_failure=on_failure)


def resume_run(tracking_uri: str | None, run_id: str | None, tolerant: bool = False) -> MlflowRun | None:
    """The existing run `run_id` to log more into, or None (tracking off, no id, not in this store)."""
    if not run_id or tracking_state(tracking_uri) is not None:
        return None
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        return None
    return MlflowRun(client, run_id, resumed=True, tolerant=tolerant)


def run_params(experiment: dict[str, Any], train_config: dict[str, Any]) -> dict[str, str]:
    """The run's settings as MLflow params, named like the Dagster assets' (`experiment.*`, `train.*`)."""
    params = {f"experiment.{key}": value for key, value in plain(experiment).items()}
    params |= {f"train.{key}": value for key, value in plain(train_config).items()}
    # scalars as the assets' str(value) writes them, lists and dicts as JSON; MLflow keeps 6000 characters
    return {key: (json.dumps(value) if isinstance(value, list | dict) else str(value))[:6000]
            for key, value in params.items()}


def run_tags(experiment: dict[str, Any], dataset: str, logged_by: str) -> dict[str, str]:
    """The tags the Dagster assets set on their runs, and who logged this one."""
    return {"dataset": dataset, "model": experiment["model"], "variant": experiment["variant"],
            "profile": experiment["profile"], "tokenizer": str(experiment.get("tokenizer")),
            "scheme": experiment["scheme"], "seed": str(experiment["seed"]), "logged_by": logged_by}


def run_name(experiment: dict[str, Any], dataset: str) -> str:
    variant = "" if experiment["variant"] == "default" else f"_{experiment['variant']}"
    return f"{experiment['model']}{variant}-{dataset}-seed{experiment['seed']}"


def final_metrics(metrics: pd.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    """Rows (split, metric, k, value) as `final_<split>_<metric>[_at_<k>]` (the Dagster metrics
    asset's names), and the run's steps, seconds and size."""
    final = {f"final_{r.split}_{r.metric}" + (f"_at_{r.k}" if r.k >= 0 else ""): float(r.value)
             for r in metrics.itertuples()}
    return final | {key: float(info[key]) for key in ("train_seconds", "steps", "parameters")
                    if info.get(key) is not None}


def log_outcome(run: MlflowRun, workdir: str | Path, info: dict[str, Any], metrics: pd.DataFrame,
                checkpoint: bool = True, end_time: int | None = None) -> str | None:
    """A trained and evaluated workdir's end of the run: best.pt and the curves file (unless
    `checkpoint` is False), the final metrics, the evaluation id; returns the run id (None: failed)."""
    workdir = Path(workdir)
    if checkpoint:
        run.log_artifact(workdir / CHECKPOINT_FILE)
        run.log_artifact(workdir / CURVES_FILE)
    run.log_metrics(final_metrics(metrics, info))
    if info.get("evaluation_id"):
        run.set_tags({"evaluation_id": info["evaluation_id"]})
    return run.finish(end_time=end_time)


def log_workdir(tracking_uri: str | None, artifacts: str | Path | None, workdir: str | Path, info: dict[str, Any],
                metrics: pd.DataFrame) -> str | None:
    """Create the MLflow run of a workdir trained without tracking (the GPU machine): params, the
    curves as they were logged, best.pt, final metrics. Its id; None when tracking is off here."""
    curves = read_curves(Path(workdir) / CURVES_FILE)
    times = [p.time for p in curves.points if p.time] + [r["time"] for r in curves.runs if r.get("time")]
    run = start_run(tracking_uri, artifacts, run_name(info["experiment"], info["dataset"]),
                    run_tags(info["experiment"], info["dataset"], "cli record"), start_time=min(times, default=None))
    if run is None:
        return None
    run.log_params(run_params(info["experiment"], info.get("train_config", {})))
    run.log_points(curves.points)
    return log_outcome(run, workdir, info, metrics, end_time=max(times, default=None))
