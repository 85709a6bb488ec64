"""LASAR's rewards (appendix E.5) and REINFORCE on the step policy (eq. 6): hand values and a toy."""

import math

import pytest
import torch

from genrec_ml.rl.lasar import EmaBaseline, lasar_rewards, ndcg_reward, reinforce_step_loss, rule_reward


def test_rewards_by_hand():
    candidates, target = torch.tensor([[5, 7, 9], [1, 2, 3]]), torch.tensor([7, 4])
    assert rule_reward(candidates, target).tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    weights = [1.0, 1 / math.log2(3), 0.5]  # 1 / log2(i + 2)
    penalty = [-w / sum(weights) for w in weights]  # -.469279, -.296082, -.234639
    ndcg = ndcg_reward(candidates, target)
    assert ndcg[0].tolist() == pytest.approx([penalty[0], 0.0, penalty[2]], abs=1e-6)
    assert ndcg[1].tolist() == [0.0, 0.0, 0.0]  # the target is not in the group: no penalty
    assert lasar_rewards(candidates, target)[0].tolist() == pytest.approx([penalty[0], 1.0, penalty[2]], abs=1e-6)


def test_ema_baseline():
    baseline = EmaBaseline(decay=0.9)
    assert baseline.update(torch.tensor([1.0, 0.0])) == pytest.approx(0.5)
    assert baseline.update(torch.tensor([1.0])) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="decay"):
        EmaBaseline(decay=1.0)


def test_reinforce_loss_by_hand():
    # uniform over N in {1, 2}; N = 2 sampled, R 1, b .5, λ .1: A = .3; H = ln 2
    loss = reinforce_step_loss(torch.zeros(1, 2), torch.tensor([2]), torch.tensor([1.0]), baseline=0.5,
                               step_penalty=0.1, entropy_coef=0.01)
    assert loss.item() == pytest.approx(-0.3 * math.log(0.5) - 0.01 * math.log(2), abs=1e-6)


def test_reinforce_moves_probability_toward_the_better_step_count():
    """Only N = 2 earns a reward; a step penalty makes N = 3 (also rewarded half) the worse choice."""
    torch.manual_seed(0)
    logits = torch.zeros(4, requires_grad=True)  # N_max = 4, one prompt's head output
    optimizer = torch.optim.SGD([logits], lr=0.5)
    baseline = EmaBaseline(decay=0.9)
    reward_of = torch.tensor([0.0, 1.0, 0.5, 0.0])
    for _ in range(300):
        step_logits = logits.expand(32, 4)
        n = torch.distributions.Categorical(logits=step_logits).sample() + 1  # (32,) in 1..4
        reward = reward_of[n - 1]
        b = baseline.value if baseline.value is not None else float(reward.mean())
        loss = reinforce_step_loss(step_logits, n, reward, b, step_penalty=0.05, entropy_coef=0.001)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        baseline.update(reward)
    probs = torch.softmax(logits, 0)
    assert probs[1] > 0.8 and probs.argmax() == 1
