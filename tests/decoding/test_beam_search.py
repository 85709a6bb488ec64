"""Constrained beam search against the brute-force reference, on tiny deterministic steppers."""

import pytest
import torch

from genrec_ml.decoding import (
    CatalogConstraint,
    Trie,
    brute_force_topk,
    constrained_beam_search,
    teacher_forced_log_probs,
)
from genrec_ml.errors import GenrecConfigError

SIZES = (3, 4, 3)
BATCH = 3


class TableStepper:
    """Log-probs from a fixed random table indexed by (user, level, previous code)."""

    def __init__(self, codebook_sizes, batch_size, seed, scale=3.0, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        previous = (1, *codebook_sizes[:-1])
        self.tables = [
            (torch.randn(batch_size, p, k, generator=g) * scale).to(device)
            for p, k in zip(previous, codebook_sizes, strict=True)
        ]  # tables[l]: (B, K_{l-1}, K_l) logits
        self.device = device

    def start(self, batch_size):
        return torch.arange(batch_size, device=self.device)  # state: the user of each row

    def step(self, users, prefix):
        level = prefix.shape[1]
        previous = prefix[:, -1].to(self.device) if level else torch.zeros_like(users)
        return torch.log_softmax(self.tables[level][users, previous], dim=-1), users

    def reorder(self, users, rows):
        return users[rows]


class CachedThinkingStepper:
    """A tiny recurrent model with a fake KV cache and a latent thinking step per level.

    It reads codes only from its own cache (one new code per step, as a KV-cached decoder
    does), so a search that forgot to reorder would get different scores; it also asserts that
    its cache agrees with the prefix the search passes in.
    """

    def __init__(self, codebook_sizes, batch_size, seed, dim=8, scale=3.0):
        g = torch.Generator().manual_seed(seed)
        self.user = torch.randn(batch_size, dim, generator=g)  # (B, D)
        self.mix = torch.randn(dim, dim, generator=g) / dim**0.5
        self.code_emb = [torch.randn(k, dim, generator=g) for k in codebook_sizes]
        self.think = [torch.randn(dim, dim, generator=g) / dim**0.5 for _ in codebook_sizes]
        self.out = [torch.randn(dim, k, generator=g) * scale for k in codebook_sizes]

    def start(self, batch_size):
        return self.user[:batch_size], torch.zeros(batch_size, 0, dtype=torch.long)

    def step(self, state, prefix):
        hidden, cache = state  # (R, D), (R, l-1)
        level = prefix.shape[1]
        if level:
            assert torch.equal(cache, prefix[:, :-1]), "reorder left a stale cache row"
            last = prefix[:, -1]  # (R,) the only code a KV-cached decoder consumes now
            hidden = torch.tanh(hidden @ self.mix + self.code_emb[level - 1][last])
            cache = torch.cat([cache, last[:, None]], dim=1)  # (R, l)
        hidden = torch.tanh(hidden @ self.think[level])  # latent step: the beam does not grow
        return torch.log_softmax(hidden @ self.out[level], dim=-1), (hidden, cache)

    def reorder(self, state, rows):
        hidden, cache = state
        return hidden[rows], cache[rows]


STEPPERS = {"table": TableStepper, "cached_thinking": CachedThinkingStepper}


def brute_force(stepper, sids, top_k):
    return brute_force_topk(lambda s: teacher_forced_log_probs(stepper, s, BATCH), sids, top_k)


def assert_same_topk(got, expected):
    assert torch.equal(got[0], expected[0])
    assert torch.allclose(got[1], expected[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", STEPPERS)
@pytest.mark.parametrize("seed", range(5))
def test_full_width_beam_equals_brute_force(kind, seed, make_catalog):
    sids = make_catalog(seed, SIZES, n_items=14)
    stepper = STEPPERS[kind](SIZES, BATCH, seed)
    trie = Trie.from_sids(sids, SIZES)
    for top_k in (5, 14):
        got = constrained_beam_search(stepper, trie, BATCH, beam_width=14, top_k=top_k)
        assert_same_topk(got, brute_force(stepper, sids, top_k))


@pytest.mark.parametrize("kind", STEPPERS)
@pytest.mark.parametrize("beam_width", [1, 2, 3, 5])
def test_narrow_beam_returns_valid_distinct_items_with_true_scores(kind, beam_width, make_catalog):
    sids = make_catalog(7, SIZES, n_items=14)
    stepper = STEPPERS[kind](SIZES, BATCH, seed=7)
    items, scores = constrained_beam_search(
        stepper, Trie.from_sids(sids, SIZES), BATCH, beam_width, top_k=beam_width
    )
    assert ((items >= 0) & (items < len(sids))).all()
    assert all(len(set(row.tolist())) == beam_width for row in items)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    true_scores = teacher_forced_log_probs(stepper, sids, BATCH).gather(1, items)  # (B, W)
    assert torch.allclose(scores, true_scores, atol=1e-5, rtol=0)


def test_beam_wider_than_valid_codes_pads_with_minus_one():
    # Level 0 allows only codes 1, 4, 6 out of 8; the catalog has 4 items, the beam 20 slots.
    sids = torch.tensor([[1, 0, 2], [4, 1, 1], [6, 2, 0], [6, 2, 2]])
    sizes = (8, 3, 3)
    stepper = TableStepper(sizes, BATCH, seed=0)
    items, scores = constrained_beam_search(
        stepper, Trie.from_sids(sids, sizes), BATCH, beam_width=20, top_k=20
    )
    assert_same_topk((items, scores), brute_force(stepper, sids, 20))
    assert sorted(items[0, :4].tolist()) == [0, 1, 2, 3]
    assert (items[:, 4:] == -1).all() and torch.isneginf(scores[:, 4:]).all()


def test_constraint_holds_when_the_model_prefers_invalid_codes():
    # The catalog uses codes 0 and 1 only; the model puts nearly all mass on codes 2..5.
    sids = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 1, 1], [1, 0, 0], [0, 0, 0]])
    sizes = (6, 6, 6)
    stepper = TableStepper(sizes, BATCH, seed=3)
    for table in stepper.tables:
        table[..., 2:] += 30.0
    trie = Trie.from_sids(sids, sizes)
    for beam_width in (1, 2, 5):
        items, _ = constrained_beam_search(stepper, trie, BATCH, beam_width, top_k=beam_width)
        assert ((items >= 0) & (items < len(sids))).all()
    got = constrained_beam_search(stepper, trie, BATCH, beam_width=5, top_k=5)
    assert_same_topk(got, brute_force(stepper, sids, 5))


