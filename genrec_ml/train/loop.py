"""The training loop of the SID sequence models: AdamW, warmup + cosine, beam-search validation.

`train` works with any model registered in `genrec_ml.models.registry` that has `name`, `config`
(a dataclass) and `forward(batch) -> (logits, loss)`, and ranks in one of two ways (`tasks.py`):
Semantic-ID models (`vocab`, `recommend(batch, constraint, beam_width, top_k)`) by constrained
beam search, item-id models (`input_kind = "items"`, `recommend(batch, top_k)`) by a full sort.
It never imports an experiment tracker: the caller passes `callback(event, payload)` and logs
what it likes:

    ("step", {"loss", "lr", "step", ...})         every `log_every_steps` optimizer steps: the mean
                                                  loss since the last one, the lr of the last step;
                                                  a model's `loss_parts` (e.g. {"ce", "align"}) ride
                                                  along as means too
    ("eval", {"step", "epoch", "train_loss", "recall@10", "ndcg@10", "mrr", ...})
    ("checkpoint", {"path", "kind": "last" | "best", "step"})

Batches: length-grouped by default (`genrec_ml.data.batching`), built by gathers from datasets
that live on the training device. Losses stay on the device and are summed there; the host reads
them once per `log_every_steps` (and at validation and checkpoints), so a GPU never waits on a
per-step `.item()`.

Resuming: `checkpoint_dir/last.pt` holds the weights, optimizer, scheduler, RNG streams and the
loop's position (`Progress`). A call finding it continues from there; since each epoch's order
is a pure function of (seed, epoch) and the RNG streams are restored, the resumed run follows the
uninterrupted one step for step. Under torchrun (`distributed.py`) last.pt holds every rank's RNG
streams, and a resume needs the same number of processes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genrec_ml.data.batching import epoch_batches, length_sorted_batches, shard
from genrec_ml.decoding import Constraint
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.eval import evaluate
from genrec_ml.train.checkpoint import (
    model_payload,
    read_checkpoint,
    restore_rng_states,
    rng_states,
    save_atomic,
)
from genrec_ml.train.config import TrainConfig, planned_steps
from genrec_ml.train.config import steps_per_epoch as epoch_steps
from genrec_ml.train.distributed import (
    Processes,
    gather_objects,
    mean_over_processes,
    resolve_device,
    start_processes,
    stop_processes,
    unwrap,
    wait_for_all,
    wrap,
)
from genrec_ml.train.tasks import ItemTask, SidTask, task_for

Callback = Callable[[str, dict[str, Any]], None]
LAST, BEST = "last.pt", "best.pt"


@dataclass
class TrainResult:
    best_metrics: dict[str, float]  # the validation record with the best `monitor` value
    history: list[dict[str, float]]  # every validation record, oldest first
    best_checkpoint_path: Path | None  # best.pt, None if no validation ran
    steps: int  # optimizer steps taken, over all resumed calls
    seconds: float  # training wall-clock time, over all resumed calls (up to their last checkpoint)


@dataclass
class Progress:
    """Where the loop is and what early stopping remembers; saved in last.pt."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained
    best_value: float = -math.inf
    best_metrics: dict[str, float] = field(default_factory=dict)
    evals_since_best: int = 0
    last_eval_step: int = -1
    stopped: bool = False  # early stopping fired
    seconds: float = 0.0
    loss_sum: float = 0.0  # training loss summed since the last validation
    loss_count: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Run:
    """Everything one `train` call works with."""

    model: nn.Module  # DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: TrainConfig
    processes: Processes
    device: torch.device
    checkpoint_dir: Path
    callback: Callback | None
    task: SidTask | ItemTask
    train_data: Dataset
    valid_data: Dataset
    steps_per_epoch: int
    total_steps: int
    progress: Progress
    clock: float = field(default_factory=time.perf_counter)  # start of this call; progress.seconds is before it
    window: dict[str, Tensor] = field(default_factory=dict)  # device sums of loss (and loss parts) since the last log
    window_steps: int = 0


