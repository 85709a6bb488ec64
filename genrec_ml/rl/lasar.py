"""LASAR's RL phase (§2.4): the rewards of GRPO's candidates (appendix E.5), REINFORCE on the step policy
(eq. 6), and the step that puts them together with GRPO and the terminal KL.

GRPO itself is `genrec_ml.rl.grpo` and the loop `genrec_ml.rl.post_training` (both shared with REG4Rec's
PARS). The policy head's classes are N = 1..N_max: class k means k + 1 latent steps. GRPO's ratio is
the path-level one of `grpo_loss` (eq. 5 writes ρ_i = π_Θ(y_i|x) / π_ref(y_i|x); the clip acts on the
ratio to the sampling policy, as in GRPO and TRL, and π_ref enters through the KL term). One update per
batch of samples, so π_old is the current policy, detached.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from genrec_ml.data.cot_sequences import CotSequenceDataset
from genrec_ml.data.sequences import SequenceDataset
from genrec_ml.decoding import Constraint, Trie, constrained_beam_search
from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.alignment import terminal_alignment
from genrec_ml.rl.grpo import GrpoConfig, group_advantages, grpo_loss
from genrec_ml.rl.post_training import PostTrainResult, run_post_training
from genrec_ml.train.config import TrainConfig
from genrec_ml.train.loop import Callback
from genrec_ml.train.tasks import SidTask


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


# --- the RL phase (§2.4): GRPO on the answer, REINFORCE on the step policy, terminal KL to the last anchor ---


@dataclass
class LasarRlContext:
    """What an RL step reads besides the model: training examples (with CoT anchors when given), the trie."""

    data: SequenceDataset  # on the model's device; a CotSequenceDataset carries anchors for the terminal KL
    trie: Constraint
    grpo: GrpoConfig
    baseline: EmaBaseline


def lasar_rl_context(model, train_examples: pd.DataFrame, sids, max_history: int | None) -> LasarRlContext:
    cfg = model.config
    sids = torch.as_tensor(np.asarray(sids), dtype=torch.long)
    if len(sids) < cfg.rl_group:
        raise GenrecConfigError("rl_group", f"{cfg.rl_group} candidates per prompt from a catalog of {len(sids)}")
    cls = CotSequenceDataset if "n_segments" in train_examples.columns else SequenceDataset
    data = cls(train_examples, sids, model.vocab, max_history).to(model.device)
    trie = Trie.from_sids(sids, model.vocab.codebook_sizes).to(model.device)
    return LasarRlContext(data, trie, GrpoConfig(epsilon=cfg.rl_epsilon, kl_beta=cfg.rl_kl_beta),
                          EmaBaseline(cfg.baseline_decay))


def sample_steps(policy_logits: Tensor, generator: torch.Generator) -> Tensor:
    """N ~ π(· | h_0) (§2.4: RL samples where SFT takes the argmax), (B,) in 1..N_max."""
    probs = policy_logits.float().softmax(dim=-1).cpu()
    return (torch.multinomial(probs, 1, generator=generator)[:, 0] + 1).to(policy_logits.device)


def candidate_log_probs(model, batch: dict[str, Tensor], steps: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher-forced `(token log-probs (B, G, L), latent states (B, T, d))` of `codes (B, G, L)` after each
    prompt's `steps`; a prompt's G candidates share its N, so its latent states are computed once."""
    rows, group, levels = codes.shape
    repeated = {"input_ids": batch["input_ids"].repeat_interleave(group, dim=0),
                "attention_mask": batch["attention_mask"].repeat_interleave(group, dim=0),
                "targets": codes.flatten(0, 1)}
    logits, _, latent, _ = model.teacher_forced(repeated, steps.repeat_interleave(group))  # (BG, L, K_max)
    token = logits.float().log_softmax(dim=-1).gather(2, repeated["targets"][..., None])[..., 0]
    return token.view(rows, group, levels), latent[::group]


