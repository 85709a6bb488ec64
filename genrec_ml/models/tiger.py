"""TIGER (Rajput et al., NeurIPS 2023): a T5 encoder-decoder that generates the next item's SID.

Encoder input: [user-bucket token] + the history items' SID tokens, oldest first (see
`genrec_ml.data.sequences`). The decoder starts from BOS and emits the target's L codes, one
per step; level l's distribution is the softmax over level l's block of the vocabulary only
(`SidVocab`), so the model never spends probability on a code of the wrong level.

The T5 stacks are always driven through `inputs_embeds`, never token ids, so a subclass can put
vectors that are not in the vocabulary into the decoder. The decoder input is built one *segment*
per SID level by `decoder_segment(level, previous_codes, memory, memory_mask)`:

    segment l = [embedding of BOS (l = 0) or of code c_{l-1}] + extra_decoder_embeds(level, ...)

and level l is read from the decoder's output at the last position of segment l. Training
concatenates the L segments (teacher forcing, one decoder call); the beam-search stepper feeds one
segment per step through the KV cache. Both call the same `decoder_segment`, which is why the
cached and uncached paths agree (tested). How the later methods plug in:

- S²GR's thinking latent: override `extra_decoder_embeds` to return the thinking vector(s) that
  precede each level; the level is then read from the thinking position. A latent computed from
  the decoder's own state overrides `decoder_segment` instead (run the decoder on the input token,
  project its last hidden state, feed that back); in the stepper this is two cached decoder calls
  inside `step`, so the beam never grows.
- CARE's per-level query vectors: `extra_decoder_embeds` returns the learned query q_l
  (an `nn.Parameter (L, d)`). Its progressive cross-attention mask goes in as a 4-D
  `encoder_attention_mask (B, 1, T_dec, S)`, which transformers 5 passes through unchanged; with
  the KV cache the stepper passes the rows of that mask for the current segment only.
- REG4Rec's unordered token sets: the segment input becomes the (position, code) pair chosen last
  plus `extra_decoder_embeds` = a query embedding of the position to fill next; decoding uses
  `genrec_ml.decoding.CatalogConstraint`, which accepts any fill order.
- LASAR's latent loop: `decoder_segment` feeds the decoder's last hidden state back as the next
  input embedding n times before a level is read (decoder-only variants drop the encoder and put
  the history in the decoder prefix through the same embeds path).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import T5Config, T5ForConditionalGeneration
from transformers.cache_utils import EncoderDecoderCache
from transformers.models.t5.modeling_t5 import T5Stack

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.beam_decoder import BeamCache, decode_shared
from genrec_ml.models.beam_ranking import BeamRanking
from genrec_ml.vocab import BOS, PAD, SidVocab

# transformers 5 renamed the decoder's `past_key_values` (argument and output) to `cache`
_CACHE_ARG = "cache" if "cache" in inspect.signature(T5Stack.forward).parameters else "past_key_values"


@dataclass(frozen=True)
class TigerConfig:
    # K_l per SID level, the last one the disambiguation level; set from the catalog
    # (`resolve_codebook_sizes`), the default only shows the paper's shape
    codebook_sizes: tuple[int, ...] = (256, 256, 256, 16)
    n_user_buckets: int = 2000  # hashed user tokens (TIGER); 0 drops the user token
    history_eos: bool = False  # EOS after the history (T5's </s>; see SidVocab); every profile turns it on
    n_encoder_layers: int = 4
    n_decoder_layers: int = 4
    d_model: int = 128
    n_heads: int = 6
    d_kv: int = 64  # per-head width; n_heads * d_kv need not equal d_model in T5
    d_ff: int = 1024
    dropout: float = 0.1
    feed_forward_proj: str = "relu"  # T5 feed-forward activation ("relu" or "gated-gelu")
    relative_attention_num_buckets: int = 32  # T5 relative position buckets; 32 cover 81 history tokens
    relative_attention_max_distance: int = 128

    def __post_init__(self):
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        for name in ("n_encoder_layers", "n_decoder_layers", "d_model", "n_heads", "d_kv", "d_ff"):
            if getattr(self, name) < 1:
                raise GenrecConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise GenrecConfigError("dropout", f"must be in [0, 1), got {self.dropout}")


PROFILES: dict[str, TigerConfig] = {
    # tiny: trains on a laptop CPU in minutes
    "smoke": TigerConfig(n_encoder_layers=2, n_decoder_layers=2, d_model=64, n_heads=4, d_kv=16, d_ff=256),
    # the paper's model: 4 + 4 layers, d_model 128, 6 heads of 64, MLP 1024, dropout 0.1
    "paper": TigerConfig(),
    # One CPU core, about 45 minutes on amazon-beauty (with train profile `cpu`). Chosen by measured
    # throughput (`benchmarks/cpu_profile.py`: beauty bundle, length-grouped batches of 256, one
    # thread; 2026-12-01 on the 2-core dev machine under load): smoke (0.4M parameters) 144 samples/s,
    # this one (1.3M) 108, the paper's (4.8M) 19.5. Three times the smoke model's parameters for 25 %
    # less speed, where the paper's model would see about one epoch in 45 minutes. Which size gets
    # furthest in 45 minutes is not yet settled by full-length runs of each.
    "cpu": TigerConfig(n_encoder_layers=2, n_decoder_layers=2, d_model=128, n_heads=4, d_kv=32, d_ff=512),
}


def tiger_config(profile: str, codebook_sizes: tuple[int, ...], **overrides) -> TigerConfig:
    """A profile's config for a catalog with these `codebook_sizes`, plus any field overrides."""
    if profile not in PROFILES:
        raise GenrecConfigError("profile", f"unknown profile {profile!r}; choose from {list(PROFILES)}")
    return replace(PROFILES[profile], codebook_sizes=tuple(codebook_sizes), **overrides)


