"""How well a Semantic-ID model predicts each decoding step of the target under teacher forcing.

Per step: mean cross-entropy of the true code (nats) and top-1 accuracy, against the uniform
cross-entropy ln K of that step's codebook. TIGER's steps are its SID levels; REG4Rec's are its
steps in a random codebook order per user (as pre-training sees them) and in the fixed order.
Late steps that stay near ln K mean the model has not learnt which codes complete a catalog item:
the constraint supplies that at decoding time, but every forced step then adds the model's guess
to the path score. Side by side for several checkpoints (bundle per checkpoint: each model reads
its own codes).

    python benchmarks/step_fit.py --runs BUNDLE_A:CKPT_A BUNDLE_B:CKPT_B [--users 1000] [--split valid]

CKPT is a checkpoint file or a workdir (its best.pt).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from genrec_ml.experiments import split_examples
from genrec_ml.inputs import read_bundle
from genrec_ml.train.checkpoint import load_checkpoint
from genrec_ml.train.tasks import task_for


@torch.no_grad()
def step_fit(model, bundle, users: int, split: str, seed: int = 0) -> dict[str, tuple[list[float], list[float]]]:
    """{order name: (CE per step, top-1 accuracy per step)} on the first `users` examples of `split`."""
    model.eval()
    task = task_for(model, bundle.catalog.sids)
    examples = split_examples(bundle.splits, bundle.meta["scheme"])[split].head(users)
    data = task.dataset(model, examples, 20)
    batch = model._to_device(task.collate([data[i] for i in range(len(data))]))
    targets = batch["targets"]
    if not hasattr(model, "path_outputs"):  # left-to-right SID models: one order
        logits, _ = model(batch)
        return {"levels": _fit(logits, targets)}
    memory = model.encode(batch["input_ids"], batch["attention_mask"])
    fixed = torch.arange(targets.shape[1], device=targets.device).expand(len(targets), -1)
    torch.manual_seed(seed)
    found = {}
    for name, order in (("random order", model.training_order(len(targets))), ("fixed order", fixed)):
        codes = targets.gather(1, order)
        logits, _ = model.path_outputs(memory, batch["attention_mask"], order, codes)
        found[name] = _fit(logits, codes)
    return found


def _fit(logits: torch.Tensor, codes: torch.Tensor) -> tuple[list[float], list[float]]:
    ce = F.cross_entropy(logits.flatten(0, 1).float(), codes.flatten(), reduction="none").view(codes.shape)
    return ce.mean(0).tolist(), (logits.argmax(-1) == codes).float().mean(0).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="BUNDLE:CHECKPOINT pairs")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--split", default="valid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for pair in args.runs:
        bundle_path, _, checkpoint = pair.partition(":")
        checkpoint = Path(checkpoint)
        checkpoint = checkpoint / "best.pt" if checkpoint.is_dir() else checkpoint
        bundle, model = read_bundle(bundle_path), load_checkpoint(checkpoint)
        uniform = [math.log(k) for k in model.vocab.codebook_sizes]
        print(f"\n{model.name} {checkpoint} on {bundle_path} ({args.users} {args.split} users)")
        print(f"  {'step':24s}" + " ".join(f"{j:>6d}" for j in range(len(uniform))))
        print(f"  {'ln K':24s}" + " ".join(f"{u:6.2f}" for u in uniform))
        for name, (ce, accuracy) in step_fit(model, bundle, args.users, args.split).items():
            print(f"  {'CE, ' + name:24s}" + " ".join(f"{v:6.2f}" for v in ce))
            print(f"  {'top-1, ' + name:24s}" + " ".join(f"{v:6.3f}" for v in accuracy))


if __name__ == "__main__":
    main()
