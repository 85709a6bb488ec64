"""S²GR: losses against plain formulas, cached thinking against one causal call, beam search against
brute force, the ablations (w/o reasoning = TIGER, w/o L_Think), coarse-cluster buffers."""

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.decoding import Trie, brute_force_topk, teacher_forced_log_probs
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.s2gr import (
    S2gr,
    S2grConfig,
    cluster_infonce,
    cosine_regulariser,
    in_batch_infonce,
)
from genrec_ml.models.tiger import Tiger, TigerConfig, tiger_config
from genrec_ml.tokenizers.collisions import coarse_clusters
from tests.models.tiny import SIZES, catalog, examples

N_ITEMS = 30
N_COARSE, D_CODE = 2, 5
TINY = dict(n_user_buckets=5, d_model=16, n_heads=2, d_kv=8, d_ff=32, n_encoder_layers=1, n_decoder_layers=2,
            dropout=0.0)


def tiny_config(**overrides) -> S2grConfig:
    base = asdict(tiger_config("smoke", SIZES, **TINY))
    return S2grConfig(**{**base, "n_coarse": N_COARSE, "d_code": D_CODE, **overrides})


def clusters(seed=0):
    """The codebook asset's path: k-means of random code vectors of each quantiser level."""
    rng = np.random.default_rng(seed)
    found = [coarse_clusters(rng.normal(size=(k, D_CODE)), N_COARSE, seed=seed) for k in SIZES[:-1]]
    return [c for c, _ in found], [a for _, a in found]


def tiny_s2gr(seed=0, with_clusters=True, **overrides) -> S2gr:
    torch.manual_seed(seed)
    model = S2gr(tiny_config(**overrides)).eval()
    if with_clusters:
        model.set_coarse_clusters(*clusters(seed))
    return model


def make_batch(model, n_users=4, seed=0):
    sids = catalog(N_ITEMS)
    data = SequenceDataset(examples(n_users, N_ITEMS, seed=seed), sids, model.vocab)
    return collate([data[i] for i in range(n_users)]), sids


# -- losses against plain formulas ----------------------------------------------------------------

def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def test_cluster_infonce_is_the_explicit_formula():
    g = torch.Generator().manual_seed(0)
    projected = torch.randn(3, 2, 4, generator=g)  # (B, L_c, d_code)
    centroids = torch.randn(2, 3, 4, generator=g)  # (L_c, C, d_code)
    valid = torch.tensor([[True, True, True], [True, True, False]])  # level 1 has 2 clusters
    targets = torch.tensor([[0, 1], [2, 0], [1, 1]])
    tau = 0.5
    total = 0.0
    for b in range(3):
        for level in range(2):
            scores = [math.exp(cos(projected[b, level], centroids[level, c]) / tau)
                      for c in range(3) if valid[level, c]]
            own = math.exp(cos(projected[b, level], centroids[level, targets[b, level]]) / tau)
            total += -math.log(own / sum(scores))
    got = cluster_infonce(projected, centroids, valid, targets, tau)
    assert got.item() == pytest.approx(total / 6, rel=1e-5)


def test_in_batch_infonce_is_the_explicit_formula_and_skips_duplicate_targets():
    g = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    items = [7, 3, 7, 5]  # rows 0 and 2 want the same item: not each other's negatives
    duplicates = torch.tensor([[a == b for b in items] for a in items])
    tau = 0.2
    total = 0.0
    for i in range(4):
        negatives_and_own = [j for j in range(4) if j == i or items[j] != items[i]]
        denominator = sum(math.exp(cos(queries[i], keys[j]) / tau) for j in negatives_and_own)
        total += -math.log(math.exp(cos(queries[i], keys[i]) / tau) / denominator)
    got = in_batch_infonce(queries, keys, duplicates, tau)
    assert got.item() == pytest.approx(total / 4, rel=1e-5)
    unmasked = in_batch_infonce(queries, keys, torch.eye(4, dtype=torch.bool), tau)
    assert unmasked.item() != pytest.approx(got.item(), rel=1e-3)  # the duplicate mask bites


