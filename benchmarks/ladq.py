"""LADQ's speed (REG4Rec Table 4): PARS steps per second with every linear layer in fp32, bf16 or fp8,
and with LADQ choosing per layer, on the same model, data and paths, one after another.

    python benchmarks/ladq.py                         # CPU: fp32, bf16, LADQ (no fp8 matmul here)
    python benchmarks/ladq.py --device cuda --profile paper

QPS = PARS samples (users x paths) per second, as Table 4's "batch-samples per second". Table 4's
R@5 / N@5 need each variant trained to the end; this script measures speed only. The catalog is
random 8 x 300 MPQ token sets of 12,000 items with random codeword vectors, 20-item histories.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict
from functools import partial

import numpy as np
import pandas as pd
import torch

from genrec_ml.models.registry import build_model, model_config
from genrec_ml.rl.pars import pars_context, pars_step
from genrec_ml.train.config import train_config
from genrec_ml.train.ladq import LadqConfig, LadqController, apply_precisions, available_precisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    n = 12_000
    sids = np.concatenate([rng.integers(0, 300, (n, 8)), np.zeros((n, 1), dtype=np.int64)], axis=1)
    config = model_config("reg4rec", args.profile, {"codebook_sizes": (300,) * 8 + (1,), "n_items": n,
                                                     "n_categories": 400})
    torch.manual_seed(0)
    model = build_model("reg4rec", asdict(config)).to(device)
    model.set_item_categories(torch.as_tensor(rng.integers(0, 400, n)))
    train = pd.DataFrame({"user_index": np.arange(4096), "target_position": 20, "target_item_index":
                          rng.integers(0, n, 4096), "history": list(rng.integers(0, n, (4096, 20)))})
    context = pars_context(model, train, sids, [rng.normal(size=(300, 32)).astype(np.float32)] * 8, 20)
    settings = train_config(args.profile, "sids")
    formats = available_precisions(device)
    print(f"profile {args.profile}, device {device}, formats here: {formats}, "
          f"{config.pars_users} users x {config.pars_group} paths per step, {args.steps} timed steps")
    rows = []
    for mode in (*formats, "ladq"):
        policy = copy.deepcopy(model)
        reference = copy.deepcopy(model).requires_grad_(False)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=config.pars_lr)
        controller = None
        if mode == "ladq":
            controller = LadqController(policy, LadqConfig(every=10**9), device)
            probe = context.data.batch(np.arange(256))
            policy(probe)  # input shapes for the timing
            controller.maybe_update(0, partial(lambda m, b: m(b)[1], policy, probe), force=True)
        else:
            layers = {k: m for k, m in policy.named_modules() if isinstance(m, torch.nn.Linear)}
            apply_precisions(layers, {k: mode for k in layers})
        step = partial(pars_step, policy, reference, context, optimizer, settings)
        step(0)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for s in range(1, args.steps + 1):
            step(s)
        if device.type == "cuda":
            torch.cuda.synchronize()
        qps = args.steps * config.pars_users * config.pars_group / (time.perf_counter() - started)
        rows.append((mode, qps, controller.summary() if controller else {mode: "all"}))
    base = rows[0][1]
    print(f"{'format':>6} {'samples/s':>10} {'vs fp32':>8}  layers")
    for mode, qps, layers in rows:
        print(f"{mode:>6} {qps:>10.1f} {qps / base:>7.2f}x  {layers}")


if __name__ == "__main__":
    main()
