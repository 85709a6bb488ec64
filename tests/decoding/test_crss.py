"""CRSS beam search and the any-order catalog constraint against plain references."""

import pytest
import torch

from genrec_ml.decoding import CatalogConstraint
from genrec_ml.decoding.crss import (
    Corp,
    SearchStats,
    _duplicates,
    _run_path,
    brute_force_set_topk,
    crss_beam_search,
    js_divergence_log,
)
from genrec_ml.decoding.token_sets import TokenSetConstraint
from tests.models.tiny_sets import SIZES, batch, set_catalog, tiny_reg4rec


def test_token_set_constraint_agrees_with_the_dense_reference_in_any_fill_order():
    sids = set_catalog(14, seed=1)
    fast, slow = TokenSetConstraint.from_sids(sids, SIZES), CatalogConstraint.from_sids(sids, SIZES)
    g = torch.Generator().manual_seed(0)
    rows = 6
    fast_state, slow_state = fast.root(rows), slow.root(rows)
    orders = torch.stack([torch.cat([torch.randperm(3, generator=g), torch.tensor([3])]) for _ in range(rows)])
    for step in range(4):
        positions = orders[:, step]
        for position in range(4):
            assert torch.equal(fast.valid_next(fast_state, position), slow.valid_next(slow_state, position))
        # mostly valid codes, sometimes one no item has (the row dies in both)
        codes = torch.randint(0, 3, (rows,), generator=g)
        keep = fast.select(fast_state, torch.arange(rows))
        fast_state = fast.advance(keep, positions, codes)
        slow_state = slow.advance(slow_state, positions, codes)
        assert torch.equal(fast.item_ids(fast_state), slow.item_ids(slow_state))
    target = sids[5]
    state = fast.root(1)
    for position in (2, 0, 1, 3):
        state = fast.advance(state, position, target[position : position + 1])
    assert fast.item_ids(state).tolist() == [5]


@pytest.mark.parametrize("renormalise", [False, True])
@pytest.mark.parametrize("dynamic", [True, False])
@pytest.mark.parametrize("threshold", [None, 0.002, 0.01])
def test_wide_crss_search_equals_the_exhaustive_reference(dynamic, threshold, renormalise):
    sids = set_catalog(12)
    model = tiny_reg4rec(12, dynamic_order=dynamic)
    corp = Corp(threshold) if threshold is not None else None
    stats = SearchStats()
    found = crss_beam_search(model.stepper(batch(model)), TokenSetConstraint.from_sids(sids, SIZES), 2, 300, 6,
                             dynamic=dynamic, corp=corp, stats=stats, renormalise=renormalise)
    items, scores = brute_force_set_topk(model.stepper(batch(model)), sids, 2, 6, dynamic=dynamic, corp=corp,
                                         renormalise=renormalise)
    assert torch.equal(found.item_ids, items)
    assert torch.allclose(found.log_probs, scores, atol=1e-5)
    if threshold == 0.01:
        assert 0 < stats.pruned < stats.checked  # the thresholds chosen so that CORP does something
    if not dynamic:
        assert (found.orders[found.item_ids >= 0] == torch.arange(4)).all()


def test_renormalised_scores_by_hand():
    """Two items {0: (a0, b0, d0), 1: (a0, b1, d0)} in fixed order: position 0 is forced (adds 0), position 1
    chooses between b0 and b1 with their probabilities renormalised over the two, position 2 is forced."""
    sids = torch.tensor([[0, 0, 0], [0, 1, 0]])
    log_probs = torch.log(torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.3, 0.6], [0.4, 0.4, 0.2]]))  # (L=3, K=3)

    class Fixed:  # the same per-position distributions at every step
        def start(self, batch_size):
            return None

        def step(self, state, positions, codes):
            rows = 1 if positions is None else len(positions)
            return log_probs.expand(rows, -1, -1), None, None

        def reorder(self, state, rows):
            return None

    found = crss_beam_search(Fixed(), TokenSetConstraint.from_sids(sids, (3, 3, 3)), 1, 4, 2, dynamic=False,
                             renormalise=True)
    assert found.item_ids.tolist() == [[1, 0]]
    assert torch.allclose(found.log_probs, torch.log(torch.tensor([[0.75, 0.25]])))
    raw = crss_beam_search(Fixed(), TokenSetConstraint.from_sids(sids, (3, 3, 3)), 1, 4, 2, dynamic=False)
    assert torch.allclose(raw.log_probs, torch.log(torch.tensor([[0.2 * 0.3 * 0.4, 0.2 * 0.1 * 0.4]])))