def test_cosine_regulariser_is_one_minus_cosine_and_stops_the_guides_gradient():
    g = torch.Generator().manual_seed(2)
    thinking = torch.randn(3, 5, generator=g, requires_grad=True)
    guide = torch.randn(3, 5, generator=g, requires_grad=True)
    loss = cosine_regulariser(thinking, guide)
    expected = sum(1 - cos(thinking[b].detach(), guide[b].detach()) for b in range(3)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert thinking.grad is not None and thinking.grad.abs().sum() > 0
    assert guide.grad is None


def test_forward_loss_is_ce_plus_the_weighted_parts_computed_from_the_thinking_tokens():
    model = tiny_s2gr(seed=3, align_weight=0.7, global_weight=0.3, reg_weight=0.2, think_loss_weight=0.5)
    batch, _ = make_batch(model, n_users=5)
    logits, loss = model(batch)
    # detached device scalars, read by the training loop in bulk (no per-step sync)
    assert all(v.ndim == 0 and not v.requires_grad for v in model.loss_parts.values())
    parts = {name: float(value) for name, value in model.loss_parts.items()}
    assert set(parts) == {"ce", "align", "global", "reg"}
    assert parts["ce"] == pytest.approx(F.cross_entropy(logits.reshape(-1, 4), batch["targets"].reshape(-1)).item())
    weighted = 0.7 * parts["align"] + 0.3 * parts["global"] + 0.2 * parts["reg"]
    assert loss.item() == pytest.approx(parts["ce"] + 0.5 * weighted, rel=1e-5)

    # L_align wiring: thinking token l of row b against level l's centroids, target = cluster of s_l
    targets = batch["targets"]
    with torch.no_grad():
        memory = model.encode(batch["input_ids"], batch["attention_mask"])
        _, thinking = model.reason(targets, memory, batch["attention_mask"])  # (B, L, d)
        guide = model.global_decoder(model.t5.shared(torch.full((5,), 1)), memory, batch["attention_mask"])
    centroids, assignments = clusters(3)
    align = []
    for b in range(5):
        for level in range(len(SIZES) - 1):
            z = model.align_projection(thinking[b, level]).detach()
            scores = torch.tensor([cos(z, torch.as_tensor(c)) for c in centroids[level]]) / model.config.tau
            align.append(-scores.log_softmax(0)[assignments[level][targets[b, level]]].item())
    assert parts["align"] == pytest.approx(sum(align) / len(align), rel=1e-4)
    reg = sum(1 - cos(thinking[b, 0], guide[b]) for b in range(5)) / 5  # t_0 is the first level's token
    assert parts["reg"] == pytest.approx(reg, rel=1e-4)


def test_training_without_clusters_says_what_to_do():
    model = tiny_s2gr(with_clusters=False)
    batch, _ = make_batch(model)
    with pytest.raises(GenrecConfigError, match="set_coarse_clusters"):
        model(batch)
    tiny_s2gr(with_clusters=False, think_loss_weight=0.0)(batch)  # w/o L_Think needs no clusters


# -- cached thinking, stepper and beam search -----------------------------------------------------

def test_level_by_level_thinking_equals_one_causal_call_over_the_finished_sequence():
    model = tiny_s2gr(seed=4)
    batch, _ = make_batch(model)
    targets, mask = batch["targets"], batch["attention_mask"]
    with torch.no_grad():
        memory = model.encode(batch["input_ids"], mask)
        readout, thinking = model.reason(targets, memory, mask)  # (B, L, d) each
        inputs = [model.decoder_segment(level, targets[:, level - 1] if level else None, memory, mask)
                  for level in range(len(SIZES))]  # (B, 1, d) each: BOS, c_0, c_1
        sequence = torch.cat([x for level in range(len(SIZES)) for x in (inputs[level], thinking[:, level:level + 1])],
                             dim=1)  # (B, 2L, d): x_0, t_0, x_1, t_1, ...
        hidden = model.t5.decoder(inputs_embeds=sequence, encoder_hidden_states=memory,
                                  encoder_attention_mask=mask, use_cache=False).last_hidden_state  # (B, 2L, d)
    # t_l = h(x_l) + p_l, and level l is read at t_l's position
    assert torch.allclose(hidden[:, 0::2] + model.level_position, thinking, atol=1e-5)
    assert torch.allclose(hidden[:, 1::2], readout, atol=1e-5)


@pytest.mark.parametrize("think_at_last_level", [True, False])
def test_stepper_log_probs_equal_the_forward_log_softmax_at_the_target_codes(think_at_last_level):
    model = tiny_s2gr(seed=5, think_at_last_level=think_at_last_level)
    batch, sids = make_batch(model)
    logits, _ = model(batch)
    per_level = logits.log_softmax(-1).gather(2, batch["targets"][:, :, None])[:, :, 0]  # (B, L)
    scored = teacher_forced_log_probs(model.stepper(batch), sids, 4)  # (B, N_items)
    expected = scored.gather(1, batch["target_items"][:, None])[:, 0]  # (B,)
    assert torch.allclose(per_level.sum(1), expected, atol=1e-5)


def test_beam_search_with_thinking_equals_brute_force():
    model = tiny_s2gr(seed=6)
    batch, sids = make_batch(model)
    trie = Trie.from_sids(sids, model.vocab.codebook_sizes)
    ref_items, ref_scores = brute_force_topk(
        lambda s: teacher_forced_log_probs(model.stepper(batch), s, 4), sids, N_ITEMS)
    items, scores = model.recommend(batch, trie, beam_width=N_ITEMS, top_k=N_ITEMS)
    assert torch.equal(items, ref_items)
    assert torch.allclose(scores, ref_scores, atol=1e-5)
    items, scores = model.recommend(batch, trie, beam_width=N_ITEMS, top_k=5)  # top-5 of the same ranking
    assert torch.equal(items, ref_items[:, :5]) and torch.allclose(scores, ref_scores[:, :5], atol=1e-5)


# -- ablations ------------------------------------------------------------------------------------

def test_without_reasoning_it_is_tiger():
    model = tiny_s2gr(seed=7, use_reasoning=False)
    assert not any("level_position" in n or "global_decoder" in n for n, _ in model.named_parameters())
    torch.manual_seed(99)  # different initial weights, then TIGER's share copied over
    tiger = Tiger(TigerConfig(**{k: v for k, v in asdict(model.config).items() if k in asdict(TigerConfig())}))
    own = model.state_dict()
    tiger.load_state_dict({k: own[k] for k in tiger.state_dict()})
    tiger.eval()
    batch, sids = make_batch(model)
    (logits, loss), (tiger_logits, tiger_loss) = model(batch), tiger(batch)
    assert torch.equal(logits, tiger_logits) and torch.equal(loss, tiger_loss)
    assert {k: float(v) for k, v in model.loss_parts.items()} == {"ce": loss.item(), "align": 0.0, "global": 0.0,
                                                                   "reg": 0.0}
    trie = Trie.from_sids(sids, model.vocab.codebook_sizes)
    got, expected = model.recommend(batch, trie, 8, 5), tiger.recommend(batch, trie, 8, 5)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_without_think_loss_thinking_tokens_remain_but_the_loss_is_ce():
    model = tiny_s2gr(seed=8, think_loss_weight=0.0)
    assert not hasattr(model, "global_decoder") and not hasattr(model, "align_projection")
    batch, _ = make_batch(model)
    logits, loss = model(batch)
    assert loss.item() == pytest.approx(float(model.loss_parts["ce"]))
    assert float(model.loss_parts["align"]) == float(model.loss_parts["reg"]) == 0.0
    before = logits.clone()
    with torch.no_grad():
        model.level_position[1].add_(1.0)
    after, _ = model(batch)
    assert torch.equal(after[:, 0], before[:, 0]) and not torch.allclose(after[:, 1], before[:, 1])
    with pytest.raises(GenrecConfigError, match="think_loss_weight"):
        model.thinking_clusters(batch)


@pytest.mark.parametrize("variant", [{}, {"use_reasoning": False}, {"think_loss_weight": 0.0}])
def test_variants_lower_their_loss_in_a_few_adam_steps(variant):
    model = tiny_s2gr(seed=9, **variant).train()
    batch, _ = make_batch(model, n_users=8, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        _, loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    if not variant:  # every thinking module gets a gradient (DDP fails on parameters that get none)
        assert all(p.grad is not None for p in model.parameters())


# -- coarse clusters -----------------------------------------------------------------------------

def test_thinking_clusters_shapes_and_truth():
    model = tiny_s2gr(seed=10)
    batch, _ = make_batch(model)
    predicted, true = model.thinking_clusters(batch)
    assert predicted.shape == true.shape == (4, len(SIZES) - 1)
    assert ((predicted >= 0) & (predicted < N_COARSE)).all()
    _, assignments = clusters(10)
    expected = [[int(assignments[level][batch["targets"][b, level]]) for level in range(2)] for b in range(4)]
    assert true.tolist() == expected


def test_set_coarse_clusters_rejects_wrong_shapes():
    model = tiny_s2gr(with_clusters=False)
    centroids, assignments = clusters()
    with pytest.raises(GenrecDataError, match="quantiser levels"):
        model.set_coarse_clusters(centroids[:1], assignments[:1])
    with pytest.raises(GenrecDataError, match="d_code"):
        model.set_coarse_clusters([np.zeros((2, D_CODE + 1)), centroids[1]], assignments)
    with pytest.raises(GenrecDataError, match="n_coarse"):
        model.set_coarse_clusters([np.zeros((N_COARSE + 1, D_CODE)), centroids[1]], assignments)
    with pytest.raises(GenrecDataError, match="one cluster per code"):
        model.set_coarse_clusters(centroids, [assignments[0], assignments[1][:-1]])
    with pytest.raises(GenrecDataError, match=r"\[0, 2\)"):
        model.set_coarse_clusters(centroids, [assignments[0], np.array([0, 1, 2, 0])])
    assert not model.coarse_valid.any()  # a failed call leaves the buffers untouched


def test_fewer_clusters_than_n_coarse_are_padding():
    model = tiny_s2gr(with_clusters=False, n_coarse=3)
    centroids, assignments = clusters()  # 2 clusters per level
    model.set_coarse_clusters(centroids, assignments)
    assert model.coarse_valid.tolist() == [[True, True, False]] * 2
    predicted, _ = model.thinking_clusters(make_batch(model)[0])
    assert (predicted < 2).all()


def test_state_dict_round_trip_restores_the_clusters():
    model = tiny_s2gr(seed=11)
    rebuilt = S2gr(S2grConfig(**asdict(model.config))).eval()  # as load_checkpoint does
    rebuilt.load_state_dict(model.state_dict())
    for name in ("coarse_centroids", "coarse_valid", "coarse_assignment"):
        assert torch.equal(getattr(rebuilt, name), getattr(model, name))
    batch, _ = make_batch(model)
    predicted, true = rebuilt.thinking_clusters(batch)
    expected_predicted, expected_true = model.thinking_clusters(batch)
    assert torch.equal(predicted, expected_predicted) and torch.equal(true, expected_true)


def test_bad_configs_name_the_field():
    with pytest.raises(GenrecConfigError, match="tau"):
        tiny_config(tau=0.0)
    with pytest.raises(GenrecConfigError, match="codebook_sizes"):
        tiny_config(codebook_sizes=(4,))
    with pytest.raises(GenrecConfigError, match="reg_weight"):
        tiny_config(reg_weight=-1.0)