def train(
    model: nn.Module,
    train_examples: pd.DataFrame,
    valid_examples: pd.DataFrame,
    sids,
    config: TrainConfig,
    checkpoint_dir: str | Path,
    callback: Callback | None = None,
) -> TrainResult:
    """Train `model` in place, validating by ranking; resume from `checkpoint_dir/last.pt`.

    `sids: (N_items, L)` codes of every item (row = item index) for Semantic-ID models, None for
    item-id models (their config holds `n_items`). Seeds python, numpy and torch
    from `config.seed` (the model's initial weights are the caller's). On return the model holds
    the last weights; best.pt holds the best validated ones (`load_checkpoint`).
    """
    processes = start_processes(config.device)
    try:
        run = _setup(model, train_examples, valid_examples, sids, config, Path(checkpoint_dir), callback, processes)
        while not _finished(run):
            _train_epoch(run)
        if run.progress.last_eval_step != run.progress.step:
            _validate(run)
        _save_last(run)
        wait_for_all(processes)  # no rank returns (and reads best.pt) before rank 0 has written it
        return _result(run)
    finally:
        stop_processes(processes)


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    examples: pd.DataFrame | Dataset,
    sids=None,
    trie: Constraint | None = None,
    ks: tuple[int, ...] = (5, 10),
    beam_width: int = 20,
    batch_size: int = 256,
    max_history: int | None = 20,
    task: SidTask | ItemTask | None = None,
) -> dict[str, float]:
    """Rank top-max(ks) items for every example and score them against its target item.

    Returns `genrec_ml.eval.evaluate`'s dict ("recall@10", "ndcg@10", "mrr", ...). Semantic-ID
    models need `sids` (or a `task`); `examples` may be a dataset the task already built.
    """
    return evaluate(*rank_split(model, examples, sids, trie, max(ks), beam_width, batch_size, max_history, task), ks)


