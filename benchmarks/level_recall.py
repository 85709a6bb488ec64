"""Where a Semantic-ID model loses to an item-id model: prefix recall per SID level, both on the same codes.

For every test user and level l, a hit when one of the model's top-K items shares the target's
first l+1 SID codes. An item-id model never sees the codes, so its prefix recall says how often its
ranking lands in the right category (coarse levels) and the right item (the last level, which is
Recall@K). A SID model trailing at the coarse levels misses users' interests; one level with the
item-id model there and trailing only at the fine levels misses the item-to-item memorisation an
embedding row per item gives for free.

    python benchmarks/level_recall.py --bundle B --workdirs RUN_A RUN_B [--users 3000] [--k 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genrec_ml.eval.token_bias import per_level_prefix_recall
from genrec_ml.experiments import split_examples
from genrec_ml.inputs import read_bundle
from genrec_ml.train.checkpoint import load_checkpoint, read_checkpoint
from genrec_ml.train.loop import rank_split
from genrec_ml.train.tasks import task_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="a SID bundle: its codes are the yardstick for every model")
    parser.add_argument("--workdirs", nargs="+", required=True,
                        help="trained workdirs (their best.pt) or checkpoint files; histories of at most 20 items")
    parser.add_argument("--split", default="test")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = read_bundle(args.bundle)
    examples = split_examples(bundle.splits, bundle.meta["scheme"])[args.split].iloc[: args.users]
    sids = bundle.catalog.sids
    print(f"{bundle.dataset}, {args.split}, {len(examples)} users, codes {bundle.meta['tokenizer']}, "
          f"prefix recall@{args.k} per level")
    train = split_examples(bundle.splits, bundle.meta["scheme"])["train"]
    last = np.array([history[-1] for history in train["history"]])
    successors = pd.DataFrame({"last": last, "target": train["target_item_index"].to_numpy()})
    most_common = successors.groupby("last")["target"].agg(lambda t: t.value_counts().iloc[0]).sum() / len(train)
    print(f"train targets: {most_common:.3f} are their last item's most common successor (in-sample: what an item-id "
          f"model memorises); {np.mean(sids[last, 0] == sids[successors['target'], 0]):.3f} share its first code")
    for target in args.workdirs:
        path = Path(target)
        checkpoint = path if path.suffix == ".pt" else path / "best.pt"
        model = load_checkpoint(checkpoint, map_location="cpu")
        stored = read_checkpoint(checkpoint)
        task = task_for(model, sids, beam_width=max(20, args.k))
        topk, targets = rank_split(model, examples, k=args.k, max_history=20, task=task)
        levels = per_level_prefix_recall(topk.numpy(), targets.numpy(), sids)
        print(f"{model.name:>8} {str(checkpoint):<60} (step {stored.get('step', '?')}): "
              + "  ".join(f"l{level} {value:.3f}" for level, value in enumerate(levels)), flush=True)

if __name__ == "__main__":
    main()
