"""GRPO (REG4Rec eq. 8-9): hand-computed advantages and losses, the loop reference, a toy policy."""

import math

import pytest
import torch

from genrec_ml.errors import GenrecConfigError
from genrec_ml.rl import GrpoConfig, group_advantages, grpo_loss, grpo_loss_reference, k3_kl

EPS = 1e-4


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 3.0]])
    # row 0: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = sqrt(1/3)
    # row 1: all equal -> 0 (numerator is exactly 0)
    # row 2: mean 0.75, unbiased std sqrt((3 * 0.5625 + 5.0625) / 3) = 1.5
    s0 = math.sqrt(1 / 3)
    expected = torch.tensor(
        [
            [0.5 / (s0 + EPS), -0.5 / (s0 + EPS), -0.5 / (s0 + EPS), 0.5 / (s0 + EPS)],
            [0.0, 0.0, 0.0, 0.0],
            [-0.75 / (1.5 + EPS), -0.75 / (1.5 + EPS), -0.75 / (1.5 + EPS), 2.25 / (1.5 + EPS)],
        ]
    )
    torch.testing.assert_close(group_advantages(rewards), expected)
    assert (group_advantages(rewards)[1] == 0).all()


def test_unscaled_advantages_only_centre_the_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.95, 0.96, 0.95, 0.94]])
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0, 0.01, 0.0, -0.01]])
    torch.testing.assert_close(group_advantages(rewards, scale=False), expected)
    # scaled, the second group's 0.01 differences become advantages of about 1.2 (its std is 0.0082)
    assert group_advantages(rewards)[1, 1] > 1.0


def test_group_advantages_needs_two_paths():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(3, 1))


def test_k3_kl_by_hand():
    logp = torch.log(torch.tensor([0.5, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.3]))
    # x = log(0.25 / 0.5) = -ln 2: e^x - x - 1 = 0.5 + ln 2 - 1; equal log-probs give 0
    torch.testing.assert_close(k3_kl(logp, ref), torch.tensor([math.log(2) - 0.5, 0.0]))


def _clipping_case():
    """One group of 4 paths, T = 2, path ratios 1.5, 0.5, 0.5, 1.5 with A = +1, +1, -1, -1."""
    old = torch.zeros(1, 4, 2)
    new = torch.zeros(1, 4, 2)
    # split each path's log-ratio over its two tokens; path 3's second token is padding
    for g, log_ratio in enumerate([math.log(1.5), math.log(0.5), math.log(0.5)]):
        new[0, g] = torch.tensor([0.3 * log_ratio, 0.7 * log_ratio])
    new[0, 3, 0] = math.log(1.5)
    new[0, 3, 1], old[0, 3, 1] = -math.inf, -math.inf  # padding may hold -inf
    mask = torch.ones(1, 4, 2, dtype=torch.bool)
    mask[0, 3, 1] = False
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    return new, old, advantages, mask


