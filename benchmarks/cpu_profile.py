"""Training throughput of a SID model's profiles on a real bundle: how the `cpu` profiles were chosen.

One torch thread, length-grouped batches of 256 from the bundle's train split, samples/s between the
3rd and the last of `--steps` optimizer steps; also the epochs each size would train in `--minutes`.

    python benchmarks/cpu_profile.py --bundle .genrec/bundles/amazon-beauty-rq_vae --steps 12
    python benchmarks/cpu_profile.py --model minionerec --bundle .genrec/bundles/amazon-beauty-rq_kmeans_4x256
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

import torch
from training import genrec_samples_per_second  # benchmarks/training.py: the same timed training loop

from genrec_ml.experiments import split_examples
from genrec_ml.inputs import read_bundle
from genrec_ml.models.registry import build_model, model_class, model_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--profiles", nargs="+", default=["smoke", "cpu", "paper"])
    parser.add_argument("--model", default="tiger", help="a SID model of the registry: tiger, minionerec, ...")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = read_bundle(args.bundle)
    examples = split_examples(bundle.splits, bundle.meta["scheme"])
    sample = examples["train"].sample(min(len(examples["train"]), 256 * args.steps * 4), random_state=0)
    print(f"{bundle.dataset}: {len(examples['train'])} train examples, 1 thread, batch 256")
    print(f"{'profile':>8} {'parameters':>11} {'samples/s':>10} {'epochs in ' + str(args.minutes) + ' min':>18}")
    for profile in args.profiles:
        torch.manual_seed(0)
        config = model_config(args.model, profile, bundle.catalog.config_fields())
        model = build_model(args.model, asdict(config))
        rate = genrec_samples_per_second(model, sample, bundle.catalog.sids, args.steps, 256, "cpu")
        epochs = rate * args.minutes * 60 / len(examples["train"])
        print(f"{profile:>8} {sum(p.numel() for p in model.parameters()):>11,} {rate:>10.1f} {epochs:>18.1f}",
              flush=True)
    print(f"{args.model} profiles: {', '.join(getattr(model_class(args.model), 'profiles', None) or args.profiles)}")


if __name__ == "__main__":
    main()
