"""What a decoder may emit next, as a small protocol over batched tensor state.

A *constraint* keeps one state row per beam and answers two questions without any per-beam
Python loop: which codes may fill a given SID position next (`valid_next`), and which item a
finished row spells (`item_ids`). Beam search talks to it only through `Constraint`, so the
same search runs on the fast `Trie` (left-to-right order) or on `CatalogConstraint`, the plain
reference that checks every catalog item and works in any fill order.

How an unordered-set decoder (REG4Rec) reuses this: a SID there is a set of (position, code)
pairs filled in an order chosen at decode time. `CatalogConstraint` keeps, per beam, the set of
catalog items still consistent with the pairs filled so far, so it does not care about the
order. At each step the decoder asks `valid_next(state, p)` for every unfilled position `p`,
masks that position's log-probs with it, picks per beam the (position, code) pair it is most
confident about, and calls `advance(state, positions, codes)` with a per-row position tensor.
A finished row has exactly one consistent item, which `item_ids` returns. The `Trie` fixes the
order 0, 1, ..., L-1 and is the fast path for TIGER, S²GR, CARE and LASAR; a large-catalog
REG4Rec would want a packed-bitset variant of `CatalogConstraint`, tested against this one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from torch import Tensor

from genrec_ml.decoding.sids import validate_sids

ConstraintState = Any  # each constraint chooses its own per-row tensor(s)


class Constraint(Protocol):
    """Which codes may come next, kept as one state row per beam."""

    codebook_sizes: tuple[int, ...]  # K_l for each SID position l

    @property
    def device(self) -> torch.device: ...

    def to(self, device: torch.device | str) -> Constraint: ...

    def root(self, n_rows: int) -> ConstraintState:
        """State of `n_rows` beams with no code chosen yet."""
        ...

    def valid_next(self, state: ConstraintState, position: int) -> Tensor:
        """(R, K_position) bool: True where the code keeps the row inside the catalog."""
        ...

    def advance(
        self, state: ConstraintState, position: int | Tensor, codes: Tensor
    ) -> ConstraintState:
        """Fill `position` with `codes` (R,) in every row; invalid choices make the row dead."""
        ...

    def select(self, state: ConstraintState, rows: Tensor) -> ConstraintState:
        """Gather state rows (R',) -- the beams that survive a step."""
        ...

    def item_ids(self, state: ConstraintState) -> Tensor:
        """(R,) item row spelled by each finished row, -1 for dead rows."""
        ...


@dataclass(frozen=True)
class CatalogConstraint:
    """Plain reference constraint: per beam, a mask over the items still consistent with it.

    State is `alive: (R, N_items) bool`. Cost is O(R * N_items) per step, so it serves as the
    reference for `Trie` and for moderate catalogs, in any fill order.
    """

    sids: Tensor  # (N_items, L) long, validated
    codebook_sizes: tuple[int, ...]

    @classmethod
    def from_sids(
        cls, sids: Tensor, codebook_sizes: tuple[int, ...] | None = None
    ) -> CatalogConstraint:
        """Same checks and item numbering (row = item id) as `Trie.from_sids`."""
        sids, codebook_sizes = validate_sids(sids, codebook_sizes)
        return cls(sids=sids, codebook_sizes=codebook_sizes)

    @property
    def device(self) -> torch.device:
        return self.sids.device

    def to(self, device: torch.device | str) -> CatalogConstraint:
        return replace(self, sids=self.sids.to(device))

    def root(self, n_rows: int) -> Tensor:
        return torch.ones(n_rows, self.sids.shape[0], dtype=torch.bool, device=self.sids.device)

    def valid_next(self, alive: Tensor, position: int) -> Tensor:
        one_hot = torch.nn.functional.one_hot(
            self.sids[:, position], self.codebook_sizes[position]
        )  # (N, K_p)
        # A code is valid when at least one still-alive item carries it at this position.
        return (alive.float() @ one_hot.float()) > 0  # (R, K_p)

    def advance(self, alive: Tensor, position: int | Tensor, codes: Tensor) -> Tensor:
        # int position -> (N,) codes shared by all rows; (R,) positions -> (R, N), one per row.
        item_codes = self.sids.T[position]
        return alive & (item_codes == codes[:, None])  # (R, N)

    def select(self, alive: Tensor, rows: Tensor) -> Tensor:
        return alive[rows]

    def state_keys(self, alive: Tensor) -> Tensor:
        """(R,) int64 key of each row's set of alive items (see `token_sets.set_hash`)."""
        from genrec_ml.decoding.token_sets import set_hash

        items = torch.arange(alive.shape[1], device=alive.device).expand_as(alive)
        return set_hash(alive, items)

    def item_ids(self, alive: Tensor) -> Tensor:
        exactly_one = alive.sum(dim=1) == 1
        return torch.where(exactly_one, alive.long().argmax(dim=1), -1)  # (R,)
