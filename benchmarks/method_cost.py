"""What reasoning costs: training and inference throughput of S²GR, CARE and REG4Rec against TIGER, and of
LASAR and the explicit-CoT baseline against MiniOneRec (LASAR Table 4: LASAR +7-16 % inference time over
MiniOneRec, writing the CoT first over 20x).

Every model is built the way the assets build it (`model_config` from the same profile and
catalog), trained with the shared loop on the same batches and decoded with the same constrained
beam search on the same users, one after another in one process, so the ratios compare the
methods and nothing else. Training is timed between the first and last optimizer step; inference
is ranking `--users` users (beam `--beams`, top 20). Paper figures: CARE adds about 5% training
time and 1.5% inference time over its backbone.

    python benchmarks/method_cost.py                          # smoke models, CPU
    python benchmarks/method_cost.py --methods all            # and every ablation
    python benchmarks/method_cost.py --profile paper --device cuda --steps 100

The catalog is random 3 x 256 SIDs plus a disambiguation level (12,000 items, Beauty-sized);
S²GR gets k-means-free random coarse clusters (C = 16) of random code vectors. REG4Rec decodes its
own kind of catalog, random 8 x 300 MPQ token sets of the same 12,000 items (its training figure
is pre-training; PARS steps are not timed here), with CRSS and CORP at the paper's settings.
The decoder-only models get 4 x 256 codes, item titles of random words (MiniOneRec trains its title
<-> SID tasks on them), template CoTs of the same items (explicit CoT) and 4 random anchor states per
example (LASAR: N = 4, the mean its head chose on amazon-beauty, 4.27; an untrained head would pick
any N); the explicit CoT writes 123 tokens before answering in `explicit_cot_gen` (a template CoT's
mean length on amazon-beauty: an untrained model never ends it on its own). Ratios are against each
method's base: TIGER, or MiniOneRec for the decoder-only models. Freed memory stays in the process
(`genrec_ml.train.memory`, as in every training and ranking job; `benchmarks/heap.py`): without that, a
model's decoding time depended on how far its own training had grown the heap (explicit CoT's direct
mode came out 3x faster than MiniOneRec's identical search).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
from training import genrec_samples_per_second  # benchmarks/training.py: the same timed training loop

from genrec_ml.inputs import catalog_words
from genrec_ml.models.registry import build_model, model_config
from genrec_ml.text.cot import CotConfig, ItemFacts, template_cot
from genrec_ml.train.loop import rank_split
from genrec_ml.train.memory import retain_freed_memory
from genrec_ml.vocab import resolve_codebook_sizes

# (label, registry name, config overrides): the assets' variants. Variants that differ only in their
# codes (s2gr_wo_coba, care_letter) cost what their method costs and are not listed.
METHODS = [
    ("tiger", "tiger", {}),
    ("s2gr", "s2gr", {}),
    ("s2gr_wo_reasoning", "s2gr", {"use_reasoning": False}),
    ("s2gr_wo_think_loss", "s2gr", {"think_loss_weight": 0.0}),
    *[(f"s2gr_c{c}", "s2gr", {"n_coarse": c}) for c in (4, 8, 32, 64)],
    ("care", "care", {}),
    ("care_wo_reasoning", "care", {"queries_per_level": 0}),
    ("care_wo_progressive", "care", {"progressive_attention": False}),
    ("care_wo_diversity", "care", {"diversity_weight": 0.0}),
    ("care_1-1-4-4", "care", {"queries_per_level": (1, 1, 4, 4)}),
    ("reg4rec", "reg4rec", {}),
    ("reg4rec_wo_crss", "reg4rec", {"dynamic_order": False}),
    ("reg4rec_wo_corp", "reg4rec", {"corp": False}),
    ("minionerec", "minionerec", {}),
    ("lasar_n4", "lasar", {"fixed_steps": 4}),
    ("lasar_n1", "lasar", {"fixed_steps": 1}),
    ("explicit_cot", "explicit_cot", {}),
    ("explicit_cot_gen", "explicit_cot", {"inference": "generate", "max_cot_tokens": 123}),
]
DEFAULT_METHODS = ["tiger", "s2gr", "s2gr_wo_reasoning", "care", "care_wo_reasoning", "care_1-1-4-4", "reg4rec",
                   "minionerec", "lasar_n4", "explicit_cot", "explicit_cot_gen"]
DECODER_ONLY = ("minionerec", "lasar", "explicit_cot")


def catalog(n_items: int, seed: int, levels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, 256, (n_items * 2, levels)), axis=0)[:n_items]
    return np.concatenate([codes, rng.integers(0, 4, (len(codes), 1))], axis=1)


def item_facts(n_items: int, seed: int) -> ItemFacts:
    """Titles of 4-8 words from a 3,000-word vocabulary and 1-3 of 400 labels per item."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}x" for i in range(3000)]
    return ItemFacts(titles=[" ".join(rng.choice(words, rng.integers(4, 9))) for _ in range(n_items)],
                     labels=[[f"attribute {c}" for c in rng.choice(400, rng.integers(1, 4), replace=False)]
                             for _ in range(n_items)])


