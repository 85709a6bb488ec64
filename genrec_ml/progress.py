"""How far a training run is, for a person watching many of them: `<workdir>/progress.json`.

`cli train` passes a `ProgressFile` to the training loop; `cli reproduce` reads the files of all its
runs and prints a table every ~30 s. The file is small and replaced atomically, never appended to,
so a reader always sees one whole state:

    {"state": "training", "step": 1200, "total_steps": 200000, "epoch": 3, "seconds": 181.0,
     "steps_per_second": 6.6, "last_eval": {...}, "best": {...}, "monitor": "ndcg@10", ...}

States: `training` / `evaluating` come from the training process; `done` and `failed` from whoever
watched it exit (`cli reproduce`), since a killed process cannot say so. (reproduce's table shows a
run as `starting` until its process first writes.)
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from genrec_ml.experiments import Experiment, split_examples
from genrec_ml.train.config import planned_steps, steps_per_epoch

PROGRESS_FILE = "progress.json"


def training_progress(workdir: str | Path, experiment: Experiment, splits: pd.DataFrame) -> ProgressFile:
    """The callback `cli train` passes to train_experiment, sized from the run's config and data."""
    config = experiment.train_config()
    n_train = len(split_examples(splits, experiment.scheme)["train"])
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's; the steps are each rank's
    return ProgressFile(Path(workdir) / PROGRESS_FILE, planned_steps(config, n_train, world_size),
                        steps_per_epoch(config, n_train, world_size), config.monitor, plain(asdict(experiment)))


def plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so stored and planned runs compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class ProgressFile:
    """Training-loop callback that keeps `path` (progress.json) current.

    Written on every validation and checkpoint, and on step events at most every `min_seconds`:
    step rates differ a hundredfold between models and devices, so a time bound (not a step count)
    is what keeps the writes cheap everywhere. `steps_per_second` is measured from this process's
    first step event, so a resumed run's rate is not diluted by the time before it.
    """

    def __init__(self, path: str | Path, total_steps: int | None, steps_per_epoch: int | None = None,
                 monitor: str = "ndcg@10", experiment: dict[str, Any] | None = None, min_seconds: float = 10.0):
        self.path, self.min_seconds, self.steps_per_epoch = Path(path), min_seconds, steps_per_epoch
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.started, self._origin, self._written = time.monotonic(), None, -math.inf
        self.state: dict[str, Any] = {
            "state": "training", "step": 0, "total_steps": total_steps, "epoch": 0, "seconds": 0.0,
            "steps_per_second": None, "last_eval": None, "best": None, "monitor": monitor, "experiment": experiment,
        }
        previous = read_progress(self.path)
        if previous and previous.get("state") != "done" and previous.get("experiment") == experiment:
            # a resumed run: its validations before the kill are not emitted again
            self.state.update(best=previous.get("best"), last_eval=previous.get("last_eval"))
        self.write()

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        now = time.monotonic()
        if "step" in payload:
            self._count_step(int(payload["step"]), now)
        if event == "eval":
            record = {k: v for k, v in payload.items() if isinstance(v, int | float)}
            best = self.state["best"]
            if best is None or record.get(self.state["monitor"], -math.inf) > best.get(self.state["monitor"],
                                                                                       -math.inf):
                self.state["best"] = record
            self.state.update(last_eval=record, epoch=record.get("epoch", self.state["epoch"]))
            self.write()
        elif event == "checkpoint" or now - self._written >= self.min_seconds:
            self.write()

    def evaluating(self) -> None:
        """Training is over; the final ranking of valid and test runs next."""
        self.state["state"] = "evaluating"
        self.write()

    def write(self) -> None:
        self.state.update(seconds=round(time.monotonic() - self.started, 1), updated_at=time.time())
        write_progress(self.path, self.state)
        self._written = time.monotonic()

    def _count_step(self, step: int, now: float) -> None:
        if self._origin is None:
            self._origin = (step, now)
        first_step, first_time = self._origin
        if step > first_step and now > first_time:
            self.state["steps_per_second"] = (step - first_step) / (now - first_time)
        self.state["step"] = step
        if self.steps_per_epoch:
            self.state["epoch"] = step // self.steps_per_epoch


def read_progress(path: str | Path) -> dict[str, Any] | None:
    """The last state written, or None when there is none (or it is unreadable: a reader only reports)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_progress(path: str | Path, state: dict[str, Any]) -> None:
    path = Path(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(state, indent=1, default=str))
    os.replace(partial, path)


def mark_progress(path: str | Path, state: str, **fields: Any) -> None:
    """Set the state of a run that has exited (done, failed), keeping what it wrote."""
    write_progress(path, {**(read_progress(path) or {}), "state": state, **fields, "updated_at": time.time()})


def remaining_seconds(progress: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds to `total_steps` at the measured step rate; None until a rate and a total are known."""
    rate, total = progress.get("steps_per_second"), progress.get("total_steps")
    if not rate or total is None:
        return None
    now = time.time() if now is None else now
    age = now - progress.get("updated_at", now)
    return max(0.0, (total - progress.get("step", 0)) / rate - age)


def overall_seconds(running: list[float | None], queued: list[float | None], slots: int) -> float | None:
    """When the last run ends: queued runs take the first free of `slots`; None if any duration is unknown."""
    if any(t is None for t in running + queued):
        return None
    free = sorted(running) + [0.0] * max(0, slots - len(running))
    for duration in queued:
        free.sort()
        free[0] += duration
    return max(free, default=0.0)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned plain-text columns (the GPU machine has no tabulate)."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
