"""PARS (REG4Rec §3.4.2): GRPO post-training of a pre-trained REG4Rec, with MSRA's rewards (§3.4.3).

One step:

1. draw `pars_users` training examples (a pure function of (seed, step), so a resumed run draws the
   same ones and the same paths);
2. draw G = `pars_group` paths per user from the current policy (`Reg4Rec.rollouts`: sampled, sampled
   among catalog items, or CRSS beam search's top G, by `pars_paths`): this policy is π_old of eq. 9,
   since each batch of paths is used for one update (TRL's default num_iterations = 1; the ratio is
   then 1 at the update, its gradient is not). Beam-searched paths are not samples of π_old; GRPO
   then reads as MiniOneRec's and LASAR's over beam candidates: the group's advantages rank the
   paths inference would return;
3. score each path with the four rewards against the user's next h training targets (MSRA window,
   `genrec_ml.rl.rewards`; h = 1 is "w/o MSRA"), total = their sum;
4. group-normalised advantages (eq. 8), the clipped path-ratio objective (eq. 9) and the KL to the
   frozen pre-trained model (`genrec_ml.rl.grpo`), one AdamW step.

The policy's log-probability of a path is the sum over its M steps of log p_k(c), the chosen
codebook's log-softmax at its code; the sampling's 1/#open factor is the same for every policy and
cancels in ratios and KL. Dropout is off (as TRL does), the policy and the reference see the same
network. Validation (the valid split's first `eval_max_examples`, CRSS beam search) runs before the
first step and every `pars_eval_every` steps; the best validated weights are kept (the pre-trained
ones when no step beats them). `last.pt` in the work folder resumes an interrupted run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from genrec_ml.data.sequences import SequenceDataset
from genrec_ml.decoding.token_sets import TokenSetConstraint
from genrec_ml.rl.grpo import GrpoConfig, group_advantages, grpo_loss
from genrec_ml.rl.post_training import PostTrainResult, run_post_training
from genrec_ml.rl.rewards import Rewards, msra_windows
from genrec_ml.train.config import TrainConfig
from genrec_ml.train.ladq import LadqConfig, LadqController, apply_precisions
from genrec_ml.train.loop import Callback
from genrec_ml.train.tasks import SidTask

COMPONENTS = ("step", "category", "consistency", "path", "total")


ParsResult = PostTrainResult  # what PARS returns: the shared post-training record


@dataclass
class RewardInputs:
    """What the rewards read of the catalog, on the training device."""

    item_tokens: Tensor  # (N, M) token ids of each item's M codebook tokens
    item_categories: Tensor  # (N,)
    token_vectors: Tensor  # (V, d) codeword vector of each token id (0 for non-code tokens)
    item_vectors: Tensor  # (N, d) sum of each item's M codewords


def reward_inputs(model, sids: Tensor, codeword_vectors: list[np.ndarray]) -> RewardInputs:
    m = model.n_sets
    if len(codeword_vectors) < m:
        raise ValueError(f"{len(codeword_vectors)} codebooks of codeword vectors for a model of {m} codebooks")
    vocab, device = model.vocab, model.device
    dim = codeword_vectors[0].shape[1]
    token_vectors = torch.zeros(vocab.size, dim, device=device)
    for level in range(m):
        vectors = torch.as_tensor(np.asarray(codeword_vectors[level]), dtype=torch.float32, device=device)
        token_vectors[vocab.level_slice(level)][: len(vectors)] = vectors
    item_tokens = vocab.code_tokens(torch.as_tensor(sids, device=device))[:, :m]  # (N, M)
    return RewardInputs(item_tokens, model.item_categories, token_vectors, token_vectors[item_tokens].sum(dim=1))


@dataclass
class ParsContext:
    """Everything a PARS step reads besides the model: examples, MSRA windows, reward inputs, settings."""

    data: SequenceDataset  # training examples on the model's device
    windows: Tensor  # (N_train, h) the next h training targets of each example (MISSING past the end)
    inputs: RewardInputs
    rewards: Rewards
    grpo: GrpoConfig
    constraint: TokenSetConstraint  # the catalog, as CRSS decodes it (`pars_paths` "catalog" and "beam")


def pars_context(model, train_examples: pd.DataFrame, sids, codeword_vectors, max_history: int | None) -> ParsContext:
    """A PARS context with the model config's reward and GRPO settings."""
    cfg = model.config
    sids = torch.as_tensor(np.asarray(sids), dtype=torch.long)
    data = SequenceDataset(train_examples, sids, model.vocab, max_history)
    data.to(model.device)
    windows = msra_windows(train_examples, cfg.msra_horizon).to(model.device)  # training targets only
    rewards = Rewards(h=cfg.msra_horizon, w=cfg.msra_decay, top_n=cfg.path_top_n, max_errors=cfg.path_max_errors)
    return ParsContext(data, windows, reward_inputs(model, sids, codeword_vectors), rewards,
                       GrpoConfig(epsilon=cfg.pars_epsilon, kl_beta=cfg.pars_kl_beta),
                       model.build_constraint(sids).to(model.device))