def lasar_rl_step(model, reference, context: LasarRlContext, optimizer, config: TrainConfig, step: int
                  ) -> dict[str, float]:
    """One update on `rl_users` prompts: sample N, G candidates by beam search under it, r_rule + r_NDCG,
    L = L_GRPO + γ_KL L_TerminalKL + γ_RF L_REINFORCE (§2.4); returns the step's means."""
    cfg = model.config
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    index = torch.randint(len(context.data), (cfg.rl_users,), generator=generator)  # (U,)
    batch = context.data.batch(index.numpy())
    model.eval()  # dropout off, as TRL: the policy and the reference see the same network
    with torch.no_grad():
        h0, policy_logits, _, _, _ = model.begin(batch["input_ids"], batch["attention_mask"])
        steps = (model.steps_from(policy_logits) if cfg.fixed_steps is not None
                 else sample_steps(policy_logits, generator))  # (U,)
        items, _ = constrained_beam_search(model.stepper(batch, steps), context.trie, cfg.rl_users, cfg.rl_group,
                                           cfg.rl_group)  # (U, G) in beam order
        codes = context.data.sids[items.clamp(min=0)]  # (U, G, L)
        rewards = lasar_rewards(items, batch["target_items"])  # (U, G)
        advantages = group_advantages(rewards)  # eq. 5: standardised within the group
        ref, _ = candidate_log_probs(reference, batch, steps, codes)
    new, latent = candidate_log_probs(model, batch, steps, codes)
    loss, stats = grpo_loss(new, new.detach(), ref, advantages, torch.ones_like(new, dtype=torch.bool), context.grpo)
    parts = {"grpo": loss.detach()}
    if cfg.terminal_kl_weight and "n_segments" in batch and bool((batch["n_segments"] > 0).any()):
        has_cot = batch["n_segments"] > 0
        terminal = terminal_alignment(latent[has_cot], batch["anchors"][has_cot].to(latent.dtype), steps[has_cot],
                                      batch["n_segments"][has_cot])
        loss = loss + cfg.terminal_kl_weight * terminal
        parts["terminal_kl"] = terminal.detach()
    group_reward = rewards.mean(dim=1)  # (U,) R_group
    baseline = context.baseline.value if context.baseline.value is not None else float(group_reward.mean())
    if cfg.reinforce_weight and cfg.fixed_steps is None:
        # §2.4 optimises the policy head with REINFORCE; the backbone learns from GRPO (h_0 detached here)
        reinforce = reinforce_step_loss(model.policy_head(h0.detach()), steps, group_reward, baseline,
                                        cfg.step_penalty, cfg.entropy_coef)
        loss = loss + cfg.reinforce_weight * reinforce
        parts["reinforce"] = reinforce.detach()
    context.baseline.update(group_reward)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return {"step": step + 1, "loss": float(loss.detach()), "reward": float(rewards.mean()),
            "hit_rate": float(rule_reward(items, batch["target_items"]).max(dim=1).values.mean()),
            "mean_n": float(steps.float().mean()), "baseline": float(context.baseline.value),
            **{k: float(v) for k, v in parts.items()}, **{k: float(v) for k, v in stats.items()}}


def post_train(model, train_examples: pd.DataFrame, valid_examples: pd.DataFrame, sids, config: TrainConfig,
               workdir: str | Path, callback: Callback | None = None, seconds_left: float | None = None
               ) -> PostTrainResult:
    """LASAR's RL phase on `model` (an SFT-trained `Lasar`) in place, against a frozen copy of it; returns
    with the best validated weights loaded (resumable from `workdir/last.pt`)."""
    cfg = model.config
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    context = lasar_rl_context(model, train_examples, sids, config.max_history)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.rl_lr, weight_decay=0.0)
    valid = valid_examples.iloc[: config.eval_max_examples] if config.eval_max_examples else valid_examples
    task = SidTask(torch.as_tensor(np.asarray(sids), dtype=torch.long), beam_width=config.eval_beam_width)

    def restore_baseline(result: PostTrainResult) -> None:
        if result.history:
            context.baseline.value = result.history[-1]["baseline"]

    return run_post_training(model, lambda step: lasar_rl_step(model, reference, context, optimizer, config, step),
                             cfg.rl_steps, cfg.rl_eval_every, optimizer, valid, task, config, Path(workdir),
                             event="rl", callback=callback, seconds_left=seconds_left, on_resume=restore_baseline)
