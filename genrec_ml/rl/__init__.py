"""Reinforcement-learning pieces shared by RL post-training: GRPO (REG4Rec's PARS, LASAR) and REG4Rec's rewards."""

from genrec_ml.rl.grpo import GrpoConfig, group_advantages, grpo_loss, grpo_loss_reference, k3_kl
from genrec_ml.rl.rewards import (
    MISSING,
    Rewards,
    category_hit,
    js_divergence,
    msra_reward,
    msra_weights,
    msra_windows,
    path_reward,
    reward_components,
    step_consistency,
    step_hit,
)

__all__ = [
    "MISSING",
    "GrpoConfig",
    "Rewards",
    "category_hit",
    "group_advantages",
    "grpo_loss",
    "grpo_loss_reference",
    "js_divergence",
    "k3_kl",
    "msra_reward",
    "msra_weights",
    "msra_windows",
    "path_reward",
    "reward_components",
    "step_consistency",
    "step_hit",
]
