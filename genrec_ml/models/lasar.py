"""LASAR: MiniOneRec's decoder-only recommender with an adaptive latent reasoning loop (LASAR §2.2-2.3,
appendix E.1, E.3, E.6).

Sequence per example (MiniOneRec's prompt, `genrec_ml.models.minionerec`):

    [prompt] <bot> h_0 h_1 ... h_{N-1} <eot> <a_t><b_t>...

h_0 is the last-layer hidden state at the prompt's final token, <bot> (the paper's <s>). Each latent
position takes the previous position's last hidden state as its input embedding (eq. 3: E~_t =
[E_X, h_0, ..., h_{t-1}]), one forward step at a time on the KV cache; after N steps <eot> (<e>) is fed
and its output predicts the answer's first level, then the answer runs as in MiniOneRec. Hidden
states are the backbone's final (normed) outputs, the same states the CoT anchors are taken from.

Policy head: a two-layer MLP on h_0, softmax(W_2 tanh(W_1 h_0 + b_1) + b_2) over N = 1..N_max (§2.2).
SFT runs N = argmax of the head (the paper's choice; `sft_steps="label"` runs the CoT segment count
instead) and trains the head with cross-entropy on the segment counts (class N - 1). Its gradient
reaches the backbone through h_0: the paper does not say to stop it, and the head is part of the model.

Variable N in one batch (appendix E.1): the loop runs max(N) times for every row; a row past its own N
appends a masked position (attention 0) whose state nothing later attends to, and its position ids
stop counting, so each row's <eot> and answer see exactly its own N steps at the positions it would
have alone (tested: a row alone = the same row in a batch with larger N). `forward_reference` is the
plain computation: every latent step recomputes the whole embedding sequence, one row at a time.

SFT loss (§2.3): L = CE(answer) + α·L_align + β·L_policy, α = β = 0.1 (Table 7); L_align is eq. 4
(`genrec_ml.models.alignment`: step t against CoT segment t, rows with N > S left out, E.3), or Table
2's cosine / MSE, or none. Rows without a CoT (valid and test examples) add CE only. Inference
(appendix E.6): N from the head (argmax) or `fixed_steps` (Figure 4a's Force N), the loop, <eot>, then
the shared trie-constrained beam search from the cache: all beams of a user share its N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.alignment import KINDS, stepwise_alignment
from genrec_ml.models.minionerec import (
    _CACHE_ARG,
    MiniOneRec,
    MiniOneRecConfig,
    MiniOneRecState,
    MiniOneRecStepper,
)
from genrec_ml.models.minionerec import (
    PROFILES as MINIONEREC_PROFILES,
)
from genrec_ml.text.prompt import LATENT_END, LATENT_START

ALIGNMENTS = (*KINDS, "none")
SFT_STEPS = ("policy", "label")


@dataclass(frozen=True)
class LasarConfig(MiniOneRecConfig):
    title_tasks: bool = False  # Stage 2 trains on the recommendation prompt only (Stage 1 did the title tasks)
    max_steps: int = 8  # N_max, the policy head's classes N = 1..N_max (Table 7)
    align_weight: float = 0.1  # α_align (Table 7)
    policy_weight: float = 0.1  # β_policy (Table 7)
    alignment: str = "bikl"  # eq. 4's bidirectional KL; "cosine" / "mse" / "none" are Table 2's ablations
    sft_steps: str = "policy"  # N during SFT: the head's argmax (§2.2) or the CoT segment count
    fixed_steps: int | None = None  # Force N (Figure 4a): every example runs this many steps, the head unused
    # RL phase (§2.4, Table 7), after SFT; rl_steps = 0 is the SFT model
    rl_steps: int = 0
    rl_users: int = 32  # prompts per RL step (paper silent; TRL's per-device batch of prompts is of this order)
    rl_group: int = 8  # G candidates per prompt, by beam search (Table 7, appendix E.5)
    rl_lr: float = 1e-5  # Table 7
    rl_epsilon: float = 0.2  # GRPO clip (Table 7)
    rl_kl_beta: float = 1e-3  # GRPO's KL to the frozen SFT model (Table 7)
    rl_eval_every: int = 50  # validations keep the best RL weights (the SFT ones when no step beats them)
    terminal_kl_weight: float = 1e-5  # γ_KL (Table 7); 0 = "w/o Terminal KL" (Table 3)
    reinforce_weight: float = 0.01  # γ_RF (Table 7); 0 = "w/o REINFORCE": N still sampled, the head not trained
    step_penalty: float = 5e-4  # λ of eq. 6 (Table 7: 1e-4 / 5e-4 / 1e-3)
    entropy_coef: float = 1e-3  # η of eq. 6: the paper gives no value
    baseline_decay: float = 0.9  # b_EMA's decay: the paper gives no value

    def __post_init__(self):
        super().__post_init__()
        if self.max_steps < 1:
            raise GenrecConfigError("max_steps", f"must be >= 1, got {self.max_steps}")
        if self.alignment not in ALIGNMENTS:
            raise GenrecConfigError("alignment", f"{self.alignment!r}; choose from {ALIGNMENTS}")
        if self.sft_steps not in SFT_STEPS:
            raise GenrecConfigError("sft_steps", f"{self.sft_steps!r}; choose from {SFT_STEPS}")
        if self.rl_steps and self.rl_group < 2:
            raise GenrecConfigError("rl_group", f"GRPO compares G >= 2 candidates per prompt, got {self.rl_group}")
        if self.fixed_steps is not None and not 0 <= self.fixed_steps <= self.max_steps:
            raise GenrecConfigError("fixed_steps", f"must lie in 0..max_steps = {self.max_steps}, got "
                                    f"{self.fixed_steps}")


# Stage 2 fine-tunes Stage 1's backbone: the same architecture per profile
PROFILES: dict[str, LasarConfig] = {
    name: LasarConfig(**{f: getattr(c, f) for f in c.__dataclass_fields__ if f != "title_tasks"})
    for name, c in MINIONEREC_PROFILES.items()}


class Lasar(MiniOneRec):
    name = "lasar"
    config_class = LasarConfig
    profiles = PROFILES
    cot_input = "anchors"  # trains on the CoT anchor states (genrec_ml.inputs.bundle_cot)
    fresh_modules = ("policy_head.",)  # what Stage 1's weights lack (`genrec_ml.train.checkpoint.warm_start`)
    lr_ratio = 0.1  # Stage 2 fine-tunes Stage 1 at a tenth of its peak lr (Table 7: 5e-4, then 5e-5)
    # what only the RL phase reads: a run differing in these starts from the SFT weights (genrec_ml.derived)
    post_training_fields = ("rl_steps", "rl_users", "rl_group", "rl_lr", "rl_epsilon", "rl_kl_beta", "rl_eval_every",
                            "terminal_kl_weight", "reinforce_weight", "step_penalty", "entropy_coef", "baseline_decay")

    def __init__(self, config: LasarConfig):
        super().__init__(config)
        self.latent_start = self.tokenizer.token_to_id(LATENT_START)
        self.latent_end = self.tokenizer.token_to_id(LATENT_END)
        self.policy_head = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.Tanh(),
                                         nn.Linear(config.d_model, config.max_steps))
        self.loss_parts: dict[str, Tensor] = {}  # the last forward's terms, logged by the training loop

    def begin(self, input_ids: Tensor, attention_mask: Tensor):
        """The prompt and <bot>: `(h_0 (B, d), policy logits (B, N_max), mask, cache, next position)`."""
        start = input_ids.new_full((input_ids.shape[0], 1), self.latent_start)
        hidden, mask, cache, position = self.run_prompt(input_ids, attention_mask, start)
        h0 = hidden[:, -1]
        return h0, self.policy_head(h0), mask, cache, position

    def steps_from(self, policy_logits: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B,) step counts: `fixed_steps`, else the labels where given (> 0), else the head's argmax + 1."""
        if self.config.fixed_steps is not None:
            return torch.full(policy_logits.shape[:1], self.config.fixed_steps, dtype=torch.long,
                              device=policy_logits.device)
        chosen = policy_logits.argmax(dim=-1) + 1
        if labels is None:
            return chosen
        return torch.where(labels > 0, labels.clamp(max=self.config.max_steps), chosen)

    def latent_loop(self, h0: Tensor, n_steps: Tensor, mask: Tensor, cache, position: Tensor):
        """Eq. 3 on the KV cache: `(latent states h_1..h_T (B, T, d), mask, cache, next position)`, T = max N.

        One pass per step over one position per row; rows past their N get a masked position.
        """
        states, h = [], h0
        longest = int(n_steps.max()) if len(n_steps) else 0  # the loop's length: one host read per batch
        for t in range(longest):
            active = n_steps > t  # (B,)
            mask = torch.cat([mask, active[:, None]], dim=1)
            out = self.lm.model(inputs_embeds=h[:, None], attention_mask=mask.long(), position_ids=position[:, None],
                                use_cache=True, **{_CACHE_ARG: cache})
            cache, h = getattr(out, _CACHE_ARG), out.last_hidden_state[:, -1]
            states.append(h)
            position = position + active.long()
        latent = torch.stack(states, dim=1) if states else h0.new_zeros(h0.shape[0], 0, h0.shape[1])
        return latent, mask, cache, position

    def forward(self, batch: dict[str, Tensor], steps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher-forced `(logits (B, L, K_max), L_SFT)`; `steps (B,)` forces each row's N (tests, RL).

        Optional batch fields: `n_segments (B,)` (0 = no CoT) and `anchors (B, S, d)`.
        """
        batch = self._to_device(batch)
        labels = batch.get("n_segments")
        logits, policy_logits, latent, steps = self.teacher_forced(
            batch, steps, labels if self.config.sft_steps == "label" else None)
        targets = batch["targets"]
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        parts = {"ce": ce}
        if labels is not None:
            parts |= self.reasoning_losses(policy_logits, latent, steps, labels, batch.get("anchors"))
        loss = ce + self.config.align_weight * parts.get("align", 0.0) + \
            self.config.policy_weight * parts.get("policy", 0.0)
        self.loss_parts = {k: v.detach() for k, v in parts.items()}
        return logits, loss

    def teacher_forced(self, batch: dict[str, Tensor], steps: Tensor | None = None, labels: Tensor | None = None):
        """`(logits (B, L, K_max), policy logits (B, N_max), latent states (B, max N, d), steps (B,))` of the
        answer `batch["targets"]` after `steps` latent steps (default: `steps_from` the head and `labels`)."""
        h0, policy_logits, mask, cache, position = self.begin(batch["input_ids"], batch["attention_mask"])
        steps = self.steps_from(policy_logits, labels) if steps is None else steps.to(h0.device)
        latent, mask, cache, position = self.latent_loop(h0, steps, mask, cache, position)
        return self.answer_logits(batch["targets"], mask, cache, position), policy_logits, latent, steps

    def answer_logits(self, targets: Tensor, mask: Tensor, cache, position: Tensor) -> Tensor:
        """<eot> and the answer's first L - 1 codes after the cache: `(B, L, K_max)` logits of the L levels."""
        rows, levels = targets.shape
        answer = torch.cat([targets.new_full((rows, 1), self.latent_end),
                            self.sid_tokens(targets[:, :-1])], dim=1)  # (B, L)
        mask = torch.cat([mask, torch.ones_like(answer, dtype=torch.bool)], dim=1)
        out = self.lm.model(input_ids=answer, attention_mask=mask.long(),
                            position_ids=position[:, None] + torch.arange(levels, device=answer.device),
                            use_cache=True, **{_CACHE_ARG: cache})
        return self.level_logits(out.last_hidden_state)

    def reasoning_losses(self, policy_logits: Tensor, latent: Tensor, steps: Tensor, labels: Tensor,
                         anchors: Tensor | None) -> dict[str, Tensor]:
        """L_policy (CE on the segment counts) and L_align over the rows that have a CoT (labels > 0)."""
        has_cot = labels > 0
        target = (labels.clamp(1, self.config.max_steps) - 1)
        per_row = F.cross_entropy(policy_logits.float(), target, reduction="none")
        parts = {"policy": (per_row * has_cot).sum() / has_cot.sum().clamp(min=1)}
        if anchors is not None and anchors.shape[-1] != self.config.d_model:
            raise GenrecDataError(f"anchor states are {anchors.shape[-1]} wide, the backbone {self.config.d_model}: "
                                  "they come from another Stage-1 model", field="anchors")
        if self.config.alignment != "none" and anchors is not None and latent.shape[1]:
            counts = torch.where(has_cot, labels, torch.zeros_like(labels))  # no CoT: S = 0, the row left out
            parts["align"] = stepwise_alignment(latent, anchors.to(latent.dtype), steps, counts,
                                                self.config.alignment)
        return parts

    def forward_reference(self, batch: dict[str, Tensor], steps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`(logits (B, L, K_max), latent states (B, max N, d))` by plain recomputation, row by row: each
        latent step runs the whole embedding sequence [E_X, E(<bot>), h_0, ..., h_{t-1}] again, no cache,
        no padding; a row's latent states past its N are zero."""
        batch = self._to_device(batch)
        ids, mask = self.prompt(batch["input_ids"], batch["attention_mask"])
        embed = self.lm.model.embed_tokens
        all_logits, all_latent = [], []
        for row in range(ids.shape[0]):
            sequence = embed(torch.cat([ids[row][mask[row]], ids.new_tensor([self.latent_start])]))[None]  # (1, P, d)
            h = self._last_state(sequence)
            n = int(steps[row]) if steps is not None else int(self.steps_from(self.policy_head(h))[0])
            states = []
            for _ in range(n):
                sequence = torch.cat([sequence, h[:, None]], dim=1)
                h = self._last_state(sequence)
                states.append(h[0])
            answer = torch.cat([ids.new_tensor([self.latent_end]),
                                self.sid_tokens(batch["targets"][row, :-1])])
            hidden = self.lm.model(inputs_embeds=torch.cat([sequence, embed(answer)[None]], dim=1)).last_hidden_state
            all_logits.append(self.level_logits(hidden[:, -len(answer):])[0])
            all_latent.append(torch.stack(states) if states else hidden.new_zeros(0, hidden.shape[-1]))
        longest = max(len(s) for s in all_latent)
        latent = torch.stack([F.pad(s, (0, 0, 0, longest - len(s))) for s in all_latent])
        return torch.stack(all_logits), latent

    def _last_state(self, embeddings: Tensor) -> Tensor:
        return self.lm.model(inputs_embeds=embeddings).last_hidden_state[:, -1]  # (1, d)

    @torch.no_grad()
    def predict_steps(self, batch: dict[str, Tensor]) -> Tensor:
        """(B,) the N inference runs for each example (the head's argmax, or `fixed_steps`)."""
        batch = self._to_device(batch)
        _, policy_logits, _, _, _ = self.begin(batch["input_ids"], batch["attention_mask"])
        return self.steps_from(policy_logits)

    def stepper(self, batch: dict[str, Tensor], steps: Tensor | None = None) -> LasarStepper:
        batch = self._to_device(batch)
        return LasarStepper(self, batch["input_ids"], batch["attention_mask"], steps)


class LasarStepper(MiniOneRecStepper):
    """`genrec_ml.decoding.Stepper`: the prompt, <bot>, N latent steps and <eot> once per user (Algorithm 1),
    then one cached token per level as MiniOneRec; `steps` holds each user's N after `start`."""

    def __init__(self, model: Lasar, input_ids: Tensor, attention_mask: Tensor, steps: Tensor | None = None):
        super().__init__(model, input_ids, attention_mask)
        self.steps = steps  # (B,) forced N (RL's sampled N), else the head's choice once `start` ran

    def start(self, batch_size: int) -> MiniOneRecState:
        if batch_size != self.batch_size:
            raise ValueError(f"stepper holds {self.batch_size} users, search asked for {batch_size}")
        model: Lasar = self.model
        h0, policy_logits, mask, cache, position = model.begin(self.input_ids, self.attention_mask)
        self.steps = model.steps_from(policy_logits) if self.steps is None else self.steps.to(h0.device)
        _, mask, cache, position = model.latent_loop(h0, self.steps, mask, cache, position)
        end = self.input_ids.new_full((batch_size, 1), model.latent_end)
        mask = torch.cat([mask, torch.ones_like(end, dtype=torch.bool)], dim=1)
        out = model.lm.model(input_ids=end, attention_mask=mask.long(), position_ids=position[:, None],
                             use_cache=True, **{_CACHE_ARG: cache})
        return MiniOneRecState(getattr(out, _CACHE_ARG), mask, position + 1, out.last_hidden_state[:, -1])

