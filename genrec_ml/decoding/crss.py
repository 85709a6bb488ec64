"""CRSS: beam search over unordered token sets, the most confident codebook first (REG4Rec §3.3.2, §3.5).

An item is M tokens, one per parallel codebook, plus the disambiguation code that tells apart items
sharing all M (filled last, as the codebook asset appends it). Positions 0..M-1 are free: at every
step the model scores every code of every still-open codebook (per-codebook log-softmax) and

    c_j = argmax over open codebooks k, codes c of  S_k(c)                          (eq. 5)

fills that codebook, which then closes. With beams, every (beam, open codebook, valid code) triple
is a candidate scored by the beam's summed log-probability plus log S_k(c), and each user keeps the
best W: with W = 1 this is eq. 5 exactly, wider beams keep the runners-up, whichever codebook they
fill. Valid means "some catalog item still has every code chosen so far" (`TokenSetConstraint`),
so every returned set is an item.

One item reached through two orders (a then b, b then a) is one result. The search recombines
beams at every step, as a phrase-based MT decoder recombines hypotheses: beams that can still
become exactly the same catalog items (equal sets of consistent items, `Constraint.state_keys`)
are one beam, the best-scoring path kept. That covers the same token set reached in two orders and
also {a, b} and {a, c} when both leave only item {a, b, c, ...}; so the beams hold W candidates that
can end as different items, and an item is returned once, with its best path's score.
Recombination is approximate: two orders leave different decoder states, and the best path so
far need not lead to the best completion (the reference, `brute_force_set_topk`, has the same
definition without a beam limit). The search takes 2W(j+1) candidates at step j before
recombining; if recombination leaves fewer, fewer beams go on.

CORP (§3.5): the model also gives a category distribution p̃_j at every step (`Stepper.step`). Every
`every`-th step a beam is checked: JS(p̃_j ‖ p̃_{j-every}) > threshold (natural log, as the reward's
JS) ends the path, and the search "rolls back to an earlier step for regeneration": the next
candidates take its place. Candidates are ranked consistent first (by score), so a pruned path
survives only where fewer consistent candidates than beams exist, and then below every consistent
one, in the beams and in the returned list. Late in a search each beam's prefix already names one
item, so a pruned beam has no consistent sibling; dropping it outright (as a first version did)
emptied the beams (3.6 of 10 results per user on amazon-beauty). Keeping it as the last resort
means the search returns as many items as without CORP and puts the paths that failed the check
after the ones that passed; the paper only says the path ends and regenerates, so this is our
reading for a fixed-width beam. The search carries W spare beams (run through the decoder,
expanded only when needed) to have consistent replacements at hand. The paper leaves s open;
every = 1 checks consecutive steps, eq. 13's pairs. The returned `log_probs` are each path's
score; with CORP they fall within the consistent results and within the pruned ones.

Renormalised scores (`renormalise=True`): each open codebook's log-probs are renormalised over the
codes the catalog still allows on the beam before they are added, log S_k(c) - log Σ_{c' allowed}
S_k(c'). The paper does not say whether S is constrained; we follow constrained decoding's reading of
"confidence among the valid choices". It matters for parallel codebooks: once a prefix names a single
item its remaining codes are forced, and the raw scores would add the model's guess of them (on
amazon-beauty after pre-training: about -5 nats per step, near uniform over 300 codes, as the model has
not memorised which codes complete each item) as noise to every path, while renormalised they add 0
and the ranking rests on the steps that chose between items. A forced code also becomes the most
confident candidate (score 0), so CRSS fills forced codebooks before open choices.

`dynamic=False` is "w/o CRSS": positions are filled in the fixed order 0, 1, ..., L-1 (the search is
then ordinary left-to-right beam search, and the reference of its tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from genrec_ml.decoding.beam_search import _check_search_args, _pad_columns
from genrec_ml.decoding.constraint import Constraint

NEG_INF = float("-inf")


class SetStepper(Protocol):
    """How CRSS drives a model. Rows are beams; row r of every tensor and of the state is one beam."""

    def start(self, batch_size: int) -> Any:
        """Encode the batch; the state has one row per user."""
        ...

    def step(self, state: Any, positions: Tensor | None, codes: Tensor | None) -> tuple[Tensor, Tensor | None, Any]:
        """Feed each row's last choice (`positions`, `codes`: (R,), None at the first step) and return
        `log_probs: (R, L, K_max)`, every position's log-softmax over its own codes (-inf past K_l),
        and the category log-probs `(R, G)` of this step (None: no category head, CORP cannot run)."""
        ...

    def reorder(self, state: Any, rows: Tensor) -> Any:
        """Gather state rows `rows: (R',)`."""
        ...


@dataclass(frozen=True)
class Corp:
    threshold: float = 0.06  # θ (REG4Rec §4.1)
    every: int = 1  # s: check p̃_j against p̃_{j-s} at every s-th step


@dataclass
class SearchStats:
    """What CORP did over one or more searches."""

    checked: int = 0  # live consistent beams whose consistency was checked
    pruned: int = 0  # of those, paths that failed the check (ended; kept only as the last resort)
    step_positions: Tensor | None = None  # (L, L) top-1 paths that filled position p at step j

    @property
    def pruned_share(self) -> float:
        return self.pruned / self.checked if self.checked else 0.0

    def count_orders(self, orders: Tensor) -> None:
        """Add the step orders `(B, L)` of returned paths (-1 rows, no result, are skipped)."""
        n_levels = orders.shape[1]
        orders = orders[(orders >= 0).all(dim=1)].cpu()
        counts = torch.zeros(n_levels, n_levels, dtype=torch.long)
        counts.index_put_((torch.arange(n_levels).expand_as(orders).reshape(-1), orders.reshape(-1)),
                          torch.ones(orders.numel(), dtype=torch.long), accumulate=True)
        self.step_positions = counts if self.step_positions is None else self.step_positions + counts


class SetSearchResult(NamedTuple):
    item_ids: Tensor  # (B, top_k) long, -1 where fewer items were reachable
    log_probs: Tensor  # (B, top_k) summed log-probabilities, -inf padding
    orders: Tensor  # (B, top_k, L) position filled at each step of each result's path


def js_divergence_log(log_p: Tensor, log_q: Tensor) -> Tensor:
    """(..., G) log-distributions -> (...) Jensen-Shannon divergence, natural log."""
    p, q = log_p.exp(), log_q.exp()
    log_m = torch.logaddexp(log_p, log_q) - torch.log(torch.tensor(2.0, device=log_p.device))
    kl_pm = torch.where(p > 0, p * (log_p - log_m), 0.0).sum(-1)
    kl_qm = torch.where(q > 0, q * (log_q - log_m), 0.0).sum(-1)
    return 0.5 * (kl_pm + kl_qm)


@torch.no_grad()
def crss_beam_search(stepper: SetStepper, constraint: Constraint, batch_size: int, beam_width: int, top_k: int, *,
                     dynamic: bool = True, corp: Corp | None = None, stats: SearchStats | None = None,
                     renormalise: bool = False) -> SetSearchResult:
    """Top-`top_k` catalog items per user; the last position of `constraint` is filled last."""
    _check_search_args(batch_size, beam_width, top_k)
    sizes = constraint.codebook_sizes
    n_levels, k_max = len(sizes), max(sizes)
    n_free = max(n_levels - 1, 1)
    state = stepper.start(batch_size)
    scores = torch.zeros(batch_size, 1)  # (B, w) per-user beams
    filled = torch.full((batch_size, n_levels), -1, dtype=torch.long)  # (R, L) code per position, -1 open
    orders = torch.zeros(batch_size, 0, dtype=torch.long)  # (R, j) position filled at each step
    flagged = torch.zeros(batch_size, 1, dtype=torch.bool)  # (B, w) paths CORP ended (kept as last resort)
    cstate, history, last = constraint.root(batch_size), [], (None, None)
    for step in range(n_levels):
        log_probs, category, state = stepper.step(state, *last)  # (R, L, K_max), (R, G) | None
        device = log_probs.device
        scores, flagged = scores.to(device), flagged.to(device)
        filled, orders = filled.to(device), orders.to(device)
        if corp is not None and category is not None:
            history.append(category.float())
            if step >= corp.every and step % corp.every == 0:
                flagged = _check(scores, flagged, js_divergence_log(history[-1], history[-1 - corp.every]), corp,
                                 stats)
        # W beams, plus W spare ones until the last step: they replace beams CORP prunes and fill in
        # when recombination leaves the beams' continuations fewer than W distinct candidates
        keep = beam_width * (2 if step < n_levels - 1 else 1)
        recombine = dynamic and step < n_free
        n_take = keep * (min(step + 1, n_free) if recombine else 1)
        first = _first_beams(scores, flagged, beam_width)
        spare = ~first & torch.isfinite(scores)
        step_scores = _step_scores(log_probs.float(), filled, constraint, cstate, step, n_free, dynamic, k_max,
                                   renormalise)  # (R, L * K_max): once per step, whatever the groups
        expand = partial(_expand, step_scores=step_scores, n_levels=n_levels, k_max=k_max, n=n_take)
        # candidates in priority order: the first beams', then the spares' (each consistent paths
        # before pruned ones); a group is expanded only where the ones before it leave users short
        groups = [first & ~flagged, spare & ~flagged, first & flagged, spare & flagged]
        parts = []
        for number, group in enumerate(groups):
            if number and not bool(group.any()):
                continue
            parts.append(expand(scores.masked_fill(~group, NEG_INF)))  # best first within the group
            top, parents, positions, codes = (torch.cat(column, dim=1) for column in zip(*parts, strict=True))
            grown = constraint.advance(constraint.select(cstate, parents.reshape(-1)), positions.reshape(-1),
                                       codes.reshape(-1))
            usable = torch.isfinite(top)
            if recombine:  # the first copy in priority order is kept: a consistent path before a pruned one
                usable &= ~_duplicates(constraint.state_keys(grown).view_as(top), usable)
            if bool((usable.sum(dim=1) >= keep).all()):
                break
        pick = torch.argsort((~usable).to(torch.int8), dim=1, stable=True)[:, :keep]  # usable first, in order
        top = top.gather(1, pick).masked_fill(~usable.gather(1, pick), NEG_INF)
        users = torch.arange(batch_size, device=device)[:, None]
        cstate = constraint.select(grown, (users * usable.shape[1] + pick).reshape(-1))
        parents, positions, codes = (t.gather(1, pick) for t in (parents, positions, codes))
        rows = parents.reshape(-1)
        scores, flagged = top, flagged.reshape(-1)[rows].view_as(top)
        filled = filled[rows].scatter(1, positions.reshape(-1, 1), codes.reshape(-1, 1))
        orders = torch.cat([orders[rows], positions.reshape(-1, 1)], dim=1)
        history = [h[rows] for h in history]
        last = (positions.reshape(-1), codes.reshape(-1))
        if step < n_levels - 1:
            state = stepper.reorder(state, rows)
    return _results(scores, flagged, constraint.item_ids(cstate), orders, top_k)


def _check(scores: Tensor, flagged: Tensor, js: Tensor, corp: Corp, stats: SearchStats | None) -> Tensor:
    """Flag the live consistent beams whose category distribution moved more than θ; `(B, w)` flags."""
    live = torch.isfinite(scores) & ~flagged
    bad = live & (js.view_as(scores) > corp.threshold)
    if stats is not None:
        stats.checked += int(live.sum())
        stats.pruned += int(bad.sum())
    return flagged | bad


def _ranked(scores: Tensor, flagged: Tensor) -> Tensor:
    """(B, w) beam indices per user, best first: consistent beams by score, then pruned ones, then dead ones."""
    order = scores.argsort(dim=1, descending=True, stable=True)
    group = torch.where(torch.isfinite(scores), flagged.to(torch.int8), 2)  # 0 consistent, 1 pruned, 2 dead
    return order.gather(1, group.gather(1, order).argsort(dim=1, stable=True))


def _first_beams(scores: Tensor, flagged: Tensor, beam_width: int) -> Tensor:
    """(B, w) True on each user's `beam_width` best live beams (consistent first); the rest are spares."""
    rank = _ranked(scores, flagged).argsort(dim=1)  # (B, w)
    return (rank < beam_width) & torch.isfinite(scores)