def test_grpo_loss_clipping_by_hand():
    new, old, advantages, mask = _clipping_case()
    new.requires_grad_(True)
    loss, stats = grpo_loss(new, old, None, advantages, mask, GrpoConfig(epsilon=0.15))
    # min(rA, clip(r)A): 1.15 (clipped), 0.5, -0.85 (clipped), -1.5  -> mean -0.175
    assert loss.item() == pytest.approx(0.175, abs=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(0.5)
    assert stats["ratio_mean"].item() == pytest.approx(1.0, abs=1e-6)
    assert stats["kl"].item() == 0.0
    loss.backward()
    # clipped paths get no gradient; others d(-rA/4)/dlogp = -rA/4 per real token, 0 at padding
    expected_grad = torch.tensor([[[0.0, 0.0], [-0.125, -0.125], [0.0, 0.0], [0.375, 0.0]]])
    torch.testing.assert_close(new.grad, expected_grad)

    ref_loss, ref_stats = grpo_loss_reference(new.detach(), old, None, advantages, mask, GrpoConfig(epsilon=0.15))
    assert ref_loss == pytest.approx(0.175, abs=1e-6)
    assert ref_stats["clip_fraction"] == pytest.approx(0.5)


def test_grpo_loss_kl_term_by_hand():
    logp = torch.log(torch.full((1, 2, 1), 0.5))
    ref = torch.log(torch.full((1, 2, 1), 0.25))
    mask = torch.ones(1, 2, 1, dtype=torch.bool)
    advantages = torch.zeros(1, 2)  # objective 0: the loss is the KL term alone
    loss, stats = grpo_loss(logp, logp, ref, advantages, mask, GrpoConfig(kl_beta=0.04))
    assert stats["kl"].item() == pytest.approx(math.log(2) - 0.5)
    assert loss.item() == pytest.approx(0.04 * (math.log(2) - 0.5))
    loss0, stats0 = grpo_loss(logp, logp, ref, advantages, mask, GrpoConfig(kl_beta=0.0))
    assert loss0.item() == 0.0
    assert stats0["kl"].item() == pytest.approx(math.log(2) - 0.5)  # still reported


@pytest.mark.parametrize("with_ref", [True, False])
def test_grpo_loss_matches_reference(with_ref):
    gen = torch.Generator().manual_seed(0)
    shape = (3, 4, 5)
    old = -torch.rand(shape, generator=gen) * 3
    new = old + 0.3 * torch.randn(shape, generator=gen)  # path ratios well outside [0.85, 1.15]
    ref = old + 0.2 * torch.randn(shape, generator=gen) if with_ref else None
    mask = torch.rand(shape, generator=gen) > 0.3
    advantages = torch.randn(3, 4, generator=gen)
    config = GrpoConfig()
    loss, stats = grpo_loss(new, old, ref, advantages, mask, config)
    ref_loss, ref_stats = grpo_loss_reference(new, old, ref, advantages, mask, config)
    assert 0 < ref_stats["clip_fraction"] < 1  # both clipped and unclipped paths are exercised
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    for key, value in ref_stats.items():
        assert stats[key].item() == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_gradient_reaches_only_token_logp():
    gen = torch.Generator().manual_seed(1)
    shape = (2, 3, 4)
    new = (-torch.rand(shape, generator=gen)).requires_grad_(True)
    old = (new.detach() + 0.1 * torch.randn(shape, generator=gen)).requires_grad_(True)
    ref = (new.detach() + 0.1 * torch.randn(shape, generator=gen)).requires_grad_(True)
    advantages = torch.randn(2, 3, generator=gen).requires_grad_(True)
    mask = torch.ones(shape, dtype=torch.bool)
    loss, stats = grpo_loss(new, old, ref, advantages, mask, GrpoConfig())
    grads = torch.autograd.grad(loss, [new, old, ref, advantages], allow_unused=True)
    assert grads[0] is not None and grads[0].abs().sum() > 0
    assert all(g is None for g in grads[1:])
    assert all(not s.requires_grad for s in stats.values())


def test_grpo_config_validates():
    with pytest.raises(GenrecConfigError, match="epsilon"):
        GrpoConfig(epsilon=0.0)
    with pytest.raises(GenrecConfigError, match="kl_beta"):
        GrpoConfig(kl_beta=-1.0)


def test_toy_policy_learns_the_rewarded_action():
    """A categorical policy over 5 actions, reward 1 for action 3 only, learns to pick it."""
    torch.manual_seed(0)
    logits = torch.zeros(5, requires_grad=True)
    ref_logp = torch.log_softmax(logits.detach(), dim=0)  # the initial policy is the reference
    optimizer = torch.optim.Adam([logits], lr=0.1)
    n_groups, group_size = 4, 8
    for _ in range(30):
        with torch.no_grad():
            actions = torch.multinomial(torch.softmax(logits, 0), n_groups * group_size, replacement=True)
            actions = actions.view(n_groups, group_size)  # (U, G)
            old_logp = torch.log_softmax(logits, 0)[actions]
        rewards = (actions == 3).float()
        logp = torch.log_softmax(logits, 0)[actions]  # (U, G)
        loss, _ = grpo_loss(
            logp[..., None],  # (U, G, T=1): one token per path
            old_logp[..., None],
            ref_logp[actions][..., None],
            group_advantages(rewards),
            torch.ones(n_groups, group_size, 1, dtype=torch.bool),
            GrpoConfig(),
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mean_reward = torch.softmax(logits.detach(), 0)[3].item()  # expected reward of the final policy
    assert mean_reward > 0.9


def test_padding_with_inf_leaves_loss_and_gradient_finite():
    new, old, advantages, mask = _clipping_case()  # -inf at the padded token of path 3
    new.requires_grad_(True)
    loss, stats = grpo_loss(new, old, old.clone(), advantages, mask, GrpoConfig())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(stats["kl"])
    assert torch.isfinite(new.grad).all() and new.grad[0, 3, 1] == 0
