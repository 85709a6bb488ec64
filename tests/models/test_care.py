"""CARE: progressive mask and L_div against hand-made values and plain references, cached stepper
against the teacher-forced forward, beam search against brute force, the ablations (no queries and
no progressive attention = TIGER), and which history positions each level can read."""

import math
from dataclasses import asdict

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.decoding import Trie, brute_force_topk, teacher_forced_log_probs
from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.care import (
    Care,
    CareConfig,
    history_levels,
    progressive_mask,
    progressive_mask_reference,
    query_diversity,
)
from tests.models.tiny import SIZES, catalog, examples, tiny_model

N_ITEMS = 30
QUERIES = (2, 0, 3)  # a level without queries in the middle: its readout is its input token
CARE_FIELDS = {"queries_per_level", "progressive_attention", "diversity_weight"}


def tiny_care(seed=0, **fields) -> Care:
    """A tiny CARE whose T5 weights are those of `tiny_model(seed)`, the TIGER of the same seed."""
    tiger = tiny_model(seed, **{k: v for k, v in fields.items() if k not in CARE_FIELDS})
    care = Care(CareConfig(**(asdict(tiger.config) | fields)))
    care.t5.load_state_dict(tiger.t5.state_dict())
    return care.eval()


def make_batch(model, n_users=4, seed=0):
    sids = catalog(N_ITEMS)
    data = SequenceDataset(examples(n_users, N_ITEMS, seed=seed), sids, model.vocab)
    return collate([data[i] for i in range(n_users)]), sids


# --- progressive mask ---------------------------------------------------------------------------


def test_progressive_mask_by_hand():
    # L = 3; row 0: user + 2 items + 3 pads, row 1: user + 3 items. Queries (1, 0, 2) give
    # segments of 2, 1 and 3 decoder rows: levels 0 0 | 1 | 2 2 2.
    attention_mask = torch.tensor([[1] * 7 + [0] * 3, [1] * 10]).bool()
    decoder_levels = torch.tensor([0, 0, 1, 2, 2, 2])
    #            user  item 1   item 2   item 3 / padding
    row0_level0 = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    row0_level1 = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    row0_level2 = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    row1_level0 = [1, 1, 0, 0, 1, 0, 0, 1, 0, 0]
    row1_level1 = [1, 1, 1, 0, 1, 1, 0, 1, 1, 0]
    row1_level2 = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    expected = torch.tensor([
        [row0_level0, row0_level0, row0_level1, row0_level2, row0_level2, row0_level2],
        [row1_level0, row1_level0, row1_level1, row1_level2, row1_level2, row1_level2],
    ]).bool()
    got = progressive_mask(attention_mask, decoder_levels, n_levels=3, has_user_token=True)
    assert torch.equal(got, expected)
    assert torch.equal(progressive_mask_reference(attention_mask, decoder_levels, 3, True), expected)


def test_progressive_mask_by_hand_without_a_user_token():
    attention_mask = torch.tensor([[1] * 6 + [0]]).bool()  # 2 items of 3 codes, one pad
    expected = torch.tensor([[
        [1, 0, 0, 1, 0, 0, 0],
        [1, 1, 0, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0],
    ]]).bool()
    got = progressive_mask(attention_mask, torch.tensor([0, 1, 2]), n_levels=3, has_user_token=False)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("seed", range(6))
def test_batched_progressive_mask_equals_the_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    n_levels = int(torch.randint(1, 5, (1,), generator=g))
    has_user = bool(seed % 2)
    n_items = torch.randint(0, 5, (4,), generator=g)  # (B,) history lengths, 0 included
    lengths = n_items * n_levels + int(has_user)
    seq_len = max(int(lengths.max()), 1)
    attention_mask = torch.arange(seq_len)[None, :] < lengths[:, None]  # (B, S) right padding
    counts = torch.randint(0, 3, (n_levels,), generator=g)
    decoder_levels = torch.arange(n_levels).repeat_interleave(counts + 1)
    fast = progressive_mask(attention_mask, decoder_levels, n_levels, has_user)
    assert torch.equal(fast, progressive_mask_reference(attention_mask, decoder_levels, n_levels, has_user))


def test_layout_levels_match_the_code_tokens_of_a_real_batch():
    """The mask trusts `sequences`' layout; this catches a layout change that would break it."""
    model = tiny_care()
    batch, _ = make_batch(model, n_users=6)
    levels = history_levels(batch["input_ids"].shape[1], len(SIZES), has_user_token=True)
    for level in range(len(SIZES)):
        block = model.vocab.level_slice(level)
        is_code = (batch["input_ids"] >= block.start) & (batch["input_ids"] < block.stop)  # (B, S)
        assert is_code.any()
        assert (levels.expand_as(is_code)[is_code] == level).all()
    assert (batch["input_ids"][:, 0] >= model.vocab.user_offset).all()  # the user token, at level 0
    assert levels[0] == 0


# --- diversity loss -----------------------------------------------------------------------------


