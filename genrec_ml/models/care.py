"""CARE (Lin et al., WWW 2026, §3): TIGER with per-level reasoning queries and progressive history reading.

"Bringing Reasoning to Generative Recommendation Through the Lens of Cascaded Ranking" treats SID
decoding like a cascade of rankers, coarse to fine, and gives each level more computation and a
finer view of the history than the level before:

- Query-anchored reasoning (eq. 2-3): n_l learned query vectors q_{l,1..n_l} follow level l's
  input token (BOS, or code c_{l-1}) in the decoder input; level l is read from the decoder's
  output at the LAST query of its segment. The decoder sequence is

      [x_0, q_{0,1} .. q_{0,n_0}] [x_1, q_{1,1} .. q_{1,n_1}] ... [x_{L-1}, q_{L-1,1} ..]

  and teacher forcing runs all L segments in one decoder call (TIGER's `extra_decoder_embeds`
  hook); the beam-search stepper feeds one segment per step through the KV cache, so the queries
  never widen the beam.
- Progressive history encoding (Figure 5): the history is encoded once; the decoder's
  cross-attention is masked so that the whole segment of level t (input token and queries) reads
  only codes 0..t of every history item, plus the user token. Convention, 0-based: level 0 reads
  the coarsest code of each item, the disambiguation level (the last) reads every code. This is
  the paper's "first t codes when generating the t-th code" in its 1-based counting, and what the
  authors' released code does (a query of stage k sees codes with index < k + 1). It makes the
  last level's view TIGER's full history, so nothing of the history is lost, only delayed.
- Reasoning diversity (eq. 4-5): L_div = mean cosine similarity over all distinct pairs of query
  vectors, pooled over every level; loss = CE + diversity_weight * L_div.

Ablations by config: `queries_per_level=0` is "w/o reasoning" (the readout is the input token,
as in TIGER), `progressive_attention=False` is "w/o progressive attention" (TIGER's padding mask),
`diversity_weight=0` is "w/o diversity loss". With no queries and no progressive attention the
model computes exactly TIGER's logits (tested). Nothing depends on how the SIDs were made, so RQ-VAE
(TIGER) and LETTER codes are just two catalogs.

Where this differs from the paper, and why:

- Backbone: the authors put CARE on a decoder-only LM (Qwen2), history and answer in one causal
  sequence. Here it sits on TIGER's T5, so the mask restricts which *encoder positions* a level
  reads. T5's encoder is bidirectional, so the memory at a coarse position already mixes in finer
  codes of other items (in the authors' causal backbone a coarse token likewise carries every
  earlier token). The mask therefore limits which history positions each level attends to,
  exactly, but not information flow from the raw tokens; the tests check it on the memory.
- The whole segment is masked. The authors restrict the queries only and let the input (gold code)
  token attend to the full history, which the later queries then read through self-attention;
  masking the input token too keeps the 0-query ablation progressive and makes a level's view of
  the memory exactly codes 0..t.
- One switch for progressive attention, where the authors' code has one per level.
- L_div is over the query parameters themselves, pooled over levels, as in the authors' code (with
  one query per level, their default, a per-level loss would have no pairs at all). It averages
  over the N(N-1) distinct pairs, so identical queries give 1; the authors' code divides by N^2, a
  constant (N-1)/N that `diversity_weight` absorbs.
- The authors' always-visible "special token" (the start of the answer) has no counterpart in an
  encoder-decoder; the user token plays that role here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.tiger import Tiger, TigerConfig, TigerState, TigerStepper


@dataclass(frozen=True)
class CareConfig(TigerConfig):
    # n_l queries per SID level: one int for every level, or one count per level including the
    # disambiguation level (e.g. (1, 1, 4, 4)); 0 everywhere = "w/o reasoning". The authors'
    # released script uses 1 per level; an int fits any catalog's number of levels.
    queries_per_level: int | tuple[int, ...] = 1
    progressive_attention: bool = True  # False = "w/o progressive attention": every level reads all codes
    diversity_weight: float = 0.3  # alpha on L_div (the authors' script: 0.3); 0 = "w/o diversity loss"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.queries_per_level, (list, tuple)):  # a list when read back from JSON
            counts = tuple(int(n) for n in self.queries_per_level)
            object.__setattr__(self, "queries_per_level", counts)
            if len(counts) != len(self.codebook_sizes):
                raise GenrecConfigError(
                    "queries_per_level",
                    f"{counts} has {len(counts)} entries but the SIDs have {len(self.codebook_sizes)} levels "
                    f"{self.codebook_sizes}; give one count per level (disambiguation level included) or one int",
                )
        if min(self.query_counts) < 0:
            raise GenrecConfigError("queries_per_level", f"counts must be >= 0, got {self.queries_per_level}")
        if self.diversity_weight < 0:
            raise GenrecConfigError("diversity_weight", f"must be >= 0, got {self.diversity_weight}")

    @property
    def query_counts(self) -> tuple[int, ...]:
        """n_l for every SID level."""
        if isinstance(self.queries_per_level, tuple):
            return self.queries_per_level
        return (int(self.queries_per_level),) * len(self.codebook_sizes)


class Care(Tiger):
    name = "care"  # key in genrec_ml.models.registry.MODELS, stored in checkpoints
    config_class = CareConfig

    def __init__(self, config: CareConfig):
        super().__init__(config)
        counts = config.query_counts
        self.query_offsets = tuple(accumulate(counts, initial=0))  # level l's queries: rows [o_l, o_{l+1})
        # Only where a loss trains them: DDP fails on parameters that get no gradient.
        if sum(counts):
            # T5's token-embedding scale, so a query enters the decoder like a token does
            std = self.t5.config.initializer_factor
            self.queries = nn.Parameter(torch.randn(sum(counts), config.d_model) * std)  # (N_q, d)
        segment_lengths = torch.tensor(counts) + 1  # (L,) input token + queries
        levels = torch.arange(len(counts)).repeat_interleave(segment_lengths)  # (T_dec,)
        self.register_buffer("decoder_levels", levels, persistent=False)
        self.loss_parts: dict[str, Tensor] = {}  # the last forward's loss terms, logged by the training loop

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Teacher-forced `(logits (B, L, K_max), loss)`, as TIGER; sets `loss_parts` (detached device scalars)."""
        batch = self._to_device(batch)
        targets = batch["targets"]  # (B, L) codes
        memory_mask = batch["attention_mask"]  # (B, S)
        memory = self.encode(batch["input_ids"], memory_mask)  # (B, S, d)
        embeds, readout = self.decoder_inputs(targets, memory, memory_mask)  # (B, T_dec, d), (L,)
        hidden = self.t5.decoder(
            inputs_embeds=embeds,
            encoder_hidden_states=memory,
            encoder_attention_mask=self.cross_attention_mask(memory_mask, self.decoder_levels),
            use_cache=False,
        ).last_hidden_state  # (B, T_dec, d)
        logits = self.level_logits(self.vocab_logits(hidden[:, readout]))  # (B, L, K_max)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        diversity = self.query_diversity()
        loss = ce + self.config.diversity_weight * diversity
        # detached device scalars: the training loop reads them in bulk, never one sync per step
        self.loss_parts = {"ce": ce.detach(), "diversity": diversity.detach()}
        return logits, loss

    def extra_decoder_embeds(self, level: int, rows: int, memory: Tensor, memory_mask: Tensor) -> Tensor | None:
        """Level `level`'s queries `(rows, n_l, d)`, or None when it has none."""
        start, stop = self.query_offsets[level], self.query_offsets[level + 1]
        if start == stop:
            return None
        return self.queries[start:stop].expand(rows, -1, -1)  # (R, n_l, d)

    def query_diversity(self) -> Tensor:
        """L_div over every query of every level; 0 with fewer than two queries."""
        if not hasattr(self, "queries"):
            return torch.zeros((), device=self.device)
        return query_diversity(self.queries)

    def cross_attention_mask(self, memory_mask: Tensor, decoder_levels: Tensor) -> Tensor:
        """What decoder rows of SID levels `decoder_levels: (T,)` may read of the memory.

        TIGER's `(R, S)` padding mask without progressive attention; with it an additive
        `(R, 1, T, S)` mask, 0 where visible and the attention dtype's minimum where not. Additive
        because transformers passes a 4-D mask to the attention unchanged: T5's eager attention adds
        it to the scores (a bool mask would add 1 to the visible keys and hide nothing), and sdpa
        adds a float mask to the position bias, so the additive form means the same under both, and
        with nothing hidden but padding it gives bit for bit the 2-D mask's result (checked). The
        minimum is autocast's dtype's when autocast is on: float32's rounds to -inf in bfloat16, and a
        row with nothing to read (no user token, empty history) would then get NaN or zeros, as the
        kernel decides, instead of TIGER's uniform average over the padding (tested).
        """
        if not self.config.progressive_attention:
            return memory_mask
        has_user = self.vocab.n_user_buckets > 0
        visible = progressive_mask(memory_mask, decoder_levels, self.vocab.n_levels, has_user)  # (R, T, S)
        device = visible.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.t5.shared.weight.dtype
        additive = torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(
            ~visible, torch.finfo(dtype).min
        )  # (R, T, S)
        return additive[:, None]  # (R, 1, T, S): one mask shared by all heads

    def stepper(self, batch: dict[str, Tensor]) -> CareStepper:
        batch = self._to_device(batch)
        return CareStepper(self, batch["input_ids"], batch["attention_mask"])