def with_cot(frame: pd.DataFrame, name: str, facts: ItemFacts, width: int) -> pd.DataFrame:
    """The training examples with what the model reads of the teacher CoT (none for the others)."""
    if name == "explicit_cot":
        config = CotConfig()
        return frame.assign(cot_text=[" ".join(template_cot(list(h), int(t), facts, config))
                                      for h, t in zip(frame["history"], frame["target_item_index"], strict=True)])
    if name == "lasar":
        rng = np.random.default_rng(0)
        return frame.assign(n_segments=4, anchors=[rng.normal(size=(4, width)).astype(np.float16) for _ in frame.index])
    return frame


def set_catalog(n_items: int, seed: int) -> np.ndarray:
    """REG4Rec's codes: 8 x 300 token sets, then the disambiguation level."""
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, 300, (n_items * 2, 8)), axis=0)[:n_items]
    return np.concatenate([codes, np.zeros((len(codes), 1), dtype=codes.dtype)], axis=1)


def examples(n: int, n_items: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_index": np.arange(n), "target_item_index": rng.integers(0, n_items, n),
                         "history": list(rng.integers(0, n_items, (n, 20)))})


def build(name: str, profile: str, sids: np.ndarray, overrides: dict, facts: ItemFacts) -> torch.nn.Module:
    quantised = (300,) * 8 if name == "reg4rec" else (256,) * (4 if name in DECODER_ONLY else 3)
    sizes = resolve_codebook_sizes(sids, quantised)
    n_coarse = overrides.get("n_coarse", 16)
    fields = {"codebook_sizes": tuple(sizes), "n_items": len(sids), "n_coarse": n_coarse, "d_code": 32,
              "n_categories": 400, "text_words": catalog_words(facts.titles)}
    torch.manual_seed(0)
    model = build_model(name, asdict(model_config(name, profile, fields, overrides)))
    if getattr(model.config, "title_tasks", False):
        model.set_item_titles(facts.titles, sids)
    if hasattr(model, "set_coarse_clusters"):
        rng = np.random.default_rng(0)
        levels = len(sizes) - 1
        model.set_coarse_clusters([rng.normal(size=(n_coarse, 32)).astype(np.float32) for _ in range(levels)],
                                  [rng.integers(0, n_coarse, sizes[level]) for level in range(levels)])
    return model


def users_per_second(model, frame, sids, beams, batch_size, device) -> float:
    model.to(device).eval()
    # warm-up: the same pass once untimed; with freed memory kept, the timed pass reuses its heap pages
    rank_split(model, frame, sids, k=20, beam_width=beams, batch_size=batch_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    rank_split(model, frame, sids, k=20, beam_width=beams, batch_size=batch_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(frame) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS,
                        help=f"'all' or labels of: {', '.join(label for label, _, _ in METHODS)}")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--users", type=int, default=512)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; each method keeps its best")
    args = parser.parse_args()
    retained = retain_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    catalogs = {"sids": catalog(12_000, 0), "sets": set_catalog(12_000, 0), "decoder": catalog(12_000, 0, levels=4)}
    facts = item_facts(12_000, 0)
    frame = examples(args.batch_size * (args.steps + 1), 12_000, 0)
    users = examples(args.users, 12_000, 1)
    print(f"profile {args.profile}, device {args.device}, torch threads {torch.get_num_threads()}, "
          f"train batch {args.batch_size} x {args.steps} steps, inference {args.users} users, beam {args.beams}, "
          f"freed memory {'kept in the process' if retained else 'returned (not glibc): decoding times may vary'}")
    unknown = set(args.methods) - {label for label, _, _ in METHODS} - {"all"}
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")
    chosen = [m for m in METHODS if m[0] in args.methods or "all" in args.methods]
    bases = {label: "minionerec" if name in DECODER_ONLY else "tiger" for label, name, _ in chosen}
    needed = [m for m in METHODS if m[0] in set(bases.values())]
    chosen = [*needed, *[m for m in chosen if m not in needed]]  # ratios need each base first
    bases.update({label: label for label, _, _ in needed})
    # Rounds interleave the methods and each keeps its best round, so a burst of load on a shared
    # machine lowers one measurement, not one method's figure.
    best: dict[str, list[float]] = {label: [0.0, 0.0] for label, _, _ in chosen}
    params: dict[str, int] = {}
    for _ in range(args.repeats):
        for label, name, overrides in chosen:
            sids = catalogs["sets" if name == "reg4rec" else "decoder" if name in DECODER_ONLY else "sids"]
            model = build(name, args.profile, sids, overrides, facts)
            params[label] = sum(p.numel() for p in model.parameters())
            examples_ = with_cot(frame, name, facts, getattr(model.config, "d_model", 0))
            trained = genrec_samples_per_second(model, examples_, sids, args.steps, args.batch_size, args.device)
            inferred = users_per_second(model, users, sids, args.beams, args.batch_size, args.device)
            best[label] = [max(best[label][0], trained), max(best[label][1], inferred)]
    print(f"best of {args.repeats} interleaved rounds")
    print(f"{'method':>20} {'params':>11} {'train samples/s':>16} {'train time':>11} "
          f"{'infer users/s':>14} {'infer time':>11}  against")
    for label, (trained, inferred) in best.items():
        # time ratios: the base's throughput over this method's (1.05x = 5% more time)
        base = best[bases[label]]
        print(f"{label:>20} {params[label]:>11,} {trained:>16.1f} {base[0] / trained:>10.3f}x "
              f"{inferred:>14.1f} {base[1] / inferred:>10.3f}x  {bases[label]}")


if __name__ == "__main__":
    main()
