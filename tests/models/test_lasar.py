"""LASAR's latent loop: KV cache = plain recomputation (logits, latent states, gradients), a row alone = the
same row padded among rows with larger N, the SFT loss by hand, step choice, Stage 1 weights, and beam
search through the loop = brute force."""

import pytest
import torch
import torch.nn.functional as F

from genrec_ml.decoding import Trie, constrained_beam_search
from genrec_ml.decoding.beam_search import brute_force_topk, teacher_forced_log_probs
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.alignment import bidirectional_kl
from genrec_ml.models.lasar import Lasar, LasarConfig
from genrec_ml.models.minionerec import MiniOneRec, MiniOneRecConfig
from genrec_ml.models.registry import model_config
from tests.models.test_minionerec import SIDS, SIZES, TINY, batch_of

HISTORIES, TARGETS = [[0, 5, 3], [4], [6, 6, 1, 2]], [2, 1, 0]


def tiny(seed: int = 0, **settings) -> Lasar:
    torch.manual_seed(seed)
    return Lasar(LasarConfig(codebook_sizes=SIZES, max_steps=5, **TINY, **settings)).eval()


def test_the_cached_latent_loop_equals_recomputing_the_whole_sequence_at_every_step():
    model = tiny()
    batch = batch_of(model, HISTORIES, TARGETS)
    steps = torch.tensor([2, 0, 5])
    logits, _ = model(batch, steps=steps)
    h0, policy_logits, mask, cache, position = model.begin(batch["input_ids"], batch["attention_mask"])
    latent, _, _, _ = model.latent_loop(h0, steps, mask, cache, position)
    reference_logits, reference_latent = model.forward_reference(batch, steps=steps)
    assert torch.allclose(logits, reference_logits, atol=1e-5)
    own = torch.arange(5)[None, :] < steps[:, None]  # (B, T): each row's own steps
    assert torch.allclose(latent[own], reference_latent[own], atol=1e-5)
    assert not torch.allclose(logits[0], model(batch, steps=torch.tensor([3, 0, 5]))[0][0], atol=1e-3)  # N matters


def test_a_row_alone_equals_the_same_row_padded_among_rows_with_more_steps():
    model = tiny()
    alone, _ = model(batch_of(model, [[4]], [1]), steps=torch.tensor([2]))
    together, _ = model(batch_of(model, [[4], [0, 5, 3, 6, 2]], [1, 2]), steps=torch.tensor([2, 7]))
    assert torch.allclose(alone[0], together[0], atol=1e-5)


def test_gradients_through_the_loop_equal_the_reference():
    model = tiny().train()
    batch = batch_of(model, HISTORIES, TARGETS)
    steps = torch.tensor([1, 3, 2])
    logits, _ = model(batch, steps=steps)
    F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten()).backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    reference, _ = model.forward_reference(batch, steps=steps)
    F.cross_entropy(reference.flatten(0, 1), batch["targets"].flatten()).backward()
    slow = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert fast.keys() == slow.keys() and all(torch.allclose(fast[n], slow[n], atol=1e-5) for n in fast)
    assert fast["lm.model.layers.0.self_attn.q_proj.weight"].abs().sum() > 0


def test_the_sft_loss_is_ce_plus_weighted_alignment_and_policy_cross_entropy_by_hand():
    model = tiny(align_weight=0.3, policy_weight=0.2, sft_steps="label")
    batch = batch_of(model, HISTORIES, TARGETS)
    torch.manual_seed(1)
    anchors = torch.randn(3, 4, 16)
    labels = torch.tensor([2, 0, 4])  # the second example has no CoT: CE only
    logits, loss = model({**batch, "n_segments": labels, "anchors": anchors})
    steps = torch.tensor([2, int(model.predict_steps(batch)[1]), 4])  # label mode: the labels, argmax without
    reference, latent = model.forward_reference(batch, steps=steps)
    ce = F.cross_entropy(reference.flatten(0, 1), batch["targets"].flatten())
    align = torch.stack([torch.stack([bidirectional_kl(latent[r, t], anchors[r, t]) for t in range(n)]).mean()
                         for r, n in ((0, 2), (2, 4))]).mean()
    h0, policy_logits, _, _, _ = model.begin(batch["input_ids"], batch["attention_mask"])
    policy = F.cross_entropy(policy_logits[[0, 2]], torch.tensor([1, 3]))
    assert torch.allclose(loss, ce + 0.3 * align + 0.2 * policy, atol=1e-5)
    assert set(model.loss_parts) == {"ce", "align", "policy"}


def test_steps_come_from_the_heads_argmax_or_are_forced():
    model = tiny()
    batch = batch_of(model, HISTORIES, TARGETS)
    _, policy_logits, _, _, _ = model.begin(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(model.predict_steps(batch), policy_logits.argmax(-1) + 1)
    forced = tiny(fixed_steps=4)
    assert forced.predict_steps(batch).tolist() == [4, 4, 4]
    with pytest.raises(GenrecConfigError, match="fixed_steps"):
        LasarConfig(codebook_sizes=SIZES, max_steps=3, fixed_steps=4)
    with pytest.raises(GenrecConfigError, match="alignment"):
        LasarConfig(codebook_sizes=SIZES, alignment="l1")


def test_stage_two_starts_from_stage_one_weights():
    torch.manual_seed(0)
    stage1 = MiniOneRec(MiniOneRecConfig(codebook_sizes=SIZES, **TINY))
    missing, unexpected = tiny(seed=5).load_state_dict(stage1.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("policy_head.") for name in missing)


def test_beam_search_through_the_latent_loop_equals_brute_force():
    model = tiny(seed=3)
    batch = batch_of(model, HISTORIES, TARGETS)
    trie = Trie.from_sids(SIDS, SIZES)
    stepper = model.stepper(batch)
    items, scores = constrained_beam_search(stepper, trie, 3, 7, 5)
    assert torch.equal(stepper.steps, model.predict_steps(batch))
    reference, reference_scores = brute_force_topk(lambda s: teacher_forced_log_probs(model.stepper(batch), s, 3),
                                                   SIDS, 5)
    assert torch.equal(items, reference) and torch.allclose(scores, reference_scores, atol=1e-5)
    # the stepper's scores are the teacher-forced forward's at the head's N
    steps = model.predict_steps(batch)
    logits, _ = model({**batch, "targets": SIDS[2].expand(3, -1)}, steps=steps)
    forward = logits.log_softmax(-1).gather(2, SIDS[2].expand(3, -1)[..., None]).sum(dim=(1, 2))
    assert torch.allclose(teacher_forced_log_probs(model.stepper(batch), SIDS, 3)[:, 2], forward, atol=1e-5)


def test_profiles_follow_stage_one():
    config = model_config("lasar", "paper", {"codebook_sizes": (256,) * 4 + (4,), "n_items": 10})
    assert (config.n_layers, config.d_model, config.max_steps, config.align_weight, config.policy_weight) == \
        (28, 1024, 8, 0.1, 0.1)


def test_anchors_of_another_width_are_refused():
    model = tiny()
    batch = batch_of(model, HISTORIES, TARGETS)
    with pytest.raises(GenrecDataError, match="anchor states are 8 wide, the backbone 16"):
        model({**batch, "n_segments": torch.tensor([1, 1, 1]), "anchors": torch.zeros(3, 1, 8)})
