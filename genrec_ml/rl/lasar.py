"""LASAR's RL pieces: the rewards of GRPO's candidates (appendix E.5) and REINFORCE on the step policy (eq. 6).

GRPO itself is `genrec_ml.rl.grpo` (shared with REG4Rec's PARS). The policy head's classes are
N = 1..N_max: class k means k + 1 latent steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def rule_reward(candidates: Tensor, target: Tensor) -> Tensor:
    """r_rule (eq. 9): `candidates (B, G)` item ids in beam order, `target (B,)` -> (B, G) 1.0 on a hit."""
    return (candidates == target[:, None]).float()


def ndcg_reward(candidates: Tensor, target: Tensor) -> Tensor:
    """r_NDCG (eq. 10), as MiniOneRec computes it: in a group that holds the target, the i-th (0-based)
    non-target candidate gets -(1 / log2(i + 2)) / sum_j 1 / log2(j + 2); the target and every
    candidate of a group without it get 0. Eq. 10 as printed (w_i / sum w_j with w_i < 0) is
    positive, while its text says it penalizes: the sign of MiniOneRec's code, which LASAR follows,
    is taken."""
    g = candidates.shape[1]
    weight = torch.tensor([1.0 / math.log2(i + 2) for i in range(g)], device=candidates.device)
    penalty = -weight / weight.sum()  # (G,)
    hit = candidates == target[:, None]  # (B, G)
    group_has_target = hit.any(dim=1, keepdim=True)  # (B, 1)
    return torch.where(hit | ~group_has_target, torch.zeros_like(penalty), penalty)


def lasar_rewards(candidates: Tensor, target: Tensor) -> Tensor:
    """r = r_rule + r_NDCG (§2.4), (B, G)."""
    return rule_reward(candidates, target) + ndcg_reward(candidates, target)


class EmaBaseline:
    """b_EMA of eq. 6: the exponential moving average of the group rewards seen so far."""

    def __init__(self, decay: float = 0.9):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.value: float | None = None  # the first update sets it to that batch's mean

    def update(self, rewards: Tensor) -> float:
        mean = float(rewards.detach().float().mean())
        self.value = mean if self.value is None else self.decay * self.value + (1.0 - self.decay) * mean
        return self.value


def reinforce_step_loss(step_logits: Tensor, n_steps: Tensor, group_reward: Tensor, baseline: float,
                        step_penalty: float, entropy_coef: float) -> Tensor:
    """L_REINFORCE (eq. 6): -mean[(R_group - b - λN) log π(N | h_0)] - η H(π), a scalar.

    `step_logits (B, N_max)` the policy head's, `n_steps (B,)` the sampled N in 1..N_max,
    `group_reward (B,)` each prompt's reward averaged over its G candidates, `baseline` b_EMA
    (taken before this batch updates it). H is the batch mean of each distribution's entropy.
    """
    log_probs = torch.log_softmax(step_logits.float(), dim=-1)  # (B, N_max)
    chosen = log_probs.gather(1, (n_steps - 1)[:, None]).squeeze(1)  # (B,)
    advantage = (group_reward.float() - baseline - step_penalty * n_steps.float()).detach()  # (B,)
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
    return -(advantage * chosen).mean() - entropy_coef * entropy