def path_log_probs(model, batch: dict[str, Tensor], order: Tensor, codes: Tensor, group: int
                   ) -> tuple[Tensor, Tensor]:
    """Teacher-forced `(token log-probs (P, M), category probabilities (P, M, G))` of sampled paths."""
    memory = model.encode(batch["input_ids"], batch["attention_mask"]).repeat_interleave(group, dim=0)
    mask = batch["attention_mask"].repeat_interleave(group, dim=0)
    logits, category_logits = model.path_outputs(memory, mask, order, codes)  # (P, M, K_max), (P, M, G)
    token = logits.float().log_softmax(dim=-1).gather(2, codes[..., None])[..., 0]
    return token, category_logits.float().softmax(dim=-1)


def post_train(model, train_examples: pd.DataFrame, valid_examples: pd.DataFrame, sids, codeword_vectors,
               config: TrainConfig, workdir: str | Path, callback: Callback | None = None,
               seconds_left: float | None = None) -> ParsResult:
    """PARS on `model` (a pre-trained `Reg4Rec`) in place; returns with the best validated weights loaded.

    `seconds_left`: what `max_train_seconds` leaves after pre-training; PARS then validates and stops
    when its own time passes it (the run records the steps taken).
    """
    cfg, workdir = model.config, Path(workdir)
    sids = torch.as_tensor(np.asarray(sids), dtype=torch.long)
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    context = pars_context(model, train_examples, sids, codeword_vectors, config.max_history)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.pars_lr, weight_decay=0.0)
    valid = valid_examples.iloc[: config.eval_max_examples] if config.eval_max_examples else valid_examples
    task = SidTask(sids, beam_width=config.eval_beam_width)
    ladq = _ladq(model, context.data, config) if cfg.ladq else None
    first = []  # LADQ decides precisions at the first step this process takes, resumed or not

    def step_fn(step: int) -> dict[str, float]:
        if ladq is not None:
            ladq.maybe_update(step, ladq.loss_fn, force=not first)
        first.append(step)
        metrics = pars_step(model, reference, context, optimizer, config, step)
        if ladq is not None:
            metrics |= {f"ladq_{p}_layers": n for p, n in ladq.summary().items()}
        return metrics

    result = run_post_training(model, step_fn, cfg.pars_steps, cfg.pars_eval_every, optimizer, valid, task, config,
                               workdir, event="pars", callback=callback, seconds_left=seconds_left)
    if ladq is not None:
        apply_precisions(ladq.layers, {})  # the kept model runs in fp32
    return result


def _ladq(model, data: SequenceDataset, config: TrainConfig) -> LadqController:
    """LADQ over the model's linear layers; sensitivities from the pre-training loss on a fixed batch."""
    cfg = model.config
    controller = LadqController(model, LadqConfig(every=cfg.ladq_every, loss_budget=cfg.ladq_budget), model.device,
                                seed=config.seed)
    probe = data.batch(np.arange(min(len(data), config.batch_size)))
    controller.loss_fn = lambda: model(probe)[1]
    return controller


def pars_step(model, reference, context: ParsContext, optimizer, config: TrainConfig, step: int) -> dict[str, float]:
    """One GRPO update on `pars_users` users x `pars_group` paths; returns the step's means."""
    cfg = model.config
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    index = torch.randint(len(context.data), (cfg.pars_users,), generator=generator)  # (U,)
    torch.manual_seed(config.seed * 1_000_003 + step)  # the sampling stream, also a function of (seed, step)
    batch = context.data.batch(index.numpy())
    model.eval()
    order, codes = model.rollouts(batch, cfg.pars_group, context.constraint)  # (P, M) each, user-major
    # One update per batch of samples: π_old is the policy as it is now (dropout off), so its
    # log-probs are this pass's values, detached, and the policy runs once
    new, category = path_log_probs(model, batch, order, codes, cfg.pars_group)
    with torch.no_grad():
        ref, _ = path_log_probs(reference, batch, order, codes, cfg.pars_group)
        window = context.windows[index.to(context.windows.device)].repeat_interleave(cfg.pars_group, dim=0)  # (P, h)
        seen = window.clamp(min=0)
        inputs = context.inputs
        parts = context.rewards.components(model.position_tokens(order, codes), category.detach(),
                                           inputs.item_tokens[seen], window, inputs.item_categories[seen],
                                           inputs.token_vectors, inputs.item_vectors)
        advantages = group_advantages(parts["total"].view(cfg.pars_users, cfg.pars_group),
                                      scale=cfg.pars_scale_rewards)  # (U, G)
    shape = (cfg.pars_users, cfg.pars_group, order.shape[1])
    loss, stats = grpo_loss(new.view(shape), new.detach().view(shape), ref.view(shape), advantages,
                            torch.ones(shape, dtype=torch.bool, device=new.device), context.grpo)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    out = {"step": step + 1, "loss": float(loss.detach())}
    out |= {f"reward_{name}": float(parts[name].mean()) for name in COMPONENTS}
    out |= {name: float(value) for name, value in stats.items()}
    return out
