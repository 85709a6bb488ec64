"""Training throughput: today's loop vs genrec's loop (random and length-grouped batches) vs HF Trainer.

Same model, same data, same optimizer (AdamW, clipping 1.0), batch 256. Histories follow a
Beauty-like length distribution (mean ≈ 6.7 items, max 20: random batches are mostly padding).

- `plain loop`: the loop genrec had before length grouping, written out: a shuffled DataLoader,
  per-example `collate`, a host `.item()` of the loss every step.
- `genrec random`: `genrec_ml.train.loop.train` with `group_by_length=False`: batch fast path
  (gathers on the device), losses summed on the device, random batches.
- `genrec grouped`: the same with length-grouped batches (the default).
- `HF Trainer`: `transformers.Trainer` with `train_sampling_strategy="group_by_length"` (HF's
  LengthGroupedSampler) around the same model's loss, the reference the issue names.

HF's sampler sorts each mega-batch longest first and keeps that order, so its first steps are the
longest batches of its first mega-batch: timed over fewer than 50 steps (one mega-batch) HF is
measured on longer batches than an epoch's average, a bias against it. The default 50 steps avoid
it; paper TIGER runs a third of them to stay within minutes on a CPU, and its HF figure is low.

Samples/s is measured between the 3rd and the last optimizer step (set-up, validation and the
first steps excluded). The genrec loops report every step here (`log_every_steps=1`), one host
sync per step that their default (every 50) does not pay: on a GPU their figure is a lower bound.

    python benchmarks/training.py --threads 1
    python benchmarks/training.py --models tiger-smoke sasrec --steps 40 --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from genrec_ml.data.batching import epoch_batches, padding_share
from genrec_ml.models.registry import build_model, model_config
from genrec_ml.train.config import TrainConfig
from genrec_ml.train.loop import train
from genrec_ml.train.tasks import task_for

SIZES = (256, 256, 256, 8)
N_ITEMS = 12_000
MODELS = {"tiger-smoke": ("tiger", "smoke"), "tiger-paper": ("tiger", "paper"), "sasrec": ("sasrec", "paper")}


def beauty_like(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """`n` examples with histories of 1 + Geometric(0.17) items capped at 20, and a catalog of SIDs."""
    rng = np.random.default_rng(seed)
    sids = np.unique(rng.integers(0, 256, (N_ITEMS * 2, 3)), axis=0)[:N_ITEMS]
    sids = np.concatenate([sids, rng.integers(0, 8, (len(sids), 1))], axis=1)
    lengths = np.minimum(rng.geometric(0.17, n), 20)
    frame = pd.DataFrame({"user_index": np.arange(n), "target_item_index": rng.integers(0, N_ITEMS, n),
                          "history": [rng.integers(0, N_ITEMS, length) for length in lengths]})
    return frame, sids


def fresh_model(name: str):
    model, profile = MODELS[name]
    catalog = {"codebook_sizes": SIZES, "n_items": N_ITEMS}
    torch.manual_seed(0)
    return build_model(model, vars(model_config(model, profile, catalog)))


def batch_on(batch: dict, device: str) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def plain_loop(model, frame, sids, steps: int, batch_size: int, device: str) -> float:
    """The pre-grouping loop: DataLoader + per-example collate, a `.item()` every step."""
    model.to(device).train()
    task = task_for(model, sids)
    loader = DataLoader(task.dataset(model, frame, 20), batch_size=batch_size, shuffle=True, collate_fn=task.collate,
                        generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.035)
    times = []
    for batch in loader:
        _, loss = model(batch_on(batch, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()
        times.append(time.perf_counter())
        if len(times) == steps:
            break
    return rate(times, batch_size)


def genrec_samples_per_second(model, frame, sids, steps: int, batch_size: int, device: str) -> float:
    """genrec's loop as it trains by default (length-grouped batches); benchmarks/method_cost.py times with it."""
    return genrec_loop(model, frame, sids, steps, batch_size, device, grouped=True)


