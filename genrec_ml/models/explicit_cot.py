"""Explicit CoT (GREAM's reasoning supervision on MiniOneRec's prompt): LASAR's "Explicit CoT_GREAM" baseline
(LASAR §3.1, appendix D).

GREAM trains a recommender to answer in two modes: directly (prompt -> SID) and by reasoning (prompt ->
chain of thought -> SID). LASAR keeps its CoT chain, replaces its 19 alignment prompts by MiniOneRec's
template, and reports "its own ablation's strongest configuration: CoT SFT + direct answer inference".
So each training example is learnt in both modes, on the same prompt:

    direct:     [prompt] <a_t><b_t>...
    reasoning:  [prompt] <bot> c_1 c_2 ... c_C <eot> <a_t><b_t>...

where c_1..c_C are the teacher CoT's tokens (`cot_texts`, the same text LASAR aligns to). GREAM tells
the modes apart by instruction; here the template must stay MiniOneRec's in every model (appendix E.2),
so the response's opening token is the switch: <bot> opens reasoning, a SID token the direct answer.
The loss (paper silent on weights; GREAM's SFT is the plain LM loss):
L = direct_weight · CE(direct answer) + the token mean of CE over the reasoning response (the CoT's
tokens over the whole vocabulary, <eot>, then the answer's levels each over its own codes, as in
MiniOneRec). Rows without a CoT learn the direct mode only.

Inference: `direct` (the reported configuration) is MiniOneRec's trie-constrained beam search from the
prompt; `generate` (GREAM's reasoning mode, the "CoT Gen." row of LASAR Table 4) first writes a CoT
greedily (text tokens only, up to `max_cot_tokens`, until <eot>), then searches the answer after it:
the cost the latent loop avoids. Both decode the same weights, so `generate` is a derived run.

The backbone starts from Stage 1's (MiniOneRec's) weights, as LASAR's Stage 2 does (genrec's choice:
the paper fine-tunes every generative method from Qwen3-0.6B; with a from-scratch backbone the
SID-grounded Stage 1 is that shared starting point, so the two differ in the reasoning mechanism only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.minionerec import _CACHE_ARG, MiniOneRec, MiniOneRecConfig, MiniOneRecState, MiniOneRecStepper
from genrec_ml.models.minionerec import PROFILES as MINIONEREC_PROFILES
from genrec_ml.text.prompt import LATENT_END, LATENT_START, UNK
from genrec_ml.vocab import PAD

INFERENCE = ("direct", "generate")
IGNORE = -100


@dataclass(frozen=True)
class ExplicitCotConfig(MiniOneRecConfig):
    # CoT tokens kept per example, its start (the template's ~88 words spell to ~380 character pieces
    # on amazon-beauty; a longer teacher text is cut here); the paper gives no limit
    max_cot_tokens: int = 512
    direct_weight: float = 1.0  # the direct mode's share of the loss (GREAM trains both; paper silent)
    inference: str = "direct"  # LASAR's reported configuration; "generate" writes the CoT first (Table 4)
    max_positions: int = 1024  # prompt + history + CoT + answer
    title_tasks: bool = False  # as LASAR's Stage 2: Stage 1 did the title <-> SID tasks

    def __post_init__(self):
        super().__post_init__()
        if self.max_cot_tokens < 1:
            raise GenrecConfigError("max_cot_tokens", f"must be >= 1, got {self.max_cot_tokens}")
        if self.direct_weight < 0:
            raise GenrecConfigError("direct_weight", f"must be >= 0, got {self.direct_weight}")
        if self.inference not in INFERENCE:
            raise GenrecConfigError("inference", f"{self.inference!r}; choose from {INFERENCE}")


# fine-tunes Stage 1's backbone: the same architecture per profile
PROFILES: dict[str, ExplicitCotConfig] = {
    name: ExplicitCotConfig(**{f: getattr(c, f) for f in c.__dataclass_fields__
                               if f not in ("max_positions", "title_tasks")})
    for name, c in MINIONEREC_PROFILES.items()}


class ExplicitCot(MiniOneRec):
    name = "explicit_cot"
    config_class = ExplicitCotConfig
    profiles = PROFILES
    cot_input = "text"  # trains on the CoT texts (genrec_ml.inputs.bundle_cot)
    lr_ratio = 0.1  # fine-tunes Stage 1 as LASAR's Stage 2 does, at a tenth of its peak lr (LASAR Table 7)
    inference_fields = ("inference",)  # `generate` decodes the direct model's weights (genrec_ml.derived)

    def __init__(self, config: ExplicitCotConfig):
        super().__init__(config)
        self.cot_start = self.tokenizer.token_to_id(LATENT_START)
        self.cot_end = self.tokenizer.token_to_id(LATENT_END)
        # what a written CoT may contain: every text token and <eot>; no SID, pad, eos, <bot> or <unk>
        allowed = torch.ones(self.lm.get_output_embeddings().weight.shape[0], dtype=torch.bool)
        allowed[self.token_of] = False  # pad, eos and every SID token
        allowed[self.cot_start] = False
        if self.tokenizer.token_to_id(UNK) is not None:
            allowed[self.tokenizer.token_to_id(UNK)] = False
        self.register_buffer("text_allowed", allowed, persistent=False)
        self.loss_parts: dict[str, Tensor] = {}  # the last forward's terms, logged by the training loop

    def encode_texts(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Teacher-forced `(direct-mode logits (B, L, K_max), loss)`; the reasoning mode where the batch has
        `cot_ids (B, C)` and `cot_lengths (B,)`."""
        batch = self._to_device(batch)
        logits, direct = super().forward(batch)
        parts = {"direct": direct}
        loss = self.config.direct_weight * direct
        if "cot_ids" in batch:
            text, answer, tokens = self.reasoning_terms(batch)
            parts |= {"cot_text": text.sum() / tokens[0].clamp(min=1),
                      "cot_answer": answer.sum() / tokens[1].clamp(min=1)}
            loss = loss + (text.sum() + answer.sum()) / tokens.sum().clamp(min=1)
        self.loss_parts = {k: v.detach() for k, v in parts.items()}
        return logits, loss

    def reasoning_response(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """`(tokens (B, E), mask (B, E), text targets (B, C + 1))` of `<bot> c_1..c_C [pad] <eot> a_1..a_{L-1}`:
        a row's CoT padding sits before its <eot> (masked, positions not counted), so every row's answer
        fills the last L - 1 columns; target j is what column j (<bot>, then c_j) predicts: c_{j+1}, then
        <eot> after the last CoT token, IGNORE past it."""
        cot, lengths, targets = batch["cot_ids"], batch["cot_lengths"], batch["targets"]
        rows, width = cot.shape
        column = torch.arange(width + 1, device=cot.device)[None, :]  # (1, C + 1)
        real = column[:, :width] < lengths[:, None]  # (B, C)
        start = cot.new_full((rows, 1), self.cot_start)
        end = cot.new_full((rows, 1), self.cot_end)
        answer = self.sid_tokens(targets[:, :-1])  # (B, L - 1)
        tokens = torch.cat([start, cot.masked_fill(~real, PAD), end, answer], dim=1)
        ones = torch.ones_like(start, dtype=torch.bool)
        mask = torch.cat([ones, real, ones, torch.ones_like(answer, dtype=torch.bool)], dim=1)
        text_targets = torch.cat([cot, cot.new_zeros(rows, 1)], dim=1)
        text_targets = torch.where(column < lengths[:, None], text_targets,
                                   torch.where(column == lengths[:, None], self.cot_end, IGNORE))
        return tokens, mask, text_targets

    def reasoning_terms(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Summed CE of the reasoning mode: `(text (B,), answer (B,), token counts (2,))`, rows with a CoT only."""
        tokens, mask, text_targets = self.reasoning_response(batch)
        has_cot = batch["cot_lengths"] > 0  # (B,)
        text_targets = text_targets.masked_fill(~has_cot[:, None], IGNORE)
        hidden, _, _, _ = self.run_prompt(batch["input_ids"], batch["attention_mask"], tokens, mask)
        hidden = hidden[:, -tokens.shape[1]:]  # (B, E, d): the response's columns
        scored = text_targets != IGNORE  # (B, C + 1): only these reach the output matrix (its full vocabulary)
        text_logits = self.lm.lm_head(hidden[:, :text_targets.shape[1]][scored]).float()
        text = torch.zeros(has_cot.shape, device=hidden.device).index_put(
            (scored.nonzero()[:, 0],), F.cross_entropy(text_logits, text_targets[scored], reduction="none"),
            accumulate=True)
        levels = batch["targets"].shape[1]
        answer_logits = self.level_logits(hidden[:, -levels:])  # (B, L, K_max): <eot> predicts level 0
        answer = F.cross_entropy(answer_logits.flatten(0, 1).float(), batch["targets"].flatten(),
                                 reduction="none").view(-1, levels).sum(dim=1) * has_cot
        counts = torch.stack([scored.sum(), has_cot.sum() * levels])
        return text, answer, counts

    def stepper(self, batch: dict[str, Tensor]) -> MiniOneRecStepper:
        batch = self._to_device(batch)
        cls = ExplicitCotStepper if self.config.inference == "generate" else MiniOneRecStepper
        return cls(self, batch["input_ids"], batch["attention_mask"])

    @torch.no_grad()
    def write_cot(self, input_ids: Tensor, attention_mask: Tensor):
        """GREAM's reasoning mode: `(the CoT token ids (B, T) PAD past each row's end, its lengths (B,), the state
        after each row's <eot>)`, greedy over the text tokens, at most `max_cot_tokens` before <eot>.
        Finished rows feed masked padding (positions not counted) until every row is done."""
        rows = input_ids.shape[0]
        start = input_ids.new_full((rows, 1), self.cot_start)
        hidden, mask, cache, position = self.run_prompt(input_ids, attention_mask, start)
        h = hidden[:, -1]
        finished = torch.zeros(rows, dtype=torch.bool, device=h.device)
        last, written = torch.zeros_like(h), []
        for t in range(self.config.max_cot_tokens + 1):
            if t < self.config.max_cot_tokens:
                logits = self.lm.lm_head(h).float().masked_fill(~self.text_allowed, float("-inf"))
                token = logits.argmax(dim=-1)
            else:  # the cap: every unfinished row closes its CoT
                token = torch.full_like(finished, self.cot_end, dtype=torch.long)
            feed = ~finished
            token = token.masked_fill(finished, PAD)
            mask = torch.cat([mask, feed[:, None]], dim=1)
            out = self.lm.model(input_ids=token[:, None], attention_mask=mask.long(), position_ids=position[:, None],
                                use_cache=True, **{_CACHE_ARG: cache})
            cache, h = getattr(out, _CACHE_ARG), out.last_hidden_state[:, -1]
            ending = feed & (token == self.cot_end)
            last = torch.where(ending[:, None], h, last)
            written.append(torch.where(feed & ~ending, token, PAD))
            finished = finished | ending
            position = position + feed.long()
            if bool(finished.all()):  # one host read per written token: inference only
                break
        cot = torch.stack(written, dim=1)
        return cot, (cot != PAD).sum(dim=1), MiniOneRecState(cache, mask, position, last)


class ExplicitCotStepper(MiniOneRecStepper):
    """`genrec_ml.decoding.Stepper` of the reasoning mode: the prompt and a written CoT once per user, then one
    cached token per level as MiniOneRec; all beams of a user share its CoT."""

    def start(self, batch_size: int) -> MiniOneRecState:
        if batch_size != self.batch_size:
            raise ValueError(f"stepper holds {self.batch_size} users, search asked for {batch_size}")
        _, self.cot_lengths, state = self.model.write_cot(self.input_ids, self.attention_mask)
        return state
