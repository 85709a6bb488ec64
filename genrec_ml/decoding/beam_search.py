"""Model-agnostic constrained beam search over semantic IDs, and its brute-force reference.

The search sees a model only through `Stepper`. Models with extra machinery keep it inside
`step`: S²GR's thinking step and LASAR's latent loop run before emitting a level's log-probs and
never expand the beam; CARE's per-level query vectors are part of the stepper's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from genrec_ml.decoding.constraint import Constraint, ConstraintState
from genrec_ml.errors import GenrecConfigError

State = Any  # whatever the model carries between steps: encoder output, KV cache, latents


class Stepper(Protocol):
    """How a search drives a model, one SID level at a time.

    Call order: `start(B)` -> `step` on B rows with an empty prefix -> (`reorder`, `step`) for
    each further level. Rows are beams; row r of every tensor and of the state is the same beam.
    """

    def start(self, batch_size: int) -> State:
        """Encode the batch once; the returned state has one row per user (B rows)."""
        ...

    def step(self, state: State, prefix: Tensor) -> tuple[Tensor, State]:
        """`prefix: (R, l)` codes chosen so far -> (log-probs (R, K_l) over level l, state).

        Return log_softmax over the level's whole codebook; the search masks invalid codes
        itself and does not renormalise, so scores stay the model's true log-probabilities.
        A KV-cached model only needs `prefix[:, -1]` (for l > 0).
        """
        ...

    def reorder(self, state: State, rows: Tensor) -> State:
        """Gather state rows: `rows: (R',)` indexes the current R rows; R' may exceed R.

        After level 0 this expands each user's single row into its beams, so everything the
        state holds per row (encoder memory, KV cache, latents) must be gathered here.
        """
        ...


class _Beams(NamedTuple):
    scores: Tensor  # (B, W) summed log-probs of each beam's prefix, -inf for dead beams
    prefix: Tensor  # (B*W, l) codes chosen so far, row b*W + w
    cstate: ConstraintState  # constraint state, same row order as prefix


@torch.no_grad()
def constrained_beam_search(
    stepper: Stepper, constraint: Constraint, batch_size: int, beam_width: int, top_k: int
) -> tuple[Tensor, Tensor]:
    """Top-`top_k` catalog items per user by summed log-probability of their SIDs.

    `constraint` is a `Trie` (fast) or any `Constraint` filled left to right. Returns
    `item_ids: (B, top_k)` long and `log_probs: (B, top_k)` float32, sorted descending. Items
    are distinct, because every live beam is a distinct SID prefix. A code the constraint
    forbids gets -inf, so an invalid SID is never returned; beams without a valid continuation
    die (-inf) and live beams replace them. Items the model gives probability zero (-inf) are
    not returned either. When fewer than `top_k` items are left, the tail is padded with item
    id -1 and score -inf. Runs on the device of the stepper's log-probs.
    """
    _check_search_args(batch_size, beam_width, top_k)
    state = stepper.start(batch_size)
    empty_prefix = torch.zeros(batch_size, 0, dtype=torch.long, device=constraint.device)
    log_probs, state = stepper.step(state, empty_prefix)  # (B, K_0)
    constraint = constraint.to(log_probs.device)  # follow the model's device
    beams = _Beams(
        scores=torch.zeros(batch_size, 1, device=log_probs.device),
        prefix=empty_prefix.to(log_probs.device),
        cstate=constraint.root(batch_size),
    )
    n_levels = len(constraint.codebook_sizes)
    for level in range(n_levels):
        beams, parents = _extend_beams(beams, log_probs, constraint, level, beam_width)
        if level + 1 < n_levels:
            state = stepper.reorder(state, parents)
            log_probs, state = stepper.step(state, beams.prefix)  # (B*W, K_l)
    return _finished_items(beams, constraint, top_k)


def _extend_beams(
    beams: _Beams, log_probs: Tensor, constraint: Constraint, level: int, beam_width: int
) -> tuple[_Beams, Tensor]:
    """Score every (beam, valid code) pair and keep each user's best `beam_width`."""
    batch_size, width = beams.scores.shape
    k = constraint.codebook_sizes[level]
    _check_log_probs(log_probs, batch_size * width, k, level)
    allowed = constraint.valid_next(beams.cstate, level)  # (B*W, K)
    step_log_probs = log_probs.float().masked_fill(~allowed, float("-inf"))  # (B*W, K)
    candidates = beams.scores.reshape(-1, 1) + step_log_probs  # (B*W, K)
    candidates = candidates.view(batch_size, width * k)  # (B, W*K), beam-major per user
    # With W*K < beam_width (early levels) keep them all rather than invent padding beams.
    scores, flat = candidates.topk(min(beam_width, width * k), dim=1)  # (B, W'), sorted
    users = torch.arange(batch_size, device=flat.device)[:, None]  # (B, 1)
    parents = (users * width + flat // k).reshape(-1)  # (B*W',) rows of the previous beams
    codes = (flat % k).reshape(-1)  # (B*W',)
    cstate = constraint.advance(constraint.select(beams.cstate, parents), level, codes)
    prefix = torch.cat([beams.prefix[parents], codes[:, None]], dim=1)  # (B*W', l+1)
    return _Beams(scores=scores, prefix=prefix, cstate=cstate), parents


def _finished_items(beams: _Beams, constraint: Constraint, top_k: int) -> tuple[Tensor, Tensor]:
    batch_size, width = beams.scores.shape
    items = constraint.item_ids(beams.cstate).view(batch_size, width)  # (B, W)
    dead = torch.isneginf(beams.scores) | (items < 0)
    items = items.masked_fill(dead, -1)
    scores = beams.scores.masked_fill(dead, float("-inf"))
    return _pad_columns(items[:, :top_k], scores[:, :top_k], top_k)


@torch.no_grad()
def teacher_forced_log_probs(stepper: Stepper, sids: Tensor, batch_size: int) -> Tensor:
    """Plain reference: (B, N_items) summed log-probability of every catalog SID per user.

    Feeds each item's codes one level at a time through the same `Stepper` calls the search
    makes, one row per (user, item) pair, so it is exact but costs B*N_items rows per step.
    """
    sids = torch.as_tensor(sids, dtype=torch.long)
    n_items, n_levels = sids.shape
    state = stepper.start(batch_size)
    log_probs, state = stepper.step(state, sids.new_zeros(batch_size, 0))  # (B, K_0)
    sids = sids.to(log_probs.device)
    total = log_probs.float()[:, sids[:, 0]]  # (B, N)
    # Row b*N + i scores item i for user b.
    rows = torch.arange(batch_size, device=sids.device).repeat_interleave(n_items)  # (B*N,)
    state = stepper.reorder(state, rows)
    targets = sids.repeat(batch_size, 1)  # (B*N, L)
    for level in range(1, n_levels):
        log_probs, state = stepper.step(state, targets[:, :level])  # (B*N, K_l)
        picked = log_probs.float().gather(1, targets[:, level : level + 1])  # (B*N, 1)
        total = total + picked.view(batch_size, n_items)
    return total


def brute_force_topk(
    score_fn: Callable[[Tensor], Tensor], sids: Tensor, top_k: int
) -> tuple[Tensor, Tensor]:
    """Exact top-`top_k` items from `score_fn(sids) -> (B, N_items)` log-probabilities.

    Same output contract as `constrained_beam_search` (-1 / -inf padding, items with -inf
    score not returned), e.g. with
    `score_fn = lambda s: teacher_forced_log_probs(stepper, s, batch_size)`.
    """
    scores = score_fn(sids).float()  # (B, N)
    top_scores, items = scores.topk(min(top_k, scores.shape[1]), dim=1)  # (B, k)
    items = items.masked_fill(torch.isneginf(top_scores), -1)
    return _pad_columns(items, top_scores, top_k)


def _pad_columns(items: Tensor, scores: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    missing = top_k - items.shape[1]
    if missing > 0:
        items = torch.nn.functional.pad(items, (0, missing), value=-1)
        scores = torch.nn.functional.pad(scores, (0, missing), value=float("-inf"))
    return items, scores


def _check_search_args(batch_size: int, beam_width: int, top_k: int) -> None:
    for field, value in (("batch_size", batch_size), ("beam_width", beam_width), ("top_k", top_k)):
        if value < 1:
            raise GenrecConfigError(field, f"must be at least 1, got {value}")
    if top_k > beam_width:
        raise GenrecConfigError(
            "top_k",
            f"top_k={top_k} exceeds beam_width={beam_width}; beam search can only return "
            "as many items as it keeps beams, so raise beam_width to at least top_k",
        )


def _check_log_probs(log_probs: Tensor, n_rows: int, k: int, level: int) -> None:
    if tuple(log_probs.shape) != (n_rows, k):
        raise ValueError(
            f"Stepper.step returned log-probs of shape {tuple(log_probs.shape)} at SID level "
            f"{level}; expected ({n_rows}, {k}) = (rows of the prefix, codebook size). Build "
            "the trie with the model's codebook_sizes if they differ"
        )