def diversity_reference(queries):
    pairs = [(i, j) for i in range(len(queries)) for j in range(len(queries)) if i != j]
    return sum(F.cosine_similarity(queries[i], queries[j], dim=0) for i, j in pairs) / len(pairs)


def test_query_diversity_on_hand_made_queries():
    assert query_diversity(torch.eye(3, 5)).item() == pytest.approx(0.0)  # orthogonal
    same_direction = torch.tensor([1.0, 2.0, -1.0])[None] * torch.tensor([[1.0], [3.0], [0.5], [2.0]])
    assert query_diversity(same_direction).item() == pytest.approx(1.0)
    # cos(e1, e2) = 0, cos(e1, e1 + e2) = cos(e2, e1 + e2) = 1/sqrt(2): mean of the 3 pairs
    assert query_diversity(torch.tensor([[1.0, 0], [0, 1], [1, 1]])).item() == pytest.approx(math.sqrt(2) / 3)
    opposite = torch.tensor([[1.0, 0], [-1, 0]])
    assert query_diversity(opposite).item() == pytest.approx(-1.0)
    assert query_diversity(torch.randn(1, 4)).item() == 0.0  # no pairs


def test_query_diversity_equals_the_pairwise_reference():
    queries = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    assert query_diversity(queries).item() == pytest.approx(diversity_reference(queries).item(), abs=1e-6)


def test_loss_is_ce_plus_alpha_times_the_diversity_of_all_queries():
    model = tiny_care(seed=1, queries_per_level=QUERIES, diversity_weight=0.7)
    batch, _ = make_batch(model)
    logits, loss = model(batch)
    ce = F.cross_entropy(logits.reshape(-1, max(SIZES)), batch["targets"].reshape(-1))
    diversity = diversity_reference(model.queries.detach())
    assert model.queries.shape == (sum(QUERIES), model.config.d_model)
    assert loss.item() == pytest.approx(ce.item() + 0.7 * diversity.item(), abs=1e-5)
    parts = {name: float(value) for name, value in model.loss_parts.items()}
    assert parts == {"ce": pytest.approx(ce.item()), "diversity": pytest.approx(diversity.item())}


# --- decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("progressive", [True, False])
def test_cached_stepper_matches_the_teacher_forced_forward(progressive):
    model = tiny_care(seed=2, queries_per_level=QUERIES, progressive_attention=progressive)
    batch, sids = make_batch(model)
    # the target's summed log-probability, forward vs the stepper that beam search drives
    log_probs = model(batch)[0].log_softmax(-1)  # (B, L, K_max)
    forward_total = log_probs.gather(2, batch["targets"][:, :, None]).sum(dim=(1, 2))  # (B,)
    stepper_total = teacher_forced_log_probs(model.stepper(batch), sids, 4)  # (B, N)
    assert torch.allclose(stepper_total[torch.arange(4), batch["target_items"]], forward_total, atol=1e-5)
    # level by level, on rows duplicated and permuted as beam expansion does
    rows = torch.tensor([2, 0, 0, 3, 1, 2])
    expected = model({k: v[rows] for k, v in batch.items()})[0].log_softmax(-1)  # (R, L, K_max)
    targets = batch["targets"][rows]
    stepper = model.stepper(batch)
    with torch.no_grad():
        state = stepper.start(4)
        _, state = stepper.step(state, torch.zeros(4, 0, dtype=torch.long))
        state = stepper.reorder(state, rows)
        for level in range(1, len(SIZES)):
            step_log_probs, state = stepper.step(state, targets[:, :level])
            assert torch.allclose(step_log_probs, expected[:, level, : SIZES[level]], atol=1e-5)


def test_beam_search_with_queries_equals_brute_force():
    model = tiny_care(seed=3, queries_per_level=QUERIES)
    batch, sids = make_batch(model)
    trie = Trie.from_sids(sids, model.vocab.codebook_sizes)
    items, log_probs = model.recommend(batch, trie, beam_width=N_ITEMS, top_k=10)
    ref_items, ref_log_probs = brute_force_topk(
        lambda s: teacher_forced_log_probs(model.stepper(batch), s, 4), sids, 10
    )
    assert torch.equal(items, ref_items)
    assert torch.allclose(log_probs, ref_log_probs, atol=1e-5, rtol=0)


# --- ablations and what each level reads --------------------------------------------------------


def test_without_queries_and_progressive_attention_care_is_tiger():
    tiger = tiny_model(seed=4)
    care = tiny_care(seed=4, queries_per_level=0, progressive_attention=False)
    assert not hasattr(care, "queries")
    batch, sids = make_batch(care)
    tiger_logits, tiger_loss = tiger(batch)
    logits, loss = care(batch)
    assert torch.equal(logits, tiger_logits) and torch.equal(loss, tiger_loss)
    assert care.loss_parts["diversity"] == 0.0
    trie = Trie.from_sids(sids, SIZES)
    for got, expected in zip(care.recommend(batch, trie, 8, 5), tiger.recommend(batch, trie, 8, 5), strict=True):
        assert torch.equal(got, expected)


