"""Training throughput of candidate TIGER sizes on a real bundle: how the `cpu` profile was chosen.

One torch thread, length-grouped batches of 256 from the bundle's train split, samples/s between the
3rd and the last of `--steps` optimizer steps; also the epochs each size would train in `--minutes`.

    python benchmarks/cpu_profile.py --bundle .genrec/bundles/amazon-beauty-rq_vae --steps 12
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from genrec_ml.experiments import split_examples
from genrec_ml.inputs import read_bundle
from genrec_ml.models.tiger import PROFILES, Tiger, tiger_config
from genrec_ml.train.config import TrainConfig
from genrec_ml.train.loop import train


def samples_per_second(model, train_examples, valid_examples, sids, steps: int) -> float:
    times = []
    config = TrainConfig(batch_size=256, max_steps=steps, max_epochs=100, eval_unit="step", eval_every=10**9,
                         checkpoint_every_steps=10**9, eval_max_examples=8, progress=False, warmup_steps=10,
                         patience=0, log_every_steps=1)
    with tempfile.TemporaryDirectory() as folder:
        train(model, train_examples, valid_examples, sids, config, folder,
              lambda event, _: times.append(time.perf_counter()) if event == "step" else None)
    times = times[2:]
    return (len(times) - 1) * 256 / (times[-1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--profiles", nargs="+", default=["smoke", "cpu", "paper"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = read_bundle(args.bundle)
    examples = split_examples(bundle.splits, bundle.meta["scheme"])
    sample = examples["train"].sample(min(len(examples["train"]), 256 * args.steps * 4), random_state=0)
    print(f"{bundle.dataset}: {len(examples['train'])} train examples, 1 thread, batch 256")
    print(f"{'profile':>8} {'parameters':>11} {'samples/s':>10} {'epochs in ' + str(args.minutes) + ' min':>18}")
    for profile in args.profiles:
        torch.manual_seed(0)
        model = Tiger(tiger_config(profile, bundle.catalog.codebook_sizes))
        rate = samples_per_second(model, sample, examples["valid"].iloc[:8], bundle.catalog.sids, args.steps)
        epochs = rate * args.minutes * 60 / len(examples["train"])
        print(f"{profile:>8} {sum(p.numel() for p in model.parameters()):>11,} {rate:>10.1f} {epochs:>18.1f}",
              flush=True)
    print(f"profiles: {', '.join(PROFILES)}")


if __name__ == "__main__":
    main()
