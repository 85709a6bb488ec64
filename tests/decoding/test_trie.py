"""Trie construction, validation, and parity of its masks with the catalog reference."""

import pytest
import torch

from genrec_ml.decoding import CatalogConstraint, Trie
from genrec_ml.errors import GenrecDataError


def test_hand_built_trie():
    trie = Trie.from_sids(torch.tensor([[0, 1], [0, 2], [1, 0]]))
    assert trie.codebook_sizes == (2, 3)
    # Root: code 0 -> prefix (0,) = node 0, code 1 -> prefix (1,) = node 1.
    assert trie.children[0].tolist() == [[0, 1]]
    # Prefix (0,): code 1 -> item 0, code 2 -> item 1. Prefix (1,): code 0 -> item 2.
    assert trie.children[1].tolist() == [[-1, 0, 1], [2, -1, -1]]


def test_explicit_codebook_sizes_widen_masks():
    trie = Trie.from_sids(torch.tensor([[0, 1], [1, 0]]), codebook_sizes=(4, 5))
    assert trie.children[0].shape == (1, 4)
    assert trie.children[1].shape == (2, 5)
    assert trie.valid_next(trie.root(1), 0).tolist() == [[True, True, False, False]]


def test_duplicate_sids_name_both_rows():
    sids = torch.tensor([[0, 1], [1, 1], [0, 2], [1, 1]])
    with pytest.raises(GenrecDataError, match=r"item rows 1 and 3 share the SID \(1, 1\)"):
        Trie.from_sids(sids)


@pytest.mark.parametrize("bad_code", [7, -1])
def test_out_of_range_code_names_row_and_level(bad_code):
    sids = torch.tensor([[0, 1, 0], [1, 0, 2], [1, bad_code, 1]])
    with pytest.raises(GenrecDataError, match="item row 2, level 1"):
        Trie.from_sids(sids, codebook_sizes=(2, 3, 3))


@pytest.mark.parametrize(
    ("sids", "sizes", "message"),
    [
        (torch.tensor([[0.0, 1.0]]), None, "integer codes"),
        (torch.tensor([0, 1]), None, r"\(N_items, L\) matrix"),
        (torch.zeros(0, 3, dtype=torch.long), None, r"\(N_items, L\) matrix"),
        (torch.tensor([[0, 1]]), (2,), "one positive size per SID level"),
    ],
)
def test_malformed_input_is_rejected(sids, sizes, message):
    with pytest.raises(GenrecDataError, match=message):
        Trie.from_sids(sids, codebook_sizes=sizes)


@pytest.mark.parametrize("seed", range(4))
def test_trie_masks_match_catalog_reference(seed, make_catalog):
    sizes = (3, 4, 3)
    sids = make_catalog(seed, sizes, n_items=14)
    trie, reference = Trie.from_sids(sids, sizes), CatalogConstraint.from_sids(sids, sizes)
    g = torch.Generator().manual_seed(100 + seed)
    n_rows = 64
    # Half the rows follow catalog items, half take random (often invalid) codes and die.
    paths = sids[torch.randint(len(sids), (n_rows,), generator=g)]  # (R, L)
    paths[::2] = torch.stack([torch.randint(k, (n_rows // 2,), generator=g) for k in sizes], 1)
    nodes, alive = trie.root(n_rows), reference.root(n_rows)
    for level in range(len(sizes)):
        assert torch.equal(trie.valid_next(nodes, level), reference.valid_next(alive, level))
        nodes = trie.advance(nodes, level, paths[:, level])
        alive = reference.advance(alive, level, paths[:, level])
    assert torch.equal(trie.item_ids(nodes), reference.item_ids(alive))
    assert (trie.item_ids(nodes)[1::2] >= 0).all()  # rows that followed an item find it


def test_catalog_constraint_fills_positions_in_any_order(make_catalog):
    """The REG4Rec use: each row fills SID positions in its own order."""
    sizes = (3, 4, 3)
    sids = make_catalog(0, sizes, n_items=14)
    reference = CatalogConstraint.from_sids(sids, sizes)
    g = torch.Generator().manual_seed(1)
    orders = torch.stack([torch.randperm(3, generator=g) for _ in sids])  # (N, L)
    alive = reference.root(len(sids))
    rows = torch.arange(len(sids))
    for step in range(3):
        positions = orders[:, step]  # (N,) a different position per row
        alive = reference.advance(alive, positions, sids[rows, positions])
    assert torch.equal(reference.item_ids(alive), rows)


def test_catalog_constraint_masks_after_filling_a_later_position():
    sids = torch.tensor([[0, 1], [2, 1], [1, 0]])
    reference = CatalogConstraint.from_sids(sids)
    alive = reference.advance(reference.root(1), 1, torch.tensor([1]))
    # Items with last code 1 are rows 0 and 1, whose first codes are 0 and 2.
    assert reference.valid_next(alive, 0).tolist() == [[True, False, True]]


def test_trie_refuses_per_row_positions():
    trie = Trie.from_sids(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(TypeError, match="left to right"):
        trie.advance(trie.root(2), torch.tensor([0, 1]), torch.tensor([0, 0]))
