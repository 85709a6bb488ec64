"""Training throughput: genrec's loop vs a plain HF Seq2SeqTrainer-style loop, same model and data.

The reference is what a Seq2SeqTrainer step does: `T5ForConditionalGeneration(input_ids,
attention_mask, labels)` (cross-entropy over the whole vocabulary), AdamW, linear-warmup
schedule, gradient clipping, batches from the same DataLoader. genrec's loop adds per-level
cross-entropy, checkpointing and its callbacks. Throughput is measured between the first and the
last optimizer step (validation and set-up excluded), in samples per second.

    python benchmarks/training.py                  # CPU, smoke and paper models
    python benchmarks/training.py --device cuda --steps 200
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.models.tiger import Tiger, tiger_config
from genrec_ml.train.config import TrainConfig
from genrec_ml.train.loop import train

SIZES = (256, 256, 256, 8)


def examples(n: int, n_items: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    sids = np.unique(rng.integers(0, 256, (n_items * 2, 3)), axis=0)[:n_items]
    sids = np.concatenate([sids, rng.integers(0, 8, (len(sids), 1))], axis=1)
    frame = pd.DataFrame({"user_index": np.arange(n), "target_item_index": rng.integers(0, len(sids), n),
                          "history": list(rng.integers(0, len(sids), (n, 20)))})
    return frame, sids


def genrec_samples_per_second(model, frame, sids, steps, batch_size, device) -> float:
    times = []
    config = TrainConfig(batch_size=batch_size, max_steps=steps, max_epochs=1000, eval_unit="step", eval_every=10**9,
                         checkpoint_every_steps=10**9, eval_max_examples=8, progress=False, device=device,
                         warmup_steps=10, patience=0)

    def clock(event, payload):
        if event == "step":
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as folder:
        train(model, frame, frame.iloc[:8], sids, config, folder, clock)
    return (len(times) - 1) * batch_size / (times[-1] - times[0])


def hf_samples_per_second(model, frame, sids, steps, batch_size, device) -> float:
    """The Seq2SeqTrainer inner loop, written out: full-vocabulary CE on the SID tokens."""
    t5 = model.t5.to(device).train()
    data = SequenceDataset(frame, sids, model.vocab, 20)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(t5.parameters(), lr=1e-3, weight_decay=0.035)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))
    use_bf16 = device.startswith("cuda")
    times, step = [], 0
    while step < steps:
        for batch in loader:
            labels = model.vocab.code_tokens(batch["targets"]).to(device)  # (B, L) token ids
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16):
                loss = t5(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                          labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(t5.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            loss.item()  # what a trainer's logging does: one sync per step
            times.append(time.perf_counter())
            step += 1
            if step >= steps:
                break
    return (len(times) - 1) * batch_size / (times[-1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["smoke", "paper"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frame, sids = examples(args.batch_size * (args.steps + 1), 12_000, 0)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.steps} steps, history 20 items x 4 levels")
    print(f"{'profile':>8} {'genrec samples/s':>17} {'HF loop samples/s':>18} {'ratio':>6}")
    for profile in args.profiles:
        config = tiger_config(profile, SIZES)
        torch.manual_seed(0)
        ours = genrec_samples_per_second(Tiger(config), frame, sids, args.steps, args.batch_size, args.device)
        torch.manual_seed(0)
        reference = hf_samples_per_second(Tiger(config), frame, sids, args.steps, args.batch_size, args.device)
        print(f"{profile:>8} {ours:>17.1f} {reference:>18.1f} {ours / reference:>5.2f}x")


if __name__ == "__main__":
    main()