class CareStepper(TigerStepper):
    """TIGER's stepper, feeding a level's input token and queries with that level's rows of the mask.

    The state is TIGER's: the queries are parameters and their keys/values live in the cache, and
    the progressive mask is rebuilt from the padding mask for each step, so `reorder` is inherited.
    """

    model: Care

    def step(self, state: TigerState, prefix: Tensor) -> tuple[Tensor, TigerState]:
        level = prefix.shape[1]
        previous = prefix[:, -1].to(state.memory.device) if level else None  # (R,)
        segment = self.model.decoder_segment(level, previous, state.memory, state.memory_mask)  # (R, n_l+1, d)
        levels = torch.full((segment.shape[1],), level, device=segment.device)  # (n_l+1,) every row is level l
        cross_mask = self.model.cross_attention_mask(state.memory_mask, levels)
        hidden, cache = self.model.cached_decoder(segment, state.memory, cross_mask, state.cache)
        log_probs = self.model.level_log_probs(hidden[:, -1], level)  # (R, K_l)
        return log_probs, replace(state, cache=cache)


def history_levels(seq_len: int, n_levels: int, has_user_token: bool, device=None) -> Tensor:
    """(S,) SID level of each encoder position in `genrec_ml.data.sequences`' layout.

    The layout is [user token] + L tokens per history item, item-major, right-padded; the user
    token counts as level 0, so every level sees it. Padding gets a level too: the padding mask hides it.
    """
    history_index = torch.arange(seq_len, device=device) - int(has_user_token)  # (S,), -1 = user token
    return history_index.clamp(min=0) % n_levels


