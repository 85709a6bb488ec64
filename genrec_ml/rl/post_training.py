"""The loop every RL post-training shares (REG4Rec's PARS, LASAR's RL phase): validate the starting weights,
take steps, validate every `eval_every` steps, keep the best validated weights (the starting ones when no
step beats them), and resume from `workdir/last.pt` step for step.

A method brings only its step: `step_fn(step) -> dict of that step's means` (it draws its examples as a
pure function of (seed, step), so a resumed run repeats the same draws). The driver saves the weights,
optimizer, RNG streams, history and best weights at every validation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from genrec_ml.eval import evaluate
from genrec_ml.train.checkpoint import model_payload, read_checkpoint, restore_rng_states, rng_states, save_atomic
from genrec_ml.train.config import TrainConfig
from genrec_ml.train.loop import Callback, rank_split
from genrec_ml.train.tasks import SidTask

LAST = "last.pt"


@dataclass
class PostTrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # per step: rewards, loss, kl, clipping, ...
    evaluations: list[dict[str, float]] = field(default_factory=list)  # validations, step 0 = the start
    best_metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0


def run_post_training(model, step_fn: Callable[[int], dict[str, float]], n_steps: int, eval_every: int, optimizer,
                      valid: pd.DataFrame, task: SidTask, config: TrainConfig, workdir: Path, *, event: str,
                      callback: Callback | None = None, seconds_left: float | None = None,
                      on_resume: Callable[[PostTrainResult], None] | None = None) -> PostTrainResult:
    """`n_steps` of `step_fn` on `model` in place; returns with the best validated weights loaded. Callback
    events are `<event>_step` and `<event>_eval`; `seconds_left` stops early (validating) once it passes;
    `on_resume(result)` restores what a method keeps besides the weights (LASAR's EMA baseline)."""
    workdir.mkdir(parents=True, exist_ok=True)
    result, best_state = PostTrainResult(), None
    if (workdir / LAST).is_file():
        best_state = _resume(workdir / LAST, model, optimizer, result)
        if on_resume is not None:
            on_resume(result)
    started = time.perf_counter() - result.seconds
    if not result.evaluations:
        best_state = _validate(model, valid, task, config, result, 0, best_state, callback, event)
    for step in range(result.steps, n_steps):
        metrics = step_fn(step)
        result.history.append(metrics)
        result.steps = step + 1
        if callback:
            callback(f"{event}_step", metrics)
        out_of_time = seconds_left is not None and time.perf_counter() - started > seconds_left
        if result.steps % eval_every == 0 or result.steps == n_steps or out_of_time:
            best_state = _validate(model, valid, task, config, result, result.steps, best_state, callback, event)
            result.seconds = time.perf_counter() - started
            _save(workdir / LAST, model, optimizer, result, best_state)
        if out_of_time:
            break
    result.seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def _validate(model, valid: pd.DataFrame, task: SidTask, config: TrainConfig, result: PostTrainResult, step: int,
              best_state, callback, event: str) -> dict[str, Tensor] | None:
    top, targets = rank_split(model, valid, k=max(config.eval_ks), batch_size=config.eval_batch_size,
                              max_history=config.max_history, task=task)
    record = {"step": step, **evaluate(top, targets, config.eval_ks)}
    result.evaluations.append(record)
    if callback:
        callback(f"{event}_eval", record)
    if not result.best_metrics or record[config.monitor] > result.best_metrics[config.monitor]:
        result.best_metrics = record
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    return best_state


def _save(path: Path, model, optimizer, result: PostTrainResult, best_state) -> None:
    save_atomic({**model_payload(model), "optimizer": optimizer.state_dict(), "rng": rng_states(),
                 "result": asdict(result), "best_state": best_state}, path)


def _resume(path: Path, model, optimizer, result: PostTrainResult) -> dict[str, Any] | None:
    stored = read_checkpoint(path, map_location=model.device)
    model.load_state_dict(stored["model_state"])
    optimizer.load_state_dict(stored["optimizer"])
    restore_rng_states(stored["rng"])
    for key, value in stored["result"].items():
        setattr(result, key, value)
    return stored["best_state"]
