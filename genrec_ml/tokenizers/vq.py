"""Pieces shared by the learned quantisers (RQ-VAE, CoBa RQ-VAE, LETTER, MPQ).

Every learned tokenizer owns ``model.codebooks`` of shape (C, K, d): C codebooks (levels for
residual quantisation, experts for MPQ) of K codes each. The training loop below only needs
that tensor and the tokenizer's ``_train_step`` hook, so the variants differ in their losses,
not in how they batch, seed, reset dead codes or report progress.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from genrec_ml.tokenizers.base import FitReport


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last): dims[0] -> ... -> dims[-1]."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table (R, d) rows picked by any-shaped index -> (*index.shape, d).

    Used instead of ``table[index]`` wherever gradients flow: advanced indexing backpropagates
    through a multi-threaded scatter-add whose summation order varies from run to run on CPU,
    which made two fits with the same seed differ; index_select's backward does not.
    """
    return table.index_select(0, index.reshape(-1)).reshape(*index.shape, table.shape[1])


@dataclass
class StepOutput:
    """One training batch as the shared loop sees it."""

    terms: dict[str, torch.Tensor]  # weighted loss terms; the loss is their sum
    codes: torch.Tensor  # (B, C) chosen code per codebook
    targets: list[torch.Tensor]  # C tensors (B, d): what each codebook tried to match, detached


class LearnedTokenizer(Protocol):
    name: str
    config: Any
    model: nn.Module | None
    input_dim: int | None

    def _build_model(self, input_dim: int) -> nn.Module: ...

    def _train_step(
        self, x: torch.Tensor, batch_index: torch.Tensor, collab: torch.Tensor | None
    ) -> StepOutput: ...

    def _after_step(self, codes: torch.Tensor) -> None: ...


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering 0..n-1 once."""
    yield from torch.randperm(n, generator=generator).split(batch_size)


def code_usage(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(B, C) codes -> (C, K) counts of each code in each codebook."""
    n_codebooks = codes.shape[1]
    offsets = torch.arange(n_codebooks) * codebook_size  # (C,)
    flat = (codes + offsets).reshape(-1)  # (B*C,) one id per (codebook, code)
    counts = torch.bincount(flat, minlength=n_codebooks * codebook_size)
    return counts.reshape(n_codebooks, codebook_size)  # (C, K)


@torch.no_grad()
def reseed_dead_codes(
    codebooks: torch.Tensor,
    usage: torch.Tensor,
    targets: list[torch.Tensor],
    generator: torch.Generator,
) -> int:
    """Move every code unused over an epoch onto a random vector it could have matched.

    codebooks (C, K, d), usage (C, K), targets: C tensors (B, d) from the latest batch.
    A dead code gets no gradient from the codebook loss, so without a reset it stays dead.
    """
    n_reset = 0
    for c, target in enumerate(targets):
        dead = torch.nonzero(usage[c] == 0).squeeze(1)
        if len(dead) == 0:
            continue
        if len(dead) <= target.shape[0]:
            picks = torch.randperm(target.shape[0], generator=generator)[: len(dead)]
        else:
            picks = torch.randint(target.shape[0], (len(dead),), generator=generator)
        codebooks.data[c, dead] = target[picks]
        n_reset += len(dead)
    return n_reset


def _run_epoch(
    tokenizer: LearnedTokenizer,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    collab: torch.Tensor | None,
    generator: torch.Generator,
    *,
    init_codebooks: bool,
) -> tuple[dict[str, float], torch.Tensor, list[torch.Tensor]]:
    """One pass over x. Returns (mean of each loss term, code usage (C, K), last targets)."""
    cfg, model = tokenizer.config, tokenizer.model
    usage = torch.zeros(model.codebooks.shape[:2], dtype=torch.int64)
    sums: dict[str, float] = defaultdict(float)
    n_batches = 0
    for batch_index in batches(x.shape[0], cfg.batch_size, generator):
        xb = x[batch_index]
        if init_codebooks and n_batches == 0:
            model.init_codebooks(xb, seed=cfg.seed, n_iter=cfg.kmeans_iters)
        step = tokenizer._train_step(xb, batch_index, collab)
        loss = sum(step.terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokenizer._after_step(step.codes)
        usage += code_usage(step.codes, usage.shape[1])
        for name, value in step.terms.items():
            sums[name] += float(value.detach())
        sums["loss"] += float(loss.detach())
        n_batches += 1
    return {name: total / n_batches for name, total in sums.items()}, usage, step.targets


def train_epochs(
    tokenizer: LearnedTokenizer,
    x: torch.Tensor,
    collab: torch.Tensor | None,
    generator: torch.Generator,
    *,
    progress: bool = False,
) -> list[dict]:
    """Adam over shuffled mini-batches; codebooks k-means-initialised on the first batch.

    Returns one dict per epoch: mean of every loss term, total loss, dead codes reset and
    the fewest codes used by any codebook in that epoch.
    """
    cfg, model = tokenizer.config, tokenizer.model
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history = []
    bar = tqdm(range(cfg.epochs), desc=f"{tokenizer.name} epochs", disable=not progress)
    for epoch in bar:
        means, usage, targets = _run_epoch(
            tokenizer, optimizer, x, collab, generator, init_codebooks=epoch == 0
        )
        # A code reset after the last epoch would never be trained, so the final epoch keeps
        # the codebooks exactly as optimised.
        n_reset = 0
        if cfg.reset_dead_codes and epoch < cfg.epochs - 1:
            n_reset = reseed_dead_codes(model.codebooks, usage, targets, generator)
        history.append({
            "epoch": epoch,
            **means,
            "dead_codes_reset": n_reset,
            "min_used_codes": int((usage > 0).sum(dim=1).min()),
        })
        bar.set_postfix(loss=f"{means['loss']:.4f}", dead=n_reset)
    return history


def seeded_fit(
    tokenizer: LearnedTokenizer,
    x: torch.Tensor,
    collab: torch.Tensor | None,
    *,
    progress: bool = False,
) -> FitReport:
    """Build the tokenizer's model and train it, reproducibly for ``config.seed``.

    fork_rng keeps the caller's global torch RNG untouched by our seeding.
    """
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tokenizer.config.seed)
        tokenizer.input_dim = x.shape[1]
        tokenizer.model = tokenizer._build_model(tokenizer.input_dim)
        tokenizer.model.train()
        generator = torch.Generator().manual_seed(tokenizer.config.seed)
        history = train_epochs(tokenizer, x, collab, generator, progress=progress)
    tokenizer.model.eval()
    return FitReport(history=history, fit_seconds=time.perf_counter() - start)