def test_a_narrow_search_returns_distinct_catalog_items_and_width_one_is_eq_5():
    sids = set_catalog(12)
    model = tiny_reg4rec(12)
    constraint = TokenSetConstraint.from_sids(sids, SIZES)
    found = crss_beam_search(model.stepper(batch(model)), constraint, 2, 4, 4)
    for row in found.item_ids:
        assert len(set(row.tolist())) == 4 and (row >= 0).all()
    # W = 1: each step fills the (open codebook, valid code) with the highest log-prob
    greedy = crss_beam_search(model.stepper(batch(model)), constraint, 2, 1, 1)
    for user in range(2):
        path, alive = (), list(range(len(sids)))
        for step in range(4):
            log_probs, _ = _run_path(model.stepper(batch(model)), 2, user, path)
            filled = dict(path)
            open_positions = [p for p in range(3) if p not in filled] if step < 3 else [3]
            best = max(((float(log_probs[0, p, int(sids[i, p])]), p, int(sids[i, p]))
                        for p in open_positions for i in alive), key=lambda t: t[0])
            path += ((best[1], best[2]),)
            alive = [i for i in alive if int(sids[i, best[1]]) == best[2]]
        assert greedy.item_ids[user, 0].item() == alive[0]
        assert greedy.orders[user, 0].tolist() == [p for p, _ in path]


def test_corp_replaces_pruned_beams_so_results_stay_full_and_consistent():
    sids = set_catalog(12)
    model = tiny_reg4rec(12)
    corp, stats = Corp(0.03), SearchStats()
    reference, _ = brute_force_set_topk(model.stepper(batch(model)), sids, 2, 3, corp=corp)
    assert (reference >= 0).all()  # at least 3 consistent items per user exist
    found = crss_beam_search(model.stepper(batch(model)), TokenSetConstraint.from_sids(sids, SIZES), 2, 3, 3,
                             corp=corp, stats=stats)
    assert stats.pruned > 0 and (found.item_ids >= 0).all()
    for user in range(2):
        for item, order in zip(found.item_ids[user].tolist(), found.orders[user].tolist(), strict=True):
            assert _consistent(model, sids, user, item, order, 0.03)


def _consistent(model, sids, user, item, order, threshold):
    path = tuple((p, int(sids[item, p])) for p in order[:-1])
    _, history = _run_path(model.stepper(batch(model)), 2, user, path)
    return all(float(js_divergence_log(history[j], history[j - 1])) <= threshold for j in range(1, 4))


@pytest.mark.parametrize("width", [2, 4])
def test_a_strict_corp_keeps_the_beams_full_with_consistent_paths_first(width):
    # θ so small that most paths fail: the narrow search must still return as many items as without
    # CORP (a failed path is the last resort, not a hole), every consistent one before every pruned one
    sids = set_catalog(12)
    model = tiny_reg4rec(12)
    constraint = TokenSetConstraint.from_sids(sids, SIZES)
    plain = crss_beam_search(model.stepper(batch(model)), constraint, 2, width, width)
    stats = SearchStats()
    found = crss_beam_search(model.stepper(batch(model)), constraint, 2, width, width, corp=Corp(0.002), stats=stats)
    assert stats.pruned > stats.checked / 2
    assert ((found.item_ids >= 0).sum(dim=1) == (plain.item_ids >= 0).sum(dim=1)).all()
    for user in range(2):
        flags = [_consistent(model, sids, user, item, order, 0.002)
                 for item, order in zip(found.item_ids[user].tolist(), found.orders[user].tolist(), strict=True)]
        assert flags == sorted(flags, reverse=True)
        assert len(set(found.item_ids[user].tolist())) == width


def test_dead_candidates_shadow_no_live_copy():
    keys = torch.tensor([[5, 5, 7, 5, 7]])
    live = torch.tensor([[False, True, True, True, True]])
    # the dead first 5 is ignored: the live 5 at index 1 is kept, index 3 is its copy; 7 at 4 copies 2
    assert (_duplicates(keys, live) & live).tolist() == [[False, False, False, True, True]]


def test_js_divergence_by_hand():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    js = js_divergence_log(p.log(), q.log())
    assert torch.allclose(js, torch.tensor([0.0, torch.log(torch.tensor(2.0))]))
    a, b = torch.tensor([0.2, 0.8]), torch.tensor([0.6, 0.4])
    m = (a + b) / 2
    expected = 0.5 * (a * (a / m).log()).sum() + 0.5 * (b * (b / m).log()).sum()
    assert torch.isclose(js_divergence_log(a.log(), b.log()), expected)


def test_step_order_counts():
    stats = SearchStats()
    stats.count_orders(torch.tensor([[1, 0, 2], [1, 2, 0], [-1, -1, -1]]))
    assert stats.step_positions.tolist() == [[0, 2, 0], [1, 0, 1], [1, 0, 1]]
