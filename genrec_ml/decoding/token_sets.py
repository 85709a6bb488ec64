"""The catalog constraint for decoders that fill an item's positions in any order (REG4Rec's CRSS).

`CatalogConstraint` answers the same questions with a dense `(R, N_items)` mask per beam and is
the reference; this one keeps each beam's *candidate list*: the ids of the catalog items still
consistent with the (position, code) pairs filled so far, padded with -1 and compacted after
every step. Before the first step no list is stored (every item is a candidate: `SetState.items`
is None); the first choice (p, c) reads the posting list of code c at position p from an inverted
index, about N / K items. From then on a step costs O(R * C) gathers, C the longest list, instead
of O(R * N) (tested equal to the reference).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import torch
from torch import Tensor

from genrec_ml.decoding.sids import validate_sids


@dataclass(frozen=True)
class SetState:
    items: Tensor | None  # (R, C) candidate item ids, -1 = none; None: every item (no choice yet)
    rows: int


@dataclass(frozen=True)
class TokenSetConstraint:
    """Per beam, the items still consistent with its filled (position, code) pairs; any fill order."""

    sids: Tensor  # (N_items, L) long, validated
    codebook_sizes: tuple[int, ...]
    postings: Tensor  # (L, N) item ids sorted by their code at each position
    starts: Tensor  # (L, K_max + 1) where code c's items begin in postings[l]
    present: Tensor  # (L, K_max) bool: some item has code c at position l

    @classmethod
    def from_sids(cls, sids: Tensor, codebook_sizes: tuple[int, ...] | None = None) -> TokenSetConstraint:
        """Same checks and item numbering (row = item id) as `Trie.from_sids`."""
        sids, codebook_sizes = validate_sids(sids, codebook_sizes)
        k_max = max(codebook_sizes)
        postings = torch.argsort(sids.T, dim=1, stable=True)  # (L, N)
        counts = torch.stack([torch.bincount(column, minlength=k_max) for column in sids.T])  # (L, K_max)
        starts = torch.cat([torch.zeros(len(counts), 1, dtype=torch.long), counts.cumsum(dim=1)], dim=1)
        return cls(sids, codebook_sizes, postings, starts, counts > 0)

    @property
    def device(self) -> torch.device:
        return self.sids.device

    def to(self, device: torch.device | str) -> TokenSetConstraint:
        return replace(self, sids=self.sids.to(device), postings=self.postings.to(device),
                       starts=self.starts.to(device), present=self.present.to(device))

    def root(self, n_rows: int) -> SetState:
        return SetState(None, n_rows)

    def _codes(self, items: Tensor, position: int | Tensor) -> Tensor:
        """(R, C) code at `position` (one int, or one per row) of every candidate; dead slots read item 0."""
        column = position if isinstance(position, int) else torch.as_tensor(position, device=self.device)[:, None]
        return self.sids[items.clamp(min=0), column]  # (R, C)

    def valid_next(self, state: SetState, position: int) -> Tensor:
        k = self.codebook_sizes[position]
        if state.items is None:
            return self.present[position, :k].expand(state.rows, -1)
        codes = self._codes(state.items, position).masked_fill(state.items < 0, k)  # dead slots -> spare column k
        valid = torch.zeros(state.rows, k + 1, dtype=torch.bool, device=self.device)
        return valid.scatter_(1, codes, True)[:, :k]  # (R, K_p)

    def advance(self, state: SetState, position: int | Tensor, codes: Tensor) -> SetState:
        codes = codes.to(self.device)
        if state.items is None:
            return SetState(self._postings(position, codes), len(codes))
        keep = (state.items >= 0) & (self._codes(state.items, position) == codes[:, None])  # (R, C)
        return SetState(_compact(state.items, keep), state.rows)

    def _postings(self, position: int | Tensor, codes: Tensor) -> Tensor:
        """(R, C) the items with code `codes[r]` at `position` (per row), -1 padded."""
        positions = torch.as_tensor(position, device=self.device).expand_as(codes)
        valid = (codes >= 0) & (codes < self.starts.shape[1] - 1)
        codes = codes.clamp(0, self.starts.shape[1] - 2)
        start, end = self.starts[positions, codes], self.starts[positions, codes + 1]
        end = torch.where(valid, end, start)  # an out-of-range code has no items
        width = max(int((end - start).max()) if len(codes) else 0, 1)
        offsets = start[:, None] + torch.arange(width, device=self.device)  # (R, C)
        inside = offsets < end[:, None]
        items = self.postings[positions[:, None], offsets.clamp(max=self.postings.shape[1] - 1)]
        return items.masked_fill(~inside, -1)

    def select(self, state: SetState, rows: Tensor) -> SetState:
        rows = rows.to(self.device)
        return SetState(None if state.items is None else state.items[rows], len(rows))

    def state_keys(self, state: SetState) -> Tensor:
        """(R,) int64 key of each row's set of consistent items: equal sets, equal keys."""
        if state.items is None:
            everything = torch.arange(len(self.sids), device=self.device)[None]
            return set_hash(torch.ones_like(everything, dtype=torch.bool), everything).expand(state.rows)
        return set_hash(state.items >= 0, state.items.clamp(min=0))

    def item_ids(self, state: SetState) -> Tensor:
        if state.items is None:
            return torch.full((state.rows,), 0 if len(self.sids) == 1 else -1, device=self.device)
        exactly_one = (state.items >= 0).sum(dim=1) == 1
        return torch.where(exactly_one, state.items.max(dim=1).values, -1)  # (R,)


def _compact(items: Tensor, keep: Tensor) -> Tensor:
    """Kept candidates first (in their order), -1 elsewhere, cut to the longest kept list."""
    width = max(int(keep.sum(dim=1).max()) if keep.numel() else 0, 1)
    first = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    return torch.where(keep, items, -1).gather(1, first)  # (R, C')


_HASH_SEED = 20260101


def set_hash(member: Tensor, items: Tensor) -> Tensor:
    """(R,) order-free key of the item sets {items[r, c] : member[r, c]}: a sum of per-item random
    62-bit words (int64 arithmetic wraps). Two different sets share a key with probability about
    2^-62, which the search accepts for a single sort instead of comparing candidate lists."""
    words = _item_words(int(items.max()) + 1 if items.numel() else 1, items.device)
    return torch.where(member, words[items], 0).sum(dim=1)


@lru_cache(maxsize=8)
def _item_words(n: int, device: torch.device) -> Tensor:
    """The same words for every call with (n, device): drawn once, not at every search step."""
    generator = torch.Generator().manual_seed(_HASH_SEED)
    return torch.randint(0, 2**62, (n,), generator=generator, dtype=torch.int64).to(device)