def genrec_loop(model, frame, sids, steps: int, batch_size: int, device: str, grouped: bool) -> float:
    times = []
    config = TrainConfig(batch_size=batch_size, max_steps=steps, max_epochs=1000, eval_unit="step", eval_every=10**9,
                         checkpoint_every_steps=10**9, eval_max_examples=8, progress=False, device=device,
                         warmup_steps=10, patience=0, group_by_length=grouped, log_every_steps=1)

    def clock(event, payload):
        if event == "step":
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as folder:
        catalog = sids if getattr(model, "input_kind", "sids") == "sids" else None
        train(model, frame, frame.iloc[:8], catalog, config, folder, clock)
    return rate(times, batch_size)


def hf_trainer(model, frame, sids, steps: int, batch_size: int, device: str) -> float:
    """transformers.Trainer, group_by_length sampling, around the model's own loss."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    task = task_for(model, sids)
    data = task.dataset(model, frame, 20)

    class Lengths(torch.utils.data.Dataset):  # LengthGroupedSampler reads len(example["input_ids"])
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            example = data[i]
            return example if "input_ids" in example else {**example, "input_ids": example["history"]}

    def collate(examples):
        return {"batch": task.collate([{k: v for k, v in e.items() if k != "input_ids" or "history" not in e}
                                       for e in examples])}

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, batch):
            return {"loss": self.inner(batch)[1]}

    times = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as folder:
        args = TrainingArguments(
            output_dir=folder, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=1e-3,
            weight_decay=0.035, max_grad_norm=1.0, warmup_steps=10, train_sampling_strategy="group_by_length",
            logging_steps=10**9, save_strategy="no", report_to=[], dataloader_num_workers=0,
            remove_unused_columns=False,
            use_cpu=device == "cpu", bf16=device.startswith("cuda"), disable_tqdm=True, seed=0,
        )
        Trainer(model=Wrapped(), args=args, train_dataset=Lengths(), data_collator=collate,
                callbacks=[Clock()]).train()
    return rate(times, batch_size)


def rate(times: list[float], batch_size: int) -> float:
    """Samples/s between the 3rd and the last step (the first steps warm allocators and caches)."""
    if len(times) < 4:
        raise SystemExit(f"{len(times)} timed steps: rates need at least 4 (two to warm up, two to time); "
                         "raise --steps")
    times = times[2:]
    return (len(times) - 1) * batch_size / (times[-1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=50, help="timed steps per loop (paper TIGER: a third)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}")
    header = f"{'model':>12} {'plain loop':>11} {'genrec random':>14} {'genrec grouped':>15} {'HF Trainer':>11} " \
             f"{'grouped/plain':>14} {'grouped/HF':>11}"
    rows = []
    for name in args.models:
        steps = max(6, args.steps // 3) if name == "tiger-paper" else args.steps
        # 200 batches of data: HF's sampler only forms full 50-batch mega-batches from 200 batches up
        frame, sids = beauty_like(args.batch_size * max(steps, 200), seed=1)
        lengths = frame["history"].map(len).to_numpy()
        random_padding = padding_share(lengths, epoch_batches(lengths, args.batch_size, 0, 0, group_by_length=False))
        grouped_padding = padding_share(lengths, epoch_batches(lengths, args.batch_size, 0, 0))
        figures = [plain_loop(fresh_model(name), frame, sids, steps, args.batch_size, args.device),
                   genrec_loop(fresh_model(name), frame, sids, steps, args.batch_size, args.device, grouped=False),
                   genrec_loop(fresh_model(name), frame, sids, steps, args.batch_size, args.device, grouped=True),
                   hf_trainer(fresh_model(name), frame, sids, steps, args.batch_size, args.device)]
        rows.append((name, steps, figures, random_padding, grouped_padding))
        print(f"  {name}: {steps} steps, padding share random {random_padding:.2f} / grouped {grouped_padding:.2f}",
              flush=True)
    print(header)
    for name, _, (plain, random, grouped, hf), _, _ in rows:
        print(f"{name:>12} {plain:>11.1f} {random:>14.1f} {grouped:>15.1f} {hf:>11.1f} {grouped / plain:>13.2f}x "
              f"{grouped / hf:>10.2f}x")
    print("samples/s; padding share = padded positions / all positions of the encoder input")


if __name__ == "__main__":
    main()