def progressive_mask(
    attention_mask: Tensor, decoder_levels: Tensor, n_levels: int, has_user_token: bool
) -> Tensor:
    """`(B, T, S)` bool: may a decoder row of level `decoder_levels[t]` read encoder position s?

    True where s is a real token (`attention_mask: (B, S)`) and is the user token or a history
    code of level <= the row's level. Reference: `progressive_mask_reference`.
    """
    levels = history_levels(attention_mask.shape[1], n_levels, has_user_token, attention_mask.device)  # (S,)
    visible = levels[None, :] <= decoder_levels.to(levels.device)[:, None]  # (T, S)
    return visible[None] & attention_mask.bool()[:, None, :]  # (B, T, S)


def progressive_mask_reference(
    attention_mask: Tensor, decoder_levels: Tensor, n_levels: int, has_user_token: bool
) -> Tensor:
    """Plain loops over (user, decoder row, encoder position) for `progressive_mask`."""
    batch_size, seq_len = attention_mask.shape
    mask = torch.zeros(batch_size, len(decoder_levels), seq_len, dtype=torch.bool)
    for b in range(batch_size):
        for t, row_level in enumerate(decoder_levels.tolist()):
            for s in range(seq_len):
                if not attention_mask[b, s]:
                    continue
                if has_user_token and s == 0:
                    mask[b, t, s] = True
                    continue
                code_level = (s - int(has_user_token)) % n_levels
                mask[b, t, s] = code_level <= row_level
    return mask


def query_diversity(queries: Tensor) -> Tensor:
    """L_div: mean cosine similarity over the N(N-1) ordered pairs i != j of `queries: (N, d)`.

    1 when all queries point the same way, 0 when they are orthogonal, at least -1/(N-1);
    0 when N < 2 (no pairs).
    """
    n = queries.shape[0]
    if n < 2:
        return queries.new_zeros(())
    unit = F.normalize(queries.float(), dim=-1)  # (N, d)
    cosine = unit @ unit.T  # (N, N)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=queries.device)  # (N, N)
    return cosine[off_diagonal].mean()
