r"""Group Relative Policy Optimization (GRPO) as REG4Rec's PARS uses it (§3.4.2, eq. 8-9).

For each user u the old policy samples a group of G paths y_1..y_G (one path = the M tokens of one
item), each scored with a scalar reward r_i.

Advantage (eq. 8), relative to the group:

    A_i = (r_i - mean_g r) / (std_g r + eps)

std is the unbiased (G - 1) estimate, as TRL's GRPOTrainer computes it; eps (1e-4, TRL's value)
keeps a group whose rewards are all equal finite, and since r_i - mean = 0 there it gets A = 0:
such a group carries no learning signal. The paper writes no eps; dividing by a zero std is
undefined, so some eps is needed.

Objective (eq. 9), with a PATH-level ratio as the paper writes it:

    r_i  = pi_theta(y_i | u) / pi_old(y_i | u) = exp(sum_t mask_t (log pi_theta - log pi_old))
    J    = mean_{u, i} min(r_i A_i, clip(r_i, 1 - epsilon, 1 + epsilon) A_i)
    loss = -J + kl_beta * mean_{masked tokens} KL3(pi_theta || pi_ref)

DeepSeekMath's GRPO (and TRL) clip a per-token ratio and average the tokens of a sequence;
REG4Rec's r_i is a ratio of whole-path probabilities, so we clip one ratio per path. With M <= 8
tokens a path is short and the two differ little; we follow the paper.

Where the paper is silent:
- KL term. Eq. 9's text names D_KL against a reference policy but the printed formula has none.
  We add DeepSeekMath's per-token k3 estimator KL3 = exp(ref - logp) - (ref - logp) - 1 (unbiased,
  always >= 0), averaged over the masked tokens, with kl_beta = 0.04 (DeepSeekMath's and TRL's
  default). It is skipped when no reference log-probabilities are given or kl_beta == 0.
- epsilon = 0.15 is REG4Rec's (§4.1, Implementation Details).
- The summed log-ratio is clamped to [-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT] before exp (verl clamps
  its per-token log-ratio the same way): a path of M tokens can drift far enough in one update for
  exp to overflow, and inf * 0 in the backward pass would turn every gradient into NaN. e^20 is far
  outside any clip range, so the clamp only changes updates that were already pathological.
- Padding tokens (mask False) are replaced by 0 with torch.where before any arithmetic, rather than
  multiplied by 0 afterwards, so -inf or NaN log-probabilities at padded positions reach neither the
  loss nor its gradient.

`grpo_loss_reference` is the same computation as plain Python loops over u, g and t; the tests
check that the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genrec_ml.errors import GenrecConfigError

LOG_RATIO_LIMIT = 20.0  # |log r_i| cap before exp; see the module docstring


@dataclass(frozen=True)
class GrpoConfig:
    epsilon: float = 0.15  # clip range of the path ratio, REG4Rec §4.1
    kl_beta: float = 0.04  # weight of the k3 KL to the reference policy; paper silent: DeepSeekMath/TRL default

    def __post_init__(self):
        if not 0 < self.epsilon < 1:
            raise GenrecConfigError("epsilon", f"must be in (0, 1), got {self.epsilon}")
        if self.kl_beta < 0:
            raise GenrecConfigError("kl_beta", f"must be >= 0 (0 disables the KL term), got {self.kl_beta}")


def group_advantages(rewards: Tensor, eps: float = 1e-4, scale: bool = True) -> Tensor:
    """Eq. 8: each path's reward standardised within its group. rewards (U, G) -> (U, G).

    `scale=False` only centres (Dr. GRPO, Liu et al. 2025; TRL's `scale_rewards=False`): dividing by
    the group's std blows a group of near-equal rewards up to unit advantages, so whichever reward
    term varies a little in every group (REG4Rec's step consistency, while hits are rare) drives the
    update alone.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (U, G) with G >= 2 paths per group, got shape {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (U, G)
    return centred / (rewards.std(dim=1, keepdim=True) + eps) if scale else centred


def k3_kl(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """Per-element k3 estimate of KL(pi || pi_ref) from samples of pi: e^x - x - 1, x = logp_ref - logp."""
    log_ratio = logp_ref - logp
    return torch.exp(log_ratio) - log_ratio - 1


def _check_shapes(token_logp, old_token_logp, ref_token_logp, advantages, mask) -> None:
    if token_logp.dim() != 3:
        raise ValueError(f"token_logp must be (U, G, T), got shape {tuple(token_logp.shape)}")
    shape = token_logp.shape
    named = {"old_token_logp": old_token_logp, "mask": mask}
    if ref_token_logp is not None:
        named["ref_token_logp"] = ref_token_logp
    for name, tensor in named.items():
        if tensor.shape != shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, token_logp has {tuple(shape)}")
    if advantages.shape != shape[:2]:
        raise ValueError(f"advantages must be (U, G) = {tuple(shape[:2])}, got {tuple(advantages.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool, got {mask.dtype}")


def grpo_loss(
    token_logp: Tensor,
    old_token_logp: Tensor,
    ref_token_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    config: GrpoConfig,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 9 as a loss to minimise, plus detached stats {"ratio_mean", "clip_fraction", "kl"}.

    token_logp (U, G, T): log pi_theta of each sampled token, the only input gradients reach.
    old_token_logp, ref_token_logp (U, G, T): log pi_old (sampling policy) and log pi_ref.
    advantages (U, G) from `group_advantages`; mask (U, G, T) bool, False at padding.

    clip_fraction is the share of paths whose clipped term is the one `min` keeps (ratio beyond
    1 + epsilon with A > 0, or below 1 - epsilon with A < 0): the paths that get no gradient, as
    TRL's clip_ratio counts them. kl is 0 when ref_token_logp is None.
    """
    _check_shapes(token_logp, old_token_logp, ref_token_logp, advantages, mask)
    zero = token_logp.new_zeros(())
    # padding is replaced before any arithmetic: where() after exp would still send 0 * inf = NaN back
    token_logp = torch.where(mask, token_logp, zero)
    old_token_logp = torch.where(mask, old_token_logp.detach(), zero)
    advantages = advantages.detach()

    token_log_ratio = token_logp - old_token_logp  # (U, G, T), 0 at padding
    path_log_ratio = token_log_ratio.sum(dim=2).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)  # (U, G)
    ratio = torch.exp(path_log_ratio)
    clipped = ratio.clamp(1 - config.epsilon, 1 + config.epsilon)
    objective = torch.minimum(ratio * advantages, clipped * advantages).mean()
    loss = -objective

    kl = zero
    if ref_token_logp is not None:
        ref_token_logp = torch.where(mask, ref_token_logp.detach(), zero)
        with torch.set_grad_enabled(config.kl_beta > 0 and torch.is_grad_enabled()):
            token_kl = k3_kl(token_logp, ref_token_logp)  # (U, G, T), 0 at padding
            kl = token_kl.sum() / mask.sum().clamp(min=1)
        if config.kl_beta > 0:
            loss = loss + config.kl_beta * kl

    is_clipped = ((ratio > 1 + config.epsilon) & (advantages > 0)) | ((ratio < 1 - config.epsilon) & (advantages < 0))
    stats = {
        "ratio_mean": ratio.detach().mean(),
        "clip_fraction": is_clipped.float().mean(),
        "kl": kl.detach(),
    }
    return loss, stats


def grpo_loss_reference(
    token_logp: Tensor,
    old_token_logp: Tensor,
    ref_token_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    config: GrpoConfig,
) -> tuple[float, dict[str, float]]:
    """`grpo_loss` written as loops over u, g, t on Python floats; for tests, not for training."""
    _check_shapes(token_logp, old_token_logp, ref_token_logp, advantages, mask)
    logp, old, adv, keep = token_logp.tolist(), old_token_logp.tolist(), advantages.tolist(), mask.tolist()
    ref = ref_token_logp.tolist() if ref_token_logp is not None else None
    n_users, n_paths, n_tokens = token_logp.shape
    eps = config.epsilon

    objective_sum = ratio_sum = 0.0
    n_clipped = 0
    kl_sum, kl_count = 0.0, 0
    for u in range(n_users):
        for g in range(n_paths):
            log_ratio = 0.0
            for t in range(n_tokens):
                if keep[u][g][t]:
                    log_ratio += logp[u][g][t] - old[u][g][t]
                    if ref is not None:
                        x = ref[u][g][t] - logp[u][g][t]
                        kl_sum += math.exp(x) - x - 1
                        kl_count += 1
            ratio = math.exp(min(max(log_ratio, -LOG_RATIO_LIMIT), LOG_RATIO_LIMIT))
            a = adv[u][g]
            clipped = min(max(ratio, 1 - eps), 1 + eps)
            objective_sum += min(ratio * a, clipped * a)
            ratio_sum += ratio
            n_clipped += (ratio > 1 + eps and a > 0) or (ratio < 1 - eps and a < 0)

    n_samples = n_users * n_paths
    kl = kl_sum / max(kl_count, 1)
    loss = -objective_sum / n_samples
    if ref is not None and config.kl_beta > 0:
        loss += config.kl_beta * kl
    return loss, {"ratio_mean": ratio_sum / n_samples, "clip_fraction": n_clipped / n_samples, "kl": kl}
