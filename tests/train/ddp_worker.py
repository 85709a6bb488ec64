"""One torchrun rank of tests/train/test_ddp.py: trains a tiny next-item task with
`genrec_ml.train.loop.train` and leaves what the test compares in `OUT/<run>/`:

    rank<R>.pt             final weights, each step's examples and local loss, the steps taken, step 1's
                           gradient buckets before and after DDP's all-reduce, last.pt's step on return
    events.rank<R>.jsonl   every callback event, marked `resumed` when its launch found a last.pt,
                           one JSON line each (the file appears with the first event)
    saves.rank<R>.json     every file this rank wrote with torch.save while training

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tests.train.ddp_worker OUT RUN [RUN ...]

RUN is `name` or `name:N`: with `:N` a run that starts without a last.pt has every rank SIGKILL
itself as it starts step N, as when a machine is pre-empted. The same command again skips the
runs that finished and resumes the others from last.pt. Checkpoints go to `OUT/<name>/checkpoints`.
With several runs left the worker starts the process group itself, so it outlives the first
`train` call; otherwise `train` starts it, as under `cli train`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from genrec_ml.train import loop
from genrec_ml.train.checkpoint import read_checkpoint
from genrec_ml.train.distributed import wrap
from tests.train.test_loop import next_item_task, quick_config, small_model

N_TRAIN, N_VALID = 192, 40  # 12 batches of 16: 6 per rank and epoch, none wrapped around
# last.pt every 5 steps, so the final one (step 24) is written after the loop, where a rank that
# did not wait for rank 0 would return before it exists; no clipping, so DDP's buckets are the step's gradients
CONFIG = quick_config(batch_size=16, max_epochs=4, checkpoint_every_steps=5, grad_clip=0.0, device="cpu")


def varied_lengths_task():
    """test_loop's next-item task with histories of 1 to 4 items: the ranks' batches differ in
    length, so their dropout draws differ in number and their RNG streams part, as on real data."""
    train, valid, sids = next_item_task(N_TRAIN, N_VALID, history_length=4)
    rng = np.random.default_rng(1)
    for frame in (train, valid):  # keep each history's last item, on which the target depends
        frame["history"] = [h[-rng.integers(1, 5):] for h in frame["history"]]
    assert train["history"].map(len).nunique() == 4 and len(np.unique(train["user_index"])) == N_TRAIN
    return train, valid, sids


class Recorder:
    """What one `train` call did on this rank, seen through the model, DDP and torch.save."""

    def __init__(self, folder: Path, rank: int, die_at_step: int | None, resumed: bool):
        self.folder, self.rank, self.die_at_step, self.resumed = folder, rank, die_at_step, resumed
        self.examples: list[torch.Tensor] = []  # user_index of each step's batch (= example index here)
        self.losses: list[float] = []  # this rank's loss of each step, before any averaging
        self.buckets: dict[int, dict[str, torch.Tensor]] = {}  # step 1's gradient buckets, by bucket index
        self.saves: list[str] = []

    def watch_forward(self, model: torch.nn.Module) -> None:
        forward = model.forward

        def recorded(batch):
            if model.training:  # validation calls `recommend`, but stay safe if it ever calls forward
                if len(self.examples) + 1 == self.die_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)
                self.examples.append(batch["user_index"].cpu().clone())
                logits, loss = forward(batch)
                self.losses.append(loss.item())
                return logits, loss
            return forward(batch)

        model.forward = recorded

    def wrap(self, model, processes, device):
        wrapped = wrap(model, processes, device)
        if processes.distributed:
            wrapped.register_comm_hook(None, self._allreduce)
        return wrapped

    def _allreduce(self, state, bucket):
        local = bucket.buffer().clone()  # before allreduce_hook divides it in place

        def keep(future):
            averaged = future.value()
            if len(self.examples) == 1:
                self.buckets[bucket.index()] = {"local": local, "averaged": averaged.clone()}
            return averaged

        return allreduce_hook(state, bucket).then(keep)

    def callback(self, event: str, payload: dict) -> None:
        with open(self.folder / f"events.rank{self.rank}.jsonl", "a") as file:
            file.write(json.dumps({"event": event, "resumed": self.resumed, **payload}, default=str) + "\n")

    def save_spy(self, save):
        def spied(obj, target, *args, **kwargs):
            if isinstance(target, str | os.PathLike):  # not the buffers all_gather_object pickles into
                self.saves.append(str(target))
            return save(obj, target, *args, **kwargs)

        return spied


def train_one(out: Path, spec: str, data) -> None:
    name, _, die = spec.partition(":")
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ["RANK"])
    resumed = (folder / "checkpoints" / loop.LAST).is_file()
    recorder = Recorder(folder, rank, int(die) if die and not resumed else None, resumed)
    model = small_model(dropout=0.1)  # dropout draws from the RNG streams a resume must restore
    recorder.watch_forward(model)
    save, loop.wrap, torch.save = torch.save, recorder.wrap, recorder.save_spy(torch.save)
    try:
        result = loop.train(model, *data, CONFIG, folder / "checkpoints", recorder.callback)
    finally:
        loop.wrap, torch.save = wrap, save
    last_step = read_checkpoint(folder / "checkpoints" / loop.LAST)["progress"]["step"]
    (folder / f"saves.rank{rank}.json").write_text(json.dumps(recorder.saves))
    torch.save({"weights": model.state_dict(), "examples": recorder.examples, "losses": recorder.losses,
                "buckets": recorder.buckets, "steps": result.steps, "history": result.history,
                "last_step_on_return": last_step}, folder / f"rank{rank}.pt")


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    rank = os.environ["RANK"]
    runs = [spec for spec in argv[1:] if not (out / spec.partition(":")[0] / f"rank{rank}.pt").is_file()]
    torch.set_num_threads(1)
    data = varied_lengths_task()
    if len(runs) > 1:
        dist.init_process_group("gloo")
    try:
        for spec in runs:
            train_one(out, spec, data)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
