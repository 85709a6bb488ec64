"""What keeping freed memory in the process (`genrec_ml.train.memory.retain_freed_memory`, called by
`train_experiment`, `derive_experiment` and `evaluate_experiment`) does to training and ranking speed, against glibc's
defaults.

Each (model, allocator) pair runs in a fresh process, so neither inherits the other's heap: the models
are built as `benchmarks/method_cost.py` builds them (its random Beauty-sized catalog), trained
`--steps` steps with the shared loop, then rank `--users` users with constrained beam search
`--passes` times; the first pass pages the heap in, the last is the steady state a long ranking job
(44,726 users on amazon-beauty) runs in.

    python benchmarks/heap.py --models minionerec tiger --profile cpu --threads 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def child(name: str, retain: bool, args: argparse.Namespace) -> dict:
    from genrec_ml.train.memory import retain_freed_memory

    took = retain_freed_memory() if retain else False
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))
    import method_cost
    from training import genrec_samples_per_second

    from genrec_ml.train.loop import rank_split

    label, model_name, overrides = next(m for m in method_cost.METHODS if m[0] == name)
    levels = 4 if model_name in method_cost.DECODER_ONLY else 3
    sids = method_cost.catalog(12_000, 0, levels=levels)
    facts = method_cost.item_facts(len(sids), 0)
    model = method_cost.build(model_name, args.profile, sids, overrides, facts)
    frame = method_cost.with_cot(method_cost.examples(args.batch_size * (args.steps + 1), len(sids), 0), model_name,
                                 facts, getattr(model.config, "d_model", 0))
    trained = genrec_samples_per_second(model, frame, sids, args.steps, args.batch_size, "cpu")
    model.eval()
    users = method_cost.examples(args.users, len(sids), 1)
    passes = []
    for _ in range(args.passes):
        start = time.perf_counter()
        rank_split(model, users, sids, k=20, beam_width=args.beams, batch_size=args.batch_size)
        passes.append(len(users) / (time.perf_counter() - start))
    return {"model": label, "retained": took, "train": trained, "first": passes[0], "steady": passes[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["minionerec", "tiger"],
                        help="labels of benchmarks/method_cost.py's METHODS")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--users", type=int, default=512)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "RETAIN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1] == "1", args)))
        return
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("models", "child")]
    print(f"profile {args.profile}, {args.threads} thread(s), train batch {args.batch_size} x {args.steps} steps, "
          f"ranking {args.users} users x {args.passes} passes, beam {args.beams}; one fresh process per row")
    print(f"{'model':>12} {'allocator':>22} {'train samples/s':>16} {'first pass users/s':>19} "
          f"{'steady users/s':>15} {'steady vs default':>18}")
    for name in args.models:
        rows = {}
        for retain in (False, True):  # the reference first: glibc's defaults
            done = subprocess.run([sys.executable, __file__, *flags, "--child", name, str(int(retain))],
                                  capture_output=True, text=True, check=True)
            rows[retain] = row = json.loads(done.stdout.strip().splitlines()[-1])
            if retain and not row["retained"]:
                print(f"{name}: glibc did not take the settings (not glibc?): no comparison")
                break
            label = "freed memory kept" if retain else "glibc defaults"
            print(f"{name:>12} {label:>22} {row['train']:>16.1f} {row['first']:>19.1f} {row['steady']:>15.1f} "
                  f"{row['steady'] / rows[False]['steady']:>17.2f}x")


if __name__ == "__main__":
    main()
