"""ReaRec: reduction to SASRec, the reasoning loop, and the ERL / PRL losses against hand-built ones."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from genrec_ml.models.item_model import attention_mask
from genrec_ml.models.rearec import info_nce, step_divergence
from tests.models.baselines.tiny import BATCH, make_batch, tiny_model


def batch():
    return make_batch(**BATCH)


@pytest.mark.parametrize("variant", ["erl", "prl"])
def test_without_reasoning_steps_rearec_is_sasrec(variant):
    sasrec = tiny_model("sasrec", seed=1)
    rearec = tiny_model("rearec-" + variant, reasoning_steps=0, temperature=1.0)
    rearec.backbone.load_state_dict(sasrec.state_dict())
    torch.testing.assert_close(rearec.full_sort_scores(batch()), sasrec.full_sort_scores(batch()))
    torch.testing.assert_close(rearec(batch())[1], sasrec(batch())[1])


def test_a_later_reasoning_step_never_changes_an_earlier_one():
    two = tiny_model("rearec-erl", reasoning_steps=2)
    one = tiny_model("rearec-erl", reasoning_steps=1)
    state = two.state_dict()
    one.load_state_dict(state | {"reasoning_embedding.weight": state["reasoning_embedding.weight"][:1]})
    history = batch()["history"]
    states = two.reason(history)  # (B, 3, d)
    torch.testing.assert_close(one.reason(history), states[:, :2])
    torch.testing.assert_close(states[:, 0], two.backbone.encode(history)[:, -1])  # h_0 is SASRec's state
    assert (states[:, 1] - states[:, 0]).abs().max() > 1e-3  # the steps do compute something new


def test_each_step_feeds_the_previous_state_back_with_its_reasoning_position():
    model = tiny_model("rearec-erl", reasoning_steps=2)
    sasrec, history = model.backbone, batch()["history"]
    x = sasrec.embed(history)  # (B, T, d)
    states = [sasrec.encode(history)[:, -1]]
    for k in range(2):  # the whole sequence again with one more token, a plain causal transformer
        token = sasrec.input_norm(states[-1] + model.reasoning_embedding.weight[k])  # (B, d)
        x = torch.cat([x, token[:, None]], dim=1)
        valid = torch.cat([history != 0, torch.ones(3, k + 1, dtype=torch.bool)], dim=1)
        states.append(sasrec.transformer(x, attention_mask(valid, causal=True))[:, -1])
    torch.testing.assert_close(model.reason(history), torch.stack(states, dim=1))


def test_erl_averages_the_steps_and_prl_reads_the_last():
    erl, prl = tiny_model("rearec-erl"), tiny_model("rearec-prl")
    for model, pick in ((erl, lambda s: s.mean(1)), (prl, lambda s: s[:, -1])):
        step_logits = model.step_logits(model.reason(batch()["history"]))  # (B, K + 1, N)
        torch.testing.assert_close(model.full_sort_scores(batch()), pick(step_logits))


def test_step_divergence_is_the_mean_kl_over_ordered_pairs():
    step_logits = torch.randn(4, 3, 7)
    log_p = step_logits.log_softmax(-1)
    pairs = [(j, i) for j, i in itertools.product(range(3), repeat=2) if j != i]
    brute = torch.stack([
        F.kl_div(log_p[:, i], log_p[:, j], log_target=True, reduction="none").sum(-1)  # KL(p_j || p_i)
        for j, i in pairs
    ]).mean()
    torch.testing.assert_close(step_divergence(step_logits), brute)


def test_erl_loss_is_the_mean_step_cross_entropy_minus_the_weighted_divergence():
    model = tiny_model("rearec-erl", kl_weight=0.3)
    targets = batch()["target_items"]
    step_logits = model.step_logits(model.reason(batch()["history"]))  # (B, 3, N)
    rec = torch.stack([F.cross_entropy(step_logits[:, k], targets) for k in range(3)]).mean()
    expected = rec - 0.3 * step_divergence(step_logits)
    torch.testing.assert_close(model(batch())[1], expected)
    assert set(model.loss_parts) == {"rec", "kl"}


def test_prl_anneals_the_earlier_steps_temperatures():
    model = tiny_model("rearec-prl", temperature_scale=5.0, progressive_weight=0.5)
    targets = batch()["target_items"]
    step_logits = model.step_logits(model.reason(batch()["history"]))  # (B, 3, N), already / temperature
    earlier = [F.cross_entropy(step_logits[:, 0] / 25, targets), F.cross_entropy(step_logits[:, 1] / 5, targets)]
    progressive = sum(earlier) / 2  # K = 2: step 0 at temperature * 5^2, step 1 at temperature * 5
    expected = F.cross_entropy(step_logits[:, 2], targets) + 0.5 * progressive
    torch.testing.assert_close(model(batch())[1], expected)  # eval mode: no contrastive view
    assert set(model.loss_parts) == {"last", "progressive"}


def test_prl_adds_the_contrastive_term_in_training_only():
    model = tiny_model("rearec-prl", noise_std=1.0, contrastive_weight=0.5).train()
    history = batch()["history"]
    torch.manual_seed(0)
    _, loss = model(batch())
    torch.manual_seed(0)  # the same noise: clean pass first, then the noisy one
    states, noisy = model.reason(history), model.reason(history, noise_std=1.0)
    contrastive = info_nce(noisy[:, 1:], states[:, 1:], model.config.temperature)
    assert contrastive > 0
    torch.testing.assert_close(loss - model.loss_parts["last"] - model.loss_parts["progressive"], 0.5 * contrastive)
    model.eval()
    model(batch())
    assert "contrastive" not in model.loss_parts
    quiet = tiny_model("rearec-prl", noise_std=0.0).train()
    quiet(batch())
    assert "contrastive" not in quiet.loss_parts


def test_info_nce_picks_each_query_s_own_key():
    keys = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (B=2, S=1, d=2)
    # query b against keys (1, 0) and (0, 1): logits (1, 0) and (0, 1) at temperature 1
    expected = F.cross_entropy(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    torch.testing.assert_close(info_nce(keys, keys, 1.0), expected)
    assert info_nce(keys, keys.flip(0), 1.0) > info_nce(keys, keys, 1.0)  # swapped keys: wrong matches