def test_progressive_attention_changes_the_logits():
    batch, _ = make_batch(tiny_care())
    with_mask, _ = tiny_care(seed=5, queries_per_level=QUERIES)(batch)
    without, _ = tiny_care(seed=5, queries_per_level=QUERIES, progressive_attention=False)(batch)
    assert not torch.allclose(with_mask[:, 0], without[:, 0], atol=1e-3)


def perturb_memory(model, positions):
    """Forward hook on the encoder adding noise to its output at `positions: (S,) bool`."""

    def hook(module, inputs, output):
        noise = torch.randn(output.last_hidden_state.shape, generator=torch.Generator().manual_seed(0))
        output.last_hidden_state = output.last_hidden_state + noise * positions[None, :, None]
        return output

    return model.t5.encoder.register_forward_hook(hook)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_level_reads_no_memory_of_finer_codes(attn):
    """Level t's logits ignore the encoder output at codes of levels > t, and follow the rest.

    Checked on the memory, not on input tokens: T5's encoder is bidirectional, so changing a
    fine code's token changes the memory at every position, coarse ones included.
    """
    model = tiny_care(seed=6, queries_per_level=QUERIES)
    model.t5.set_attn_implementation(attn)
    batch, _ = make_batch(model)
    levels = history_levels(batch["input_ids"].shape[1], len(SIZES), has_user_token=True)  # (S,)
    is_user = torch.arange(len(levels)) == 0
    before, _ = model(batch)
    for level in range(len(SIZES) - 1):
        finer = (levels > level) & ~is_user
        handle = perturb_memory(model, finer)
        after, _ = model(batch)
        handle.remove()
        assert torch.equal(after[:, : level + 1], before[:, : level + 1])
        assert not torch.allclose(after[:, level + 1 :], before[:, level + 1 :], atol=1e-4)
        handle = perturb_memory(model, (levels == level) & ~is_user)
        after, _ = model(batch)
        handle.remove()
        assert not torch.allclose(after[:, level], before[:, level], atol=1e-4)
    # the test bites: without the mask the coarsest level reads the finest codes too
    model = tiny_care(seed=6, queries_per_level=QUERIES, progressive_attention=False)
    model.t5.set_attn_implementation(attn)
    before, _ = model(batch)
    handle = perturb_memory(model, levels == len(SIZES) - 1)
    after, _ = model(batch)
    handle.remove()
    assert not torch.allclose(after[:, 0], before[:, 0], atol=1e-4)


def test_a_row_with_nothing_to_read_survives_bf16_autocast():
    """No user token and an empty history: every key is hidden, as in TIGER, and stays finite."""
    model = tiny_care(seed=8, n_user_buckets=0, queries_per_level=QUERIES)
    history = pd.DataFrame({"user_index": [0, 1], "target_item_index": [3, 4], "history": [[], [1, 2]]})
    data = SequenceDataset(history, catalog(N_ITEMS), model.vocab)
    batch = collate([data[0], data[1]])
    assert not batch["attention_mask"][0].any()
    full, _ = model(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, loss = model(batch)
    assert torch.isfinite(loss)
    assert torch.allclose(low.float()[:, :, :3], full[:, :, :3], atol=0.1)


VARIANTS = {
    "care": {"queries_per_level": QUERIES},
    "w/o reasoning": {"queries_per_level": 0},
    "w/o progressive attention": {"queries_per_level": QUERIES, "progressive_attention": False},
    "w/o diversity loss": {"queries_per_level": QUERIES, "diversity_weight": 0.0},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains(variant):
    model = tiny_care(seed=7, **VARIANTS[variant]).train()
    batch, _ = make_batch(model, n_users=8, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        _, loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    if hasattr(model, "queries"):
        assert model.queries.grad is not None and model.queries.grad.abs().sum() > 0


# --- config -------------------------------------------------------------------------------------


def test_config_counts_and_round_trip():
    base = asdict(tiny_model().config)
    assert CareConfig(**base).query_counts == (1, 1, 1)  # an int is every level's count
    config = CareConfig(**(base | {"queries_per_level": [1, 0, 4]}))  # a list, as JSON gives it back
    assert config.queries_per_level == (1, 0, 4) and config.query_counts == (1, 0, 4)
    model = Care(CareConfig(**asdict(config)))
    assert model.name == "care" and model.config_class is CareConfig and model.config == config
    assert model.decoder_levels.tolist() == [0, 0, 1, 2, 2, 2, 2, 2]


def test_bad_configs_name_the_field():
    base = asdict(tiny_model().config)
    with pytest.raises(GenrecConfigError, match="queries_per_level.*one count per level"):
        CareConfig(**(base | {"queries_per_level": (1, 1)}))
    with pytest.raises(GenrecConfigError, match="queries_per_level"):
        CareConfig(**(base | {"queries_per_level": (1, -1, 0)}))
    with pytest.raises(GenrecConfigError, match="diversity_weight"):
        CareConfig(**(base | {"diversity_weight": -0.1}))
