"""MiniOneRec: a decoder-only language model that writes the next item's SID after the MiniOneRec prompt
(LASAR's "Pure SFT (MiniOneRec)" baseline and its Stage 1; LASAR appendix E.2).

Sequence per example, padded to the batch's longest prompt (LASAR appendix E.1 left-pads; here the
padding follows the preamble, which is the same in every row and so runs once per batch):

    preamble [pad ...] <a_..><b_..>..., <a_..>...  in chronological order ... ### Response :  <a_t><b_t>...

The history is the shared `SequenceDataset`'s SID tokens, oldest item first, a comma between items
(`genrec_ml.text.prompt`: the SID token ids are `SidVocab`'s, the template's words follow them).
Position ids count real tokens only, so a prompt's positions do not depend on its padding.
Training is SFT with the loss on the answer tokens only: step l's output is scored over level l's
codes (its block of the output matrix), the cross-entropy the search's log-probs are taken from, as
in TIGER; MiniOneRec's full-vocabulary LM loss would also spend probability on prompt words, which
constrained decoding never emits. Ranking: the shared trie-constrained beam search, one level per
step, from the prompt's KV cache.

Backbone: an HF `Qwen3ForCausalLM` built from config and trained from scratch (tied input/output
embeddings, as Qwen3-0.6B). `paper` is Qwen3-0.6B's architecture; `cpu` and `smoke` shrink it to
what trains on one CPU core (PROFILES says how it was measured). The tokenizer knows the dataset's
words (`text_words`, from the catalog: the template teacher's and the item titles'), so CoT text and
titles are words to it, not spellings. Loading a pretrained Qwen3 folder (LASAR fine-tunes
Qwen3-0.6B) is not built yet. Training adds MiniOneRec's title <-> SID tasks (`title_tasks`,
`genrec_ml.models.title_tasks`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Qwen3Config, Qwen3ForCausalLM
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.backbone import build_backbone, pretrained_fields
from genrec_ml.models.beam_ranking import BeamRanking
from genrec_ml.models.title_tasks import ItemTitles, title_task_losses
from genrec_ml.text.prompt import AFTER_HISTORY, PREAMBLE, SEPARATOR
from genrec_ml.vocab import PAD, SidVocab

# transformers 5 renames `past_key_values` (argument and output) to `cache`
_CACHE_ARG = "cache" if "cache" in inspect.signature(Qwen3Model.forward).parameters else "past_key_values"


@dataclass(frozen=True)
class MiniOneRecConfig:
    # K_l per SID level, the disambiguation level last; set from the catalog (LASAR: 4 x 256 RQ-KMeans)
    codebook_sizes: tuple[int, ...] = (256, 256, 256, 256, 8)
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int = 2  # grouped-query attention, as Qwen3
    head_dim: int = 32
    d_ff: int = 512
    dropout: float = 0.0  # attention dropout (Qwen3 trains without)
    max_positions: int = 512  # prompt (~60 tokens) + 20 history items x (L + 1) + the answer
    rope_theta: float = 1_000_000.0  # Qwen3's
    # whole-word tokens beyond the template's, set from the catalog (`genrec_ml.text.prompt.text_vocabulary`:
    # the template teacher's words and the item titles' most frequent); () spells every other word in characters
    text_words: tuple[str, ...] = ()
    # MiniOneRec's item-identification tasks beside the next-item loss (`genrec_ml.models.title_tasks`)
    title_tasks: bool = True
    title_batch: int = 32  # catalog items per step, each in both tasks (~1:5 against a 256 batch, as MiniOneRec)
    title_weight: float = 1.0
    # a local causal-LM folder (config.json, weights, fast tokenizer) to fine-tune instead of a from-scratch
    # backbone (`genrec_ml.models.backbone`); its architecture replaces the fields above
    pretrained: str = ""

    def __post_init__(self):
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        if self.pretrained:
            for name, value in pretrained_fields(self.pretrained).items():
                object.__setattr__(self, name, type(getattr(self, name))(value))
        object.__setattr__(self, "text_words", tuple(str(w) for w in self.text_words))
        for name in ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff", "max_positions",
                     "title_batch"):
            if getattr(self, name) < 1:
                raise GenrecConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise GenrecConfigError("n_kv_heads", f"{self.n_kv_heads} must divide n_heads = {self.n_heads}")


# `cpu`: what trains the cpu train profile's 4 epochs of amazon-beauty in about 45 minutes on one core, by
# measured throughput (benchmarks/cpu_profile.py --model minionerec, 2026-12-02, one thread, the machine's
# other work paused): 2 layers of d_model 64 188 samples/s (4 epochs = 47 min), 2 x 96 119, 2 x 128 67,
# 4 x 128 30 (0.6 epochs in 45 min); TIGER's cpu model 215. The prompt's ~50 template tokens are most of
# each sequence (a history averages 6.7 items of 5 tokens), so width costs a decoder-only model far more
# than it costs TIGER's encoder. Those figures ran the whole sequence; running the shared preamble once
# per batch (`run_prompt`) then took 2 x 64 from 205 to 307 samples/s (same benchmark, 8 steps, back to
# back; 188 and 205 are two runs of the full sequence).
PROFILES: dict[str, MiniOneRecConfig] = {
    "smoke": MiniOneRecConfig(d_model=64, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=256),
    "cpu": MiniOneRecConfig(d_model=64, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=256),
    # Qwen3-0.6B's architecture (28 layers, hidden 1024, 16 query / 8 key-value heads of 128, MLP 3072)
    "paper": MiniOneRecConfig(n_layers=28, d_model=1024, n_heads=16, n_kv_heads=8, head_dim=128, d_ff=3072),
}


class MiniOneRec(BeamRanking, nn.Module):
    name = "minionerec"
    config_class = MiniOneRecConfig
    profiles = PROFILES  # registry: its own architecture per profile, not TIGER's

    def __init__(self, config: MiniOneRecConfig):
        super().__init__()
        self.config = config
        self.vocab = SidVocab(config.codebook_sizes, n_user_buckets=0)  # the dataset's history tokens: SIDs only
        backbone = build_backbone(config, self.vocab, self._scratch_lm)
        self.tokenizer, self.lm, self.eos = backbone.tokenizer, backbone.lm, backbone.eos
        # SidVocab id (what the datasets hold) -> the backbone's token id: the identity from scratch
        self.register_buffer("token_of", backbone.token_of, persistent=False)
        self.register_buffer("preamble", self.token_ids(PREAMBLE), persistent=False)
        self.register_buffer("after_history", self.token_ids(AFTER_HISTORY), persistent=False)
        self.separator = self.tokenizer.token_to_id(SEPARATOR)
        self.titles: ItemTitles | None = None  # set_item_titles: the catalog's, for the title <-> SID tasks
        self.loss_parts: dict[str, Tensor] = {}  # the last training forward's terms, logged by the training loop
        index, valid = self.vocab.level_index()  # (L, K_max) each
        self.register_buffer("level_index", self.token_of[index], persistent=False)
        self.register_buffer("level_valid", valid, persistent=False)

    def _scratch_lm(self, vocab_size: int) -> nn.Module:
        config = self.config
        return Qwen3ForCausalLM(Qwen3Config(
            vocab_size=vocab_size, hidden_size=config.d_model, intermediate_size=config.d_ff,
            num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
            num_key_value_heads=config.n_kv_heads, head_dim=config.head_dim, attention_dropout=config.dropout,
            max_position_embeddings=config.max_positions, rope_theta=config.rope_theta, tie_word_embeddings=True,
            pad_token_id=PAD, bos_token_id=None, eos_token_id=None))

    def sid_tokens(self, codes: Tensor, first_level: int = 0) -> Tensor:
        """The backbone's token ids of `codes (..., l)` holding levels first_level .. first_level + l - 1."""
        return self.token_of[self.vocab.code_tokens(codes, first_level)]

    @property
    def device(self) -> torch.device:
        return self.lm.lm_head.weight.device

    def set_item_titles(self, titles: list[str], sids) -> None:
        """The catalog's item titles and SIDs `(N_items, L)` the title <-> SID tasks train on."""
        self.titles = ItemTitles(self.tokenizer, list(titles)).to(self.device)
        self.register_buffer("item_sids", torch.as_tensor(np.asarray(sids), dtype=torch.long, device=self.device),
                             persistent=False)

    def token_ids(self, text: str) -> Tensor:
        return torch.tensor(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=torch.long)

    def prompt(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """History SID tokens `(B, n * L)` (right-padded) -> the prompt `(ids, mask)`, each `(B, P)`: the
        preamble, then the rest (history, its closing words) left-padded, so every real token of a row is
        contiguous in position and each answer follows its prompt directly."""
        rest, rest_mask = self.prompt_rest(input_ids, attention_mask)
        rows = rest.shape[0]
        return (torch.cat([self.preamble.expand(rows, -1), rest], dim=1),
                torch.cat([torch.ones_like(self.preamble, dtype=torch.bool).expand(rows, -1), rest_mask], dim=1))

    def prompt_rest(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """What follows the preamble, left-padded: `<SID>, <SID>, ... in chronological order ... Response :`."""
        rows, width = input_ids.shape
        levels = self.vocab.n_levels
        if width % levels:
            raise GenrecConfigError("input_ids", f"{width} history tokens are not whole items of {levels} codes")
        items = self.token_of[input_ids].view(rows, -1, levels)  # (B, n, L) the backbone's ids
        present = attention_mask.view(rows, -1, levels)[:, :, 0]  # (B, n)
        comma = items.new_full((rows, items.shape[1], 1), self.separator)
        history = torch.cat([comma, items], dim=2).flatten(1)[:, 1:]  # (B, n(L+1) - 1): no comma before the first
        history_mask = present[:, :, None].expand(-1, -1, levels + 1).flatten(1)[:, 1:]
        ids = torch.cat([history, self.after_history.expand(rows, -1)], dim=1)
        mask = torch.cat([history_mask.bool(), torch.ones_like(self.after_history, dtype=torch.bool).expand(rows, -1)],
                         dim=1)
        order = mask.to(torch.int8).argsort(dim=1, stable=True)  # padding first, real tokens in their order
        return ids.gather(1, order).masked_fill(~mask.gather(1, order), PAD), mask.gather(1, order)

    def run_prompt(self, input_ids: Tensor, attention_mask: Tensor, extra: Tensor | None = None,
                   extra_mask: Tensor | None = None):
        """The prompt, then `extra` tokens `(B, e)` after it (`extra_mask (B, e)`: False on padding among them,
        default all real): `(last hidden states of the rest and the extra tokens (B, T, d), their attention
        mask (B, P + T), the cache, the next position (B,))`.

        Fast path: the preamble is the same tokens at the same positions in every row (padding comes after
        it and is masked), so it runs once, as one row, and its keys and values are repeated for the batch
        (gradients flow through the repeat). `forward_reference` is the plain full-sequence computation.
        """
        rest, rest_mask = self.prompt_rest(input_ids, attention_mask)
        rows, start = rest.shape[0], len(self.preamble)
        cache = getattr(self.lm.model(input_ids=self.preamble[None], use_cache=True), _CACHE_ARG)
        cache.batch_repeat_interleave(rows)
        if extra is not None:
            extra_mask = torch.ones_like(extra, dtype=torch.bool) if extra_mask is None else extra_mask.bool()
            rest, rest_mask = torch.cat([rest, extra], dim=1), torch.cat([rest_mask, extra_mask], dim=1)
        mask = torch.cat([torch.ones(rows, start, dtype=torch.bool, device=rest.device), rest_mask], dim=1)
        position = positions(mask)[:, start:]
        out = self.lm.model(input_ids=rest, attention_mask=mask.long(), position_ids=position, use_cache=True,
                            **{_CACHE_ARG: cache})
        return out.last_hidden_state, mask, getattr(out, _CACHE_ARG), position[:, -1] + 1

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Teacher-forced `(logits (B, L, K_max), loss)`: the answer's levels, each over its own codes."""
        batch = self._to_device(batch)
        targets = batch["targets"]  # (B, L) codes
        answer = self.sid_tokens(targets[:, :-1])  # (B, L-1): the last code is never an input
        hidden, _, _, _ = self.run_prompt(batch["input_ids"], batch["attention_mask"], answer)
        logits = self.level_logits(hidden[:, -targets.shape[1]:])  # (B, L, K_max): where each level is predicted
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        if self.training and self.config.title_tasks:
            if self.titles is None:
                raise GenrecConfigError("title_tasks", "set_item_titles first (the catalog's titles), or turn the "
                                        "title <-> SID tasks off")
            to_sid, to_title = title_task_losses(self, self.titles.draw(self.config.title_batch))
            self.loss_parts = {"ce": loss.detach(), "title_to_sid": to_sid.detach(),
                               "sid_to_title": to_title.detach()}
            loss = loss + self.config.title_weight * (to_sid + to_title)
        return logits, loss

    def forward_reference(self, batch: dict[str, Tensor]) -> Tensor:
        """`forward`'s logits by one full-sequence pass over prompt + answer (the plain reference)."""
        batch = self._to_device(batch)
        ids, mask = self.prompt(batch["input_ids"], batch["attention_mask"])
        targets = batch["targets"]
        answer = self.sid_tokens(targets[:, :-1])
        mask = torch.cat([mask, torch.ones_like(answer, dtype=torch.bool)], dim=1)
        hidden = self.lm.model(input_ids=torch.cat([ids, answer], dim=1), attention_mask=mask.long(),
                               position_ids=positions(mask)).last_hidden_state
        return self.level_logits(hidden[:, -targets.shape[1]:])

    def level_logits(self, hidden: Tensor) -> Tensor:
        """`(B, L, d)` states, state l predicting level l -> `(B, L, K_max)` logits, -inf past K_l."""
        weight = self.lm.lm_head.weight[self.level_index]  # (L, K_max, d)
        return torch.einsum("bld,lkd->blk", hidden, weight).masked_fill(~self.level_valid, float("-inf"))

    def level_log_probs(self, hidden: Tensor, level: int) -> Tensor:
        """`(R, d)` -> log-probs `(R, K_l)` over level `level`'s codes (its rows of the output matrix only)."""
        weight = self.lm.lm_head.weight[self.token_of[self.vocab.level_slice(level)]]  # (K_l, d)
        return F.linear(hidden, weight).float().log_softmax(dim=-1)

    def stepper(self, batch: dict[str, Tensor]) -> MiniOneRecStepper:
        batch = self._to_device(batch)
        return MiniOneRecStepper(self, batch["input_ids"], batch["attention_mask"])



def positions(mask: Tensor) -> Tensor:
    """Position ids that count real tokens only (padding repeats position 0)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


@dataclass
class MiniOneRecState:
    cache: object  # transformers Cache of the prompt and the codes fed so far, row = beam
    mask: Tensor  # (R, T) attention mask of everything cached
    next_position: Tensor  # (R,)
    last: Tensor  # (R, d) last hidden state: it predicts the next level


class MiniOneRecStepper:
    """`genrec_ml.decoding.Stepper`: the prompt once, then one cached token per level."""

    def __init__(self, model: MiniOneRec, input_ids: Tensor, attention_mask: Tensor):
        self.model = model
        self.input_ids = input_ids
        self.attention_mask = attention_mask

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    def start(self, batch_size: int) -> MiniOneRecState:
        if batch_size != self.batch_size:
            raise ValueError(f"stepper holds {self.batch_size} users, search asked for {batch_size}")
        hidden, mask, cache, next_position = self.model.run_prompt(self.input_ids, self.attention_mask)
        return MiniOneRecState(cache, mask, next_position, hidden[:, -1])

    def step(self, state: MiniOneRecState, prefix: Tensor) -> tuple[Tensor, MiniOneRecState]:
        level = prefix.shape[1]
        if level:
            token = self.model.sid_tokens(prefix[:, -1:].to(state.mask.device), first_level=level - 1)
            mask = torch.cat([state.mask, torch.ones_like(token, dtype=torch.bool)], dim=1)
            out = self.model.lm.model(input_ids=token, attention_mask=mask.long(),
                                      position_ids=state.next_position[:, None], use_cache=True,
                                      **{_CACHE_ARG: state.cache})
            state = MiniOneRecState(getattr(out, _CACHE_ARG), mask, state.next_position + 1,
                                    out.last_hidden_state[:, -1])
        return self.model.level_log_probs(state.last, level), state

    def reorder(self, state: MiniOneRecState, rows: Tensor) -> MiniOneRecState:
        rows = rows.to(state.mask.device)
        state.cache.reorder_cache(rows)  # in place: the state passed in is consumed
        return MiniOneRecState(state.cache, state.mask[rows], state.next_position[rows], state.last[rows])