class ForbidLastCode(TableStepper):
    """Gives probability zero (log-prob -inf) to code 0 at the last level."""

    def step(self, users, prefix):
        log_probs, users = super().step(users, prefix)
        if prefix.shape[1] == len(self.tables) - 1:
            log_probs[:, 0] = float("-inf")
        return log_probs, users


def test_zero_probability_items_are_never_returned(make_catalog):
    sids = make_catalog(2, SIZES, n_items=14)
    stepper = ForbidLastCode(SIZES, BATCH, seed=2)
    n_possible = int((sids[:, -1] != 0).sum())
    items, scores = constrained_beam_search(
        stepper, Trie.from_sids(sids, SIZES), BATCH, beam_width=14, top_k=14
    )
    assert_same_topk((items, scores), brute_force(stepper, sids, 14))
    assert (items[:, n_possible:] == -1).all() and torch.isneginf(scores[:, n_possible:]).all()
    assert (sids[items[:, :n_possible], -1] != 0).all()


@pytest.mark.parametrize("beam_width", [2, 4, 14])
def test_trie_and_catalog_reference_give_the_same_search(beam_width, make_catalog):
    sids = make_catalog(5, SIZES, n_items=14)
    stepper = CachedThinkingStepper(SIZES, BATCH, seed=5)
    fast = constrained_beam_search(stepper, Trie.from_sids(sids), BATCH, beam_width, 2)
    plain = constrained_beam_search(
        stepper, CatalogConstraint.from_sids(sids), BATCH, beam_width, 2
    )
    assert_same_topk(fast, plain)


def test_top_k_above_beam_width_is_a_config_error(make_catalog):
    trie = Trie.from_sids(make_catalog(0, SIZES, n_items=5))
    with pytest.raises(GenrecConfigError, match="raise beam_width"):
        constrained_beam_search(TableStepper(SIZES, BATCH, 0), trie, BATCH, beam_width=3, top_k=4)


def test_log_probs_of_the_wrong_width_are_reported(make_catalog):
    trie = Trie.from_sids(make_catalog(0, SIZES, n_items=5), codebook_sizes=(3, 4, 5))
    with pytest.raises(ValueError, match="SID level 2; expected"):
        constrained_beam_search(TableStepper(SIZES, BATCH, 0), trie, BATCH, 4, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_search_follows_the_model_onto_cuda(make_catalog):
    sids = make_catalog(1, SIZES, n_items=14)
    trie = Trie.from_sids(sids, SIZES)  # stays on the CPU; the search moves it
    on_cpu = constrained_beam_search(TableStepper(SIZES, BATCH, 1), trie, BATCH, 14, 5)
    on_gpu = constrained_beam_search(
        TableStepper(SIZES, BATCH, 1, device="cuda"), trie, BATCH, 14, 5
    )
    assert on_gpu[0].is_cuda
    assert_same_topk((on_gpu[0].cpu(), on_gpu[1].cpu()), on_cpu)