def _expand(scores: Tensor, step_scores: Tensor, n_levels: int, k_max: int, n: int
            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The best `n` (beam, position, code) candidates per user of the beams with finite `scores`:
    `(scores, parent rows, positions, codes)`, each (B, n'), best first."""
    batch_size, width = scores.shape
    candidates = (scores.reshape(-1, 1) + step_scores).view(batch_size, -1)  # (B, w * L * K_max)
    top, flat = candidates.topk(min(n, candidates.shape[1]), dim=1)
    users = torch.arange(batch_size, device=flat.device)[:, None]
    return top, users * width + flat // (n_levels * k_max), (flat // k_max) % n_levels, flat % k_max


def _step_scores(log_probs: Tensor, filled: Tensor, constraint: Constraint, cstate, step: int, n_free: int,
                 dynamic: bool, k_max: int, renormalise: bool = False) -> Tensor:
    """(R, L * K_max) what filling (position, code) adds to each beam's score, -inf where not allowed;
    with `renormalise`, each position's log-probs renormalised over its allowed codes first."""
    rows, n_levels = filled.shape
    if step >= n_free:
        open_positions = [n_levels - 1]
    else:
        open_positions = list(range(n_free)) if dynamic else [step]
    found = torch.full((rows, n_levels, k_max), NEG_INF, device=log_probs.device)
    for position in open_positions:
        k = constraint.codebook_sizes[position]
        allowed = constraint.valid_next(cstate, position).to(log_probs.device) & (filled[:, position] < 0)[:, None]
        step_scores = log_probs[:, position, :k].masked_fill(~allowed, NEG_INF)  # (R, K)
        if renormalise:  # rows with no allowed code stay -inf (logsumexp -inf is replaced by 0)
            step_scores = step_scores - step_scores.logsumexp(dim=1, keepdim=True).nan_to_num(neginf=0.0)
        found[:, position, :k] = step_scores
    return found.view(rows, -1)


def _duplicates(keys: Tensor, live: Tensor) -> Tensor:
    """(B, n) candidate keys, best candidate first, and which are live -> (B, n) True where an earlier live
    candidate has the same key.

    Live candidates are moved first (stably), then a stable sort by key keeps equal keys in score
    order with the live ones leading, so every entry equal to a live predecessor is a worse copy; a
    dead candidate (its key is that of whatever state its -inf row reaches) shadows nothing.
    """
    by_life = (~live).to(torch.int8).argsort(dim=1, stable=True)  # (B, n)
    order = by_life.gather(1, keys.gather(1, by_life).argsort(dim=1, stable=True))
    ranked, ranked_live = keys.gather(1, order), live.gather(1, order)
    same = (ranked[:, 1:] == ranked[:, :-1]) & ranked_live[:, :-1]  # (B, n-1)
    return torch.zeros_like(same[:, :1]).expand(-1, keys.shape[1]).clone().scatter(1, order[:, 1:], same)


def _results(scores: Tensor, flagged: Tensor, items: Tensor, orders: Tensor, top_k: int) -> SetSearchResult:
    batch_size, width = scores.shape
    items = items.to(scores.device).view(batch_size, width)
    scores = scores.masked_fill(items < 0, NEG_INF)
    pick = _ranked(scores, flagged)[:, :top_k]  # (B, k) consistent results first
    best = scores.gather(1, pick)
    chosen = items.gather(1, pick).masked_fill(torch.isneginf(best), -1)
    paths = orders.view(batch_size, width, -1).gather(1, pick[..., None].expand(-1, -1, orders.shape[1]))
    chosen, best = _pad_columns(chosen, best, top_k)
    missing = top_k - paths.shape[1]
    if missing > 0:
        paths = torch.nn.functional.pad(paths, (0, 0, 0, missing), value=-1)
    return SetSearchResult(chosen, best, paths)


@torch.no_grad()
def brute_force_set_topk(stepper: SetStepper, sids: Tensor, batch_size: int, top_k: int, *, dynamic: bool = True,
                         corp: Corp | None = None, renormalise: bool = False) -> tuple[Tensor, Tensor]:
    """Plain reference of the search's definition, without a beam limit: python loops over sets.

    Per user, paths are grouped by the set of catalog items they can still become and each group
    keeps its best path (recombination, as the search does); a kept path is extended by every open
    position and valid code; CORP checks each consistent path after its decoder step and marks it
    pruned when it fails. Paths rank consistent first, then by score (in recombination and in the
    result). Each path is re-run through the stepper from the start, one row at a time: for tiny
    catalogs in tests.
    """
    sids = torch.as_tensor(sids, dtype=torch.long)
    n_levels = sids.shape[1]
    n_free = max(n_levels - 1, 1)
    items, scores = [], []
    for user in range(batch_size):
        frontier = {(): (True, 0.0)}  # path (tuple of (position, code)) -> (consistent, summed log-prob)
        for step in range(n_levels):
            grown: dict[frozenset, tuple[tuple[bool, float], tuple]] = {}
            for path, (consistent, score) in frontier.items():
                log_probs, history = _run_path(stepper, batch_size, user, path)
                if consistent and corp is not None and history and step >= corp.every and step % corp.every == 0:
                    consistent = float(js_divergence_log(history[step], history[step - corp.every])) <= corp.threshold
                filled = dict(path)
                if step >= n_free:
                    open_positions = [n_levels - 1]
                else:
                    open_positions = [p for p in range(n_free) if p not in filled] if dynamic else [step]
                consistent_items = [item for item in range(len(sids))
                                    if all(int(sids[item, p]) == c for p, c in filled.items())]
                for position in open_positions:
                    codes = sorted({int(sids[item, position]) for item in consistent_items})
                    norm = float(torch.logsumexp(log_probs[0, position, codes], dim=0)) if renormalise else 0.0
                    for item in consistent_items:
                        code = int(sids[item, position])
                        new_path = (*path, (position, code))
                        rank = (consistent, score + float(log_probs[0, position, code]) - norm)
                        key = frozenset(_items_of(sids, new_path)) if dynamic else new_path
                        if key not in grown or rank > grown[key][0]:
                            grown[key] = (rank, new_path)
            frontier = {path: rank for rank, path in grown.values()}
        found = sorted(((rank, _item_of(sids, path)) for path, rank in frontier.items()), reverse=True)[:top_k]
        items.append([item for _, item in found] + [-1] * (top_k - len(found)))
        scores.append([score for (_, score), _ in found] + [NEG_INF] * (top_k - len(found)))
    return torch.tensor(items), torch.tensor(scores)


@torch.no_grad()
def _run_path(stepper: SetStepper, batch_size: int, user: int, path: tuple) -> tuple[Tensor, list[Tensor]]:
    """Log-probs `(1, L, K_max)` after feeding `path` for one user, and its category log-probs per step."""
    state = stepper.start(batch_size)
    log_probs, category, state = stepper.step(state, None, None)
    row = torch.tensor([user], device=log_probs.device)
    state, log_probs = stepper.reorder(state, row), log_probs[row]
    history = [category[row].float()] if category is not None else []
    for position, code in path:
        log_probs, category, state = stepper.step(state, torch.tensor([position], device=row.device),
                                                  torch.tensor([code], device=row.device))
        if category is not None:
            history.append(category.float())
    return log_probs.float(), history


def _items_of(sids: Tensor, path: tuple) -> list[int]:
    filled = dict(path)
    return [i for i in range(len(sids)) if all(int(sids[i, p]) == c for p, c in filled.items())]


def _item_of(sids: Tensor, path: tuple) -> int:
    return _items_of(sids, path)[0]