class Tiger(BeamRanking, nn.Module):
    name = "tiger"  # key in genrec_ml.models.registry.MODELS, stored in checkpoints
    config_class = TigerConfig

    def __init__(self, config: TigerConfig):
        super().__init__()
        self.config = config
        self.vocab = SidVocab(config.codebook_sizes, config.n_user_buckets, config.history_eos)
        self.t5 = T5ForConditionalGeneration(_t5_config(config, self.vocab.size))
        index, valid = self.vocab.level_index()  # (L, K_max) each
        self.register_buffer("level_index", index, persistent=False)
        self.register_buffer("level_valid", valid, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.t5.shared.weight.device

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Teacher-forced `(logits (B, L, K_max), loss)`.

        logits[b, l, c] scores code c of level l (-inf where c >= K_l); the loss is the mean
        cross-entropy of each level over that level's codes only.
        """
        batch = self._to_device(batch)
        targets = batch["targets"]  # (B, L) codes
        memory = self.encode(batch["input_ids"], batch["attention_mask"])  # (B, S, d)
        embeds, readout = self.decoder_inputs(targets, memory, batch["attention_mask"])  # (B, T_dec, d), (L,)
        hidden = self.t5.decoder(
            inputs_embeds=embeds,
            encoder_hidden_states=memory,
            encoder_attention_mask=batch["attention_mask"],
            use_cache=False,
        ).last_hidden_state  # (B, T_dec, d)
        logits = self.level_logits(self.vocab_logits(hidden[:, readout]))  # (B, L, K_max)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, loss

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, S) tokens -> encoder output `memory: (B, S, d)`."""
        embeds = self.t5.shared(input_ids)  # (B, S, d)
        return self.t5.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state

    def extra_decoder_embeds(self, level: int, rows: int, memory: Tensor, memory_mask: Tensor) -> Tensor | None:
        """Hook: `(rows, n, d)` vectors fed after level `level`'s input token, or None (TIGER).

        `memory` has one row per user, which during beam search is fewer than `rows` (beams).

        `n` must depend on the level only; the level is then read at the last of them.
        """
        return None

    def decoder_segment(
        self, level: int, previous_codes: Tensor | None, memory: Tensor, memory_mask: Tensor
    ) -> Tensor:
        """Decoder input embeddings `(R, n_l, d)` whose last output predicts level `level`.

        `previous_codes: (R,)` are the level-(l-1) codes (None at level 0, where BOS starts).
        """
        if level == 0:
            tokens = torch.full((memory.shape[0],), BOS, dtype=torch.long, device=memory.device)  # (R,)
        else:
            tokens = self.vocab.code_tokens(previous_codes[:, None], first_level=level - 1)[:, 0]  # (R,)
        embeds = self.t5.shared(tokens)[:, None]  # (R, 1, d)
        extra = self.extra_decoder_embeds(level, len(tokens), memory, memory_mask)  # (R, n, d) or None
        return embeds if extra is None else torch.cat([embeds, extra.to(embeds.dtype)], dim=1)

    def decoder_inputs(self, targets: Tensor, memory: Tensor, memory_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forcing input `(B, T_dec, d)` and the `(L,)` positions each level is read at."""
        segments = [
            self.decoder_segment(level, targets[:, level - 1] if level else None, memory, memory_mask)
            for level in range(self.vocab.n_levels)
        ]
        lengths = torch.tensor([s.shape[1] for s in segments], device=memory.device)  # (L,)
        return torch.cat(segments, dim=1), lengths.cumsum(0) - 1

    def cached_decoder(
        self, embeds: Tensor, memory: Tensor, memory_mask: Tensor, cache: EncoderDecoderCache | BeamCache | None
    ) -> tuple[Tensor, EncoderDecoderCache | BeamCache]:
        """Decoder hidden states `(R, n, d)` of `embeds` after the cached prefix, and the grown cache.

        A `BeamCache` (beam search: `memory` per user, rows = user-major beams) takes the
        shared-memory decoder; None or an `EncoderDecoderCache` (training, one row per memory row)
        takes HF's.
        """
        if isinstance(cache, BeamCache):
            return decode_shared(self.t5.decoder, embeds, memory_mask, cache)
        out = self.t5.decoder(
            inputs_embeds=embeds, encoder_hidden_states=memory, encoder_attention_mask=memory_mask,
            use_cache=True, **{_CACHE_ARG: cache},
        )
        return out.last_hidden_state, getattr(out, _CACHE_ARG)

    def vocab_logits(self, hidden: Tensor) -> Tensor:
        """Decoder output `(..., d)` -> logits over the whole vocabulary `(..., V)`."""
        return self.t5.lm_head(self._scale_output(hidden))

    def level_logits(self, vocab_logits: Tensor) -> Tensor:
        """`(B, L, V)` -> `(B, L, K_max)`: level l keeps its own block, -inf past K_l."""
        index = self.level_index.expand(vocab_logits.shape[0], -1, -1)  # (B, L, K_max)
        return vocab_logits.gather(-1, index).masked_fill(~self.level_valid, float("-inf"))

    def level_log_probs(self, hidden: Tensor, level: int) -> Tensor:
        """Fast path of `level_logits` for one level: `(R, d)` -> log-probs `(R, K_l)`.

        Multiplies by level l's rows of the output matrix only (K_l instead of V columns).
        """
        weight = self.t5.lm_head.weight[self.vocab.level_slice(level)]  # (K_l, d)
        return F.linear(self._scale_output(hidden), weight).float().log_softmax(dim=-1)

    def stepper(self, batch: dict[str, Tensor]) -> TigerStepper:
        batch = self._to_device(batch)
        return TigerStepper(self, batch["input_ids"], batch["attention_mask"])

    def _scale_output(self, hidden: Tensor) -> Tensor:
        # T5 ties the output matrix to the input embeddings and rescales to keep logits O(1).
        return hidden * self.config.d_model**-0.5 if self.t5.config.scale_decoder_outputs else hidden



@dataclass
class TigerState:
    """What the stepper carries between levels; row r of the self-attention cache is beam r.

    `step` and `reorder` update `cache` in place and return the state to use next: a state is
    consumed by the call it is passed to.
    """

    memory: Tensor  # (B, S, d) encoder output, one row per user (shared by its beams)
    memory_mask: Tensor  # (B, S) bool
    cache: BeamCache  # per-beam self-attention and per-user cross-attention keys/values


class TigerStepper:
    """`genrec_ml.decoding.Stepper` for a `Tiger`: encode once, then one cached decoder call per level."""

    def __init__(self, model: Tiger, input_ids: Tensor, attention_mask: Tensor):
        self.model = model
        self.input_ids = input_ids  # (B, S)
        self.attention_mask = attention_mask  # (B, S)

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    def start(self, batch_size: int) -> TigerState:
        if batch_size != self.batch_size:
            raise ValueError(f"stepper holds {self.batch_size} users, search asked for {batch_size}")
        memory = self.model.encode(self.input_ids, self.attention_mask)  # (B, S, d)
        cache = BeamCache.start(self.model.t5.decoder, memory)
        return TigerState(memory=memory, memory_mask=self.attention_mask, cache=cache)

    def step(self, state: TigerState, prefix: Tensor) -> tuple[Tensor, TigerState]:
        level = prefix.shape[1]
        previous = prefix[:, -1].to(state.memory.device) if level else None  # (R,)
        segment = self.model.decoder_segment(level, previous, state.memory, state.memory_mask)  # (R, n_l, d)
        hidden, cache = self.model.cached_decoder(segment, state.memory, state.memory_mask, state.cache)
        log_probs = self.model.level_log_probs(hidden[:, -1], level)  # (R, K_l)
        return log_probs, replace(state, cache=cache)

    def reorder(self, state: TigerState, rows: Tensor) -> TigerState:
        rows = rows.to(state.memory.device)
        # The memory and its cross-attention keys/values stay one row per user (BeamCache) while the
        # rows are user-major blocks of equal width, as beam search keeps them.
        groups = state.memory.shape[0]
        memory_rows = rows // (state.cache.rows // groups)  # (R',) memory row each new row reads
        width, remainder = divmod(len(rows), groups)
        cache = state.cache.reorder(rows)
        if not remainder and torch.equal(memory_rows, torch.arange(len(rows), device=rows.device) // width):
            return replace(state, cache=cache)
        # any other order (never beam search's): one memory row per row
        return TigerState(state.memory.index_select(0, memory_rows), state.memory_mask.index_select(0, memory_rows),
                          cache.regroup(memory_rows))


def _t5_config(config: TigerConfig, vocab_size: int) -> T5Config:
    return T5Config(
        vocab_size=vocab_size,
        d_model=config.d_model,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_layers=config.n_encoder_layers,
        num_decoder_layers=config.n_decoder_layers,
        num_heads=config.n_heads,
        dropout_rate=config.dropout,
        feed_forward_proj=config.feed_forward_proj,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        pad_token_id=PAD,
        eos_token_id=BOS,
        decoder_start_token_id=BOS,
    )
