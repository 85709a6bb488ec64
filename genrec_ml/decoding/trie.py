"""The catalog's SID prefix trie, flattened into one dense child table per level."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from genrec_ml.decoding.sids import validate_sids


@dataclass(frozen=True)
class Trie:
    """Prefix trie over the catalog's SIDs, fast path of `Constraint` for left-to-right decoding.

    Level-l nodes are the distinct SID prefixes of length l; the root is node 0 of level 0.
    `children[l][node, code]` is the level-(l+1) node reached by appending `code`, or -1 when
    no item has that prefix. At the last level the child *is* the item row: SIDs are unique, so
    a full SID names exactly one item. The valid-next mask of a batch of nodes is then one
    gather, `children[l][nodes] >= 0`, with no per-beam Python loop.

    State is `nodes: (R,) long`, -1 for a dead row. Memory is sum_l n_nodes_l * K_l int32
    entries (int32 halves the int64 cost); the last level dominates with about
    (#distinct length-(L-1) prefixes) * K_{L-1} * 4 bytes.
    """

    children: tuple[Tensor, ...]  # children[l]: (n_nodes_l, K_l) int32
    codebook_sizes: tuple[int, ...]

    @classmethod
    def from_sids(cls, sids: Tensor, codebook_sizes: tuple[int, ...] | None = None) -> Trie:
        """Build from `sids: (N_items, L)`; item ids are row numbers.

        Raises GenrecDataError for duplicate SIDs (naming both rows) or out-of-range codes
        (naming row and level). Pass `codebook_sizes` (the model's K_l) when the catalog does
        not use every code, so the masks have the model's width.
        """
        sids, codebook_sizes = validate_sids(sids, codebook_sizes)
        n_items, n_levels = sids.shape
        # node_of[l][i]: level-l node of item i's length-l prefix; the leaves are the items.
        node_of = [_prefix_node_ids(sids, level) for level in range(n_levels)]
        node_of.append(torch.arange(n_items, device=sids.device))
        children = tuple(
            _child_table(node_of[level], node_of[level + 1], sids[:, level], k)
            for level, k in enumerate(codebook_sizes)
        )
        return cls(children=children, codebook_sizes=codebook_sizes)

    @property
    def device(self) -> torch.device:
        return self.children[0].device

    def to(self, device: torch.device | str) -> Trie:
        return replace(self, children=tuple(table.to(device) for table in self.children))

    def root(self, n_rows: int) -> Tensor:
        return torch.zeros(n_rows, dtype=torch.long, device=self.device)

    def valid_next(self, nodes: Tensor, position: int) -> Tensor:
        # Dead rows (-1) read the root's row through clamp, then get masked out entirely.
        next_nodes = self.children[position][nodes.clamp(min=0)]  # (R, K_l)
        return (next_nodes >= 0) & (nodes >= 0)[:, None]

    def advance(self, nodes: Tensor, position: int | Tensor, codes: Tensor) -> Tensor:
        if not isinstance(position, int):
            raise TypeError(
                "Trie fills SID positions left to right (one int position per step); "
                "use CatalogConstraint for a per-row fill order"
            )
        child = self.children[position][nodes.clamp(min=0), codes].long()  # (R,)
        return torch.where(nodes >= 0, child, -1)

    def select(self, nodes: Tensor, rows: Tensor) -> Tensor:
        return nodes[rows]

    def item_ids(self, nodes: Tensor) -> Tensor:
        return nodes  # after the last level a node id is the item row (or -1 when dead)


def _prefix_node_ids(sids: Tensor, length: int) -> Tensor:
    """(N,) node id of each item's length-`length` prefix, numbered 0..n_prefixes-1."""
    if length == 0:
        return torch.zeros(sids.shape[0], dtype=torch.long, device=sids.device)
    return torch.unique(sids[:, :length], dim=0, return_inverse=True)[1]


def _child_table(parent: Tensor, child: Tensor, codes: Tensor, k: int) -> Tensor:
    """(n_parents, K) table, child node per (parent node, code), -1 where no item goes."""
    table = torch.full((int(parent.max()) + 1, k), -1, dtype=torch.int32, device=parent.device)
    # Items sharing a (parent, code) share the child prefix too, so repeated writes agree.
    table[parent, codes] = child.to(torch.int32)
    return table