@torch.no_grad()
def rank_split(
    model: nn.Module,
    examples: pd.DataFrame | Dataset,
    sids=None,
    trie: Constraint | None = None,
    k: int = 10,
    beam_width: int = 20,
    batch_size: int = 256,
    max_history: int | None = 20,
    task: SidTask | ItemTask | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(top-k item indices (E, k), target item indices (E,))` for every example, in order."""
    if task is None:
        task = task_for(model, sids, beam_width)
        if trie is not None:
            task.trie = trie
    data = examples if isinstance(examples, Dataset) else task.dataset(model, examples, max_history)
    data.to(model.device)
    top = torch.full((len(data), k), -1, dtype=torch.long)  # (E, k), example order
    # Length-sorted batches pad to almost nothing; each example's ranking does not depend on its batch.
    for indices in length_sorted_batches(data.lengths, batch_size):
        top[torch.as_tensor(indices)] = task.rank(model, data.batch(indices), k).cpu()
    return top, data.target_items.cpu()


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float, schedule: str = "cosine") -> float:
    """Share of the peak lr at `step` (0-based).

    cosine: linear warmup, then a half cosine down to min_lr_ratio at total_steps.
    inverse_sqrt: the peak for the first warmup_steps, then sqrt(warmup_steps / step) (T5 and TIGER:
    "0.01 for the first 10k steps, then inverse square root decay"); it does not depend on
    total_steps, so a run stopped early by patience followed the same schedule as a longer one.
    """
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / max(step + 1, warmup_steps, 1))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    done = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * done))


def _setup(model, train_examples, valid_examples, sids, config, checkpoint_dir, callback, processes) -> _Run:
    _seed_everything(config.seed)
    if processes.distributed and config.max_train_seconds is not None:
        raise GenrecConfigError("max_train_seconds", "each torchrun rank would stop at its own step and the "
                                "others would wait forever; cap distributed runs with max_steps")
    device = resolve_device(config.device, processes)
    model.to(device)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    task = task_for(model, sids, config.eval_beam_width)
    train_data, valid_data = _datasets(model, task, train_examples, valid_examples, config)
    train_data.to(device)
    valid_data.to(device)
    steps_per_epoch = epoch_steps(config, len(train_data), processes.world_size)
    total_steps = planned_steps(config, len(train_data), processes.world_size)
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config.warmup_steps, total_steps, config.min_lr_ratio, config.schedule)
    )
    progress = Progress()
    if (checkpoint_dir / LAST).is_file():
        progress = _resume(checkpoint_dir / LAST, model, optimizer, scheduler, device, processes)
    return _Run(
        model=wrap(model, processes, device), optimizer=optimizer, scheduler=scheduler, config=config,
        processes=processes, device=device, checkpoint_dir=checkpoint_dir, callback=callback,
        task=task, train_data=train_data, valid_data=valid_data,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, progress=progress,
    )


def _datasets(model, task, train_examples, valid_examples, config) -> tuple[Dataset, Dataset]:
    if config.eval_max_examples is not None:
        valid_examples = valid_examples.iloc[: config.eval_max_examples]
    for name, frame in (("train_examples", train_examples), ("valid_examples", valid_examples)):
        if len(frame) == 0:
            raise GenrecDataError(f"{name} is empty; training needs both train and valid examples", field=name)
    return (task.dataset(model, train_examples, config.max_history),
            task.dataset(model, valid_examples, config.max_history))


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    # Decay weight matrices and embeddings only: shrinking norm gains just fights the normalisation.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def _finished(run: _Run) -> bool:
    p = run.progress
    return p.stopped or p.step >= run.total_steps or p.epoch >= run.config.max_epochs


def _train_epoch(run: _Run) -> None:
    p, config = run.progress, run.config
    bar = tqdm(
        _epoch_batches(run), desc=f"epoch {p.epoch}", initial=p.batch_in_epoch, total=run.steps_per_epoch,
        disable=not (config.progress and run.processes.is_main), leave=False,
    )
    run.model.train()
    for indices in bar:
        lr = _optimizer_step(run, run.train_data.batch(indices))
        p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + 1
        if p.step % config.log_every_steps == 0:
            logged = _flush_window(run)
            bar.set_postfix(loss=f"{logged['loss']:.4f}", lr=f"{lr:.2e}")
            _emit(run, "step", {**logged, "lr": lr, "step": p.step})
        if config.eval_unit == "step" and p.step % config.eval_every == 0:
            _validate(run)
        if p.step % config.checkpoint_every_steps == 0:
            _save_last(run)
        if config.max_train_seconds is not None and _elapsed(run) >= config.max_train_seconds:
            p.stopped = True  # the time budget is spent: end as an early stop, keeping best.pt
        if p.stopped or p.step >= run.total_steps:
            break
    bar.close()
    if p.batch_in_epoch >= run.steps_per_epoch:  # the epoch ran to its end
        p.epoch, p.batch_in_epoch = p.epoch + 1, 0
        if config.eval_unit == "epoch" and p.epoch % config.eval_every == 0 and not p.stopped:
            _validate(run)


def _epoch_batches(run: _Run) -> list[np.ndarray]:
    """This epoch's remaining batches (example indices): order fixed by (seed, epoch), shard by rank."""
    p, config = run.progress, run.config
    batches = epoch_batches(run.train_data.lengths, config.batch_size, config.seed, p.epoch, config.group_by_length)
    return shard(batches, run.processes.rank, run.processes.world_size)[p.batch_in_epoch :]


def _optimizer_step(run: _Run, batch: dict[str, torch.Tensor]) -> float:
    """One AdamW step, its loss summed on the device; returns the lr this step used."""
    lr = run.optimizer.param_groups[0]["lr"]
    use_bf16 = run.device.type == "cuda" and run.config.bf16
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        _, loss = run.model(batch)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    parts = getattr(unwrap(run.model), "loss_parts", {})
    for name, value in {"loss": loss, **{f"loss_{k}": v for k, v in parts.items()}}.items():
        value = torch.as_tensor(value).detach().float()
        run.window[name] = run.window[name] + value if name in run.window else value
    run.window_steps += 1
    return lr


def _flush_window(run: _Run) -> dict[str, float]:
    """Mean losses since the last flush (over all ranks), read from the device in one transfer; adds
    them to progress."""
    if not run.window_steps:
        return {}
    names = list(run.window)
    sums = torch.stack([run.window[name] for name in names])  # (n_names,)
    sums = mean_over_processes(sums, run.processes).cpu().tolist()  # the one host sync
    p = run.progress
    p.loss_sum, p.loss_count = p.loss_sum + sums[0], p.loss_count + run.window_steps
    means = {name: total / run.window_steps for name, total in zip(names, sums, strict=True)}
    run.window, run.window_steps = {}, 0
    return means


def _validate(run: _Run) -> None:
    _flush_window(run)
    p, config = run.progress, run.config
    metrics = evaluate_split(
        unwrap(run.model), run.valid_data, ks=config.eval_ks, batch_size=config.eval_batch_size, task=run.task
    )
    record = {"step": p.step, "epoch": p.epoch, "train_loss": p.loss_sum / max(p.loss_count, 1), **metrics}
    p.loss_sum, p.loss_count, p.last_eval_step = 0.0, 0, p.step
    p.history.append(record)
    _emit(run, "eval", record)
    if metrics[config.monitor] > p.best_value:
        p.best_value, p.best_metrics, p.evals_since_best = metrics[config.monitor], record, 0
        _save(run, BEST, {**model_payload(unwrap(run.model)), "metrics": record, "step": p.step})
    else:
        p.evals_since_best += 1
        p.stopped = config.patience > 0 and p.evals_since_best >= config.patience


def _save_last(run: _Run) -> None:
    _flush_window(run)
    run.progress.seconds = _elapsed(run)
    run.clock = time.perf_counter()
    payload = {
        **model_payload(unwrap(run.model)),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_states(),
        "progress": asdict(run.progress),
        "train_config": asdict(run.config),
    }
    if run.processes.distributed:  # each rank's dropout drew from its own streams
        payload |= {"world_size": run.processes.world_size, "rng_by_rank": gather_objects(rng_states(), run.processes)}
    _save(run, LAST, payload)


def _save(run: _Run, name: str, payload: dict[str, Any]) -> None:
    if not run.processes.is_main:
        return
    path = save_atomic(payload, run.checkpoint_dir / name)
    _emit(run, "checkpoint", {"path": str(path), "kind": name.removesuffix(".pt"), "step": run.progress.step})


def _resume(path: Path, model: nn.Module, optimizer, scheduler, device: torch.device, processes: Processes) -> Progress:
    checkpoint = read_checkpoint(path, map_location=device)
    if checkpoint["model_name"] != model.name or checkpoint["model_config"] != asdict(model.config):
        raise GenrecConfigError(
            "checkpoint_dir",
            f"{path} was written by a different model ({checkpoint['model_name']}, {checkpoint['model_config']}); "
            "use a new checkpoint_dir, or delete last.pt to start over",
        )
    world_size = checkpoint.get("world_size", 1)  # absent: written by a single process
    if world_size != processes.world_size:
        # the position in the epoch counts this many processes' batches, and the schedule's length depends on it
        raise GenrecConfigError(
            "checkpoint_dir",
            f"{path} was written by {world_size} process(es), this run has {processes.world_size}; "
            f"relaunch with {world_size} (torchrun --nnodes x --nproc_per_node), or delete last.pt to start over",
        )
    model.load_state_dict(checkpoint["model_state"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_states(checkpoint["rng_by_rank"][processes.rank] if processes.distributed else checkpoint["rng"])
    return Progress(**checkpoint["progress"])


def _result(run: _Run) -> TrainResult:
    p = run.progress
    best = run.checkpoint_dir / BEST
    return TrainResult(
        best_metrics=p.best_metrics, history=p.history, best_checkpoint_path=best if best.is_file() else None,
        steps=p.step, seconds=p.seconds,
    )


def _emit(run: _Run, event: str, payload: dict[str, Any]) -> None:
    if run.callback is not None and run.processes.is_main:
        run.callback(event, payload)


def _elapsed(run: _Run) -> float:
    return run.progress.seconds + time.perf_counter() - run.clock


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
