"""S²GR (Stepwise Semantic-Guided Reasoning in latent space, §4.3): TIGER with a thinking token per level.

Before SID level l the decoder "thinks": its output at level l's input token x_l (BOS for l = 0,
the embedding of code c_{l-1} after) plus a learned level embedding p_l is the thinking token

    t_l = h(x_l) + p_l                                                      (eq. 15-16)

which goes back into the decoder as the next input (a latent vector, not a vocabulary token);
level l's code s_l is read from the decoder's output at t_l's position (eq. 17). The decoder
sequence is therefore x_0, t_0, x_1, t_1, ..., x_{L-1}, t_{L-1}.

t_l depends on the decoder's own output, so teacher forcing cannot be one parallel call: training
runs the KV-cached decoder level by level, two calls per level (x_l -> t_l, t_l -> readout), the
very function the beam-search stepper calls inside `step`. Thinking never expands the beam. A
test checks that one uncached causal call over the finished sequence reproduces it exactly.

Supervision of the thinking tokens (all scaled by `think_loss_weight`):

- L_align (eq. 18): each quantiser level's codebook is k-means'd into C coarse clusters
  (`genrec_ml.tokenizers.collisions.coarse_clusters`). t_l lives in the decoder's d_model space,
  the centroids in the codebook's d_code space, so a learned linear map W: d_model -> d_code
  carries t_l over; InfoNCE over the C centroids with logits cos(W t_l, mu_c) / tau, target the
  cluster of the true code s_l. The last SID level only separates colliding items and has no
  codebook, hence no clusters and no L_align (it still gets a thinking token unless
  `think_at_last_level=False`). Averaged over the quantiser levels.
- L_global (eq. 19-20): a lightweight decoder psi turns [BOS] and the encoder output into v_g;
  in-batch InfoNCE pulls v_g towards the mean input embedding of the target's semantic codes
  (the model's own code-token embeddings) and away from the other rows' targets.
- L_reg (eq. 21): 1 - cos(t_0, stopgrad(v_g)): the first thinking token follows the global guide.

    loss = CE + think_loss_weight * (align_weight * L_align + global_weight * L_global
                                     + reg_weight * L_reg)                      (eq. 22-24)

The coarse centroids and each code's cluster are data from the codebook asset, not config: they
are buffers of a shape the config fixes (`n_coarse`, `d_code`), filled by `set_coarse_clusters`,
so they travel in the state_dict and a checkpoint rebuilds the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.cache_utils import EncoderDecoderCache

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.tiger import Tiger, TigerConfig, TigerState, TigerStepper
from genrec_ml.vocab import BOS

LOSS_PARTS = ("ce", "align", "global", "reg")


@dataclass(frozen=True)
class S2grConfig(TigerConfig):
    # The paper's loss weights and temperatures are not in our notes: these are starting points.
    n_coarse: int = 16  # C, coarse clusters per quantiser level; set from the codebook asset
    d_code: int = 32  # width of the codebook vectors (RQ-VAE latent); set from the codebook asset
    use_reasoning: bool = True  # False = "w/o reasoning": no thinking tokens, exactly TIGER
    think_at_last_level: bool = True  # thinking token before the disambiguation level too (no L_align there)
    think_loss_weight: float = 1.0  # scales L_align, L_global and L_reg; 0 = "w/o L_Think" (CE only)
    align_weight: float = 1.0  # beta on L_align (mean over quantiser levels)
    global_weight: float = 1.0  # on the in-batch InfoNCE that trains psi
    reg_weight: float = 0.1  # lambda on L_reg = 1 - cos(t_0, stopgrad(v_g))
    tau: float = 0.1  # temperature of L_align (cosine / tau)
    global_tau: float = 0.1  # temperature of the in-batch InfoNCE

    def __post_init__(self):
        super().__post_init__()
        if len(self.codebook_sizes) < 2:
            raise GenrecConfigError("codebook_sizes", "S²GR needs the quantiser levels plus the disambiguation "
                                    f"level (>= 2 levels), got {self.codebook_sizes}")
        for name in ("n_coarse", "d_code"):
            if getattr(self, name) < 1:
                raise GenrecConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("tau", "global_tau"):
            if getattr(self, name) <= 0:
                raise GenrecConfigError(name, f"must be > 0, got {getattr(self, name)}")
        for name in ("think_loss_weight", "align_weight", "global_weight", "reg_weight"):
            if getattr(self, name) < 0:
                raise GenrecConfigError(name, f"must be >= 0, got {getattr(self, name)}")

    @property
    def supervises_thinking(self) -> bool:
        """Whether psi and the align projection exist: thinking tokens with L_Think."""
        return self.use_reasoning and self.think_loss_weight > 0


class S2gr(Tiger):
    name = "s2gr"
    config_class = S2grConfig

    def __init__(self, config: S2grConfig):
        super().__init__(config)
        n_cluster_levels = self.vocab.n_levels - 1  # the disambiguation level has no codebook
        k_max = max(config.codebook_sizes[:-1])
        # Filled by `set_coarse_clusters`; coarse_valid is all False until then. A level may have
        # fewer than C clusters (the asset uses min(C, K_l)): its padding slots stay invalid.
        self.register_buffer("coarse_centroids", torch.zeros(n_cluster_levels, config.n_coarse, config.d_code))
        self.register_buffer("coarse_valid", torch.zeros(n_cluster_levels, config.n_coarse, dtype=torch.bool))
        self.register_buffer("coarse_assignment", torch.full((n_cluster_levels, k_max), -1, dtype=torch.long))
        # Modules exist only where a loss trains them: DDP fails on parameters that get no gradient.
        if config.use_reasoning:
            n_thinking = self.vocab.n_levels if config.think_at_last_level else n_cluster_levels
            # T5's token-embedding scale, so the level signal is not lost next to h(x_l)
            self.level_position = nn.Parameter(torch.randn(n_thinking, config.d_model))  # p_l: (L_t, d)
        if config.supervises_thinking:
            self.align_projection = nn.Linear(config.d_model, config.d_code, bias=False)  # W: d_model -> d_code
            self.global_decoder = GlobalDecoder(config.d_model, config.n_heads, config.d_kv, config.d_ff)  # psi
        self.loss_parts: dict[str, Tensor] = {}

    @property
    def n_cluster_levels(self) -> int:
        return self.vocab.n_levels - 1

    def thinks_at(self, level: int) -> bool:
        return self.config.use_reasoning and (level < self.n_cluster_levels or self.config.think_at_last_level)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Teacher-forced `(logits (B, L, K_max), loss)`, as TIGER; sets `loss_parts` (detached device scalars)."""
        if not self.config.use_reasoning:
            logits, loss = super().forward(batch)
            self._record_loss_parts(ce=loss)
            return logits, loss
        batch = self._to_device(batch)
        targets = batch["targets"]  # (B, L) codes
        memory = self.encode(batch["input_ids"], batch["attention_mask"])  # (B, S, d)
        readout, thinking = self.reason(targets, memory, batch["attention_mask"])  # (B, L, d), (B, L_t, d)
        logits = self.level_logits(self.vocab_logits(readout))  # (B, L, K_max)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        if not self.config.supervises_thinking:
            self._record_loss_parts(ce=ce)
            return logits, ce
        parts = self.thinking_losses(targets, memory, batch["attention_mask"], thinking)
        cfg = self.config
        think = cfg.align_weight * parts["align"] + cfg.global_weight * parts["global"] + cfg.reg_weight * parts["reg"]
        loss = ce + cfg.think_loss_weight * think
        self._record_loss_parts(ce=ce, **parts)
        return logits, loss

    def reason(self, targets: Tensor, memory: Tensor, memory_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing with thinking: readout states `(B, L, d)` and thinking tokens `(B, L_t, d)`.

        Same `decode_level` calls as the stepper, one level at a time through the KV cache.
        """
        cache, readouts, thinking = None, [], []
        for level in range(self.vocab.n_levels):
            previous = targets[:, level - 1] if level else None  # (B,)
            readout, think, cache = self.decode_level(level, previous, memory, memory_mask, cache)
            readouts.append(readout)
            if think is not None:
                thinking.append(think)
        return torch.stack(readouts, dim=1), torch.stack(thinking, dim=1)

    def decode_level(
        self, level: int, previous_codes: Tensor | None, memory: Tensor, memory_mask: Tensor,
        cache: EncoderDecoderCache | None,
    ) -> tuple[Tensor, Tensor | None, EncoderDecoderCache]:
        """One SID level through the cached decoder: x_l -> t_l -> the state that predicts level l.

        `previous_codes: (R,)` level-(l-1) codes (None at level 0). Returns the readout `(R, d)`,
        the thinking token `(R, d)` (None where the level has none) and the extended cache.
        """
        token = self.decoder_segment(level, previous_codes, memory, memory_mask)  # (R, 1, d): BOS or c_{l-1}
        hidden, cache = self.cached_decoder(token, memory, memory_mask, cache)  # (R, 1, d)
        if not self.thinks_at(level):
            return hidden[:, 0], None, cache
        thinking = hidden[:, 0] + self.level_position[level]  # (R, d), eq. 15-16
        readout, cache = self.cached_decoder(thinking[:, None].to(token.dtype), memory, memory_mask, cache)
        return readout[:, 0], thinking, cache  # readout (R, d), eq. 17

    def thinking_losses(
        self, targets: Tensor, memory: Tensor, memory_mask: Tensor, thinking: Tensor
    ) -> dict[str, Tensor]:
        """Unweighted `{"align", "global", "reg"}` scalars from the thinking tokens `(B, L_t, d)`."""
        self._require_coarse_clusters()
        semantic = targets[:, : self.n_cluster_levels]  # (B, L_c) codes of the quantiser levels
        projected = self.align_projection(thinking[:, : self.n_cluster_levels])  # (B, L_c, d_code)
        align = cluster_infonce(projected, self.coarse_centroids, self.coarse_valid, self.true_clusters(targets),
                                self.config.tau)
        bos = self.t5.shared(torch.full_like(targets[:, 0], BOS))  # (B, d)
        guide = self.global_decoder(bos, memory, memory_mask)  # v_g: (B, d)
        item_embedding = self.t5.shared(self.vocab.code_tokens(semantic)).mean(dim=1)  # (B, d)
        # rows whose targets share every semantic code are the same positive, not negatives
        duplicates = (semantic[:, None] == semantic[None, :]).all(dim=-1)  # (B, B)
        global_loss = in_batch_infonce(guide, item_embedding, duplicates, self.config.global_tau)
        reg = cosine_regulariser(thinking[:, 0], guide)
        return {"align": align, "global": global_loss, "reg": reg}

    def true_clusters(self, targets: Tensor) -> Tensor:
        """`(B, L)` codes -> `(B, L_c)` coarse cluster of each quantiser level's code."""
        levels = torch.arange(self.n_cluster_levels, device=targets.device)  # (L_c,)
        return self.coarse_assignment[levels, targets[:, : self.n_cluster_levels]]  # (B, L_c)

    @torch.no_grad()
    def thinking_clusters(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Teacher-forced `(predicted (B, L_c), true (B, L_c))` coarse cluster per quantiser level.

        predicted = the centroid the projected thinking token t_l is closest to (cosine), true =
        the cluster of the target's code s_l. Runs without dropout, restoring the mode after.
        """
        if not self.config.supervises_thinking:
            raise GenrecConfigError("think_loss_weight", "this variant has no trained projection of its thinking "
                                    "tokens onto the clusters (use_reasoning=False or think_loss_weight=0)")
        self._require_coarse_clusters()
        was_training = self.training
        self.eval()
        try:
            batch = self._to_device(batch)
            memory = self.encode(batch["input_ids"], batch["attention_mask"])  # (B, S, d)
            _, thinking = self.reason(batch["targets"], memory, batch["attention_mask"])  # (B, L_t, d)
            projected = self.align_projection(thinking[:, : self.n_cluster_levels])  # (B, L_c, d_code)
            logits = cluster_logits(projected, self.coarse_centroids, self.coarse_valid, self.config.tau)
            return logits.argmax(dim=-1), self.true_clusters(batch["targets"])
        finally:
            self.train(was_training)

    def set_coarse_clusters(self, centroids: Sequence[np.ndarray], assignments: Sequence[np.ndarray]) -> None:
        """Store the codebook asset's clusters: per quantiser level `(C_l, d_code)` and `(K_l,)`.

        C_l may be below `n_coarse` (a level with fewer codes than C); the rest stay padding.
        """
        n_levels, n_coarse, d_code = self.coarse_centroids.shape
        if len(centroids) != n_levels or len(assignments) != n_levels:
            raise GenrecDataError(
                f"got {len(centroids)} levels of centroids and {len(assignments)} of assignments; the model has "
                f"{n_levels} quantiser levels (every SID level but the last, disambiguation one)",
                field="coarse_clusters",
            )
        new_centroids = torch.zeros_like(self.coarse_centroids, device="cpu")  # (L_c, C, d_code)
        new_valid = torch.zeros_like(self.coarse_valid, device="cpu")  # (L_c, C)
        new_assignment = torch.full_like(self.coarse_assignment, -1, device="cpu")  # (L_c, K_max)
        for level, (level_centroids, level_assignment) in enumerate(zip(centroids, assignments, strict=True)):
            level_centroids, level_assignment = np.asarray(level_centroids), np.asarray(level_assignment)
            if level_centroids.ndim != 2 or not 1 <= level_centroids.shape[0] <= n_coarse \
                    or level_centroids.shape[1] != d_code:
                raise GenrecDataError(
                    f"level {level}: centroids of shape {level_centroids.shape}, expected (C_l, {d_code}) with "
                    f"1 <= C_l <= {n_coarse}; build the model with the codebook's n_coarse and d_code",
                    field="coarse_centroids",
                )
            n_clusters, k = level_centroids.shape[0], self.vocab.codebook_sizes[level]
            if level_assignment.shape != (k,) or not np.issubdtype(level_assignment.dtype, np.integer):
                raise GenrecDataError(
                    f"level {level}: assignment of shape {level_assignment.shape} ({level_assignment.dtype}), "
                    f"expected ({k},) integers, one cluster per code", field="coarse_assignment",
                )
            if level_assignment.min() < 0 or level_assignment.max() >= n_clusters:
                raise GenrecDataError(
                    f"level {level}: clusters must lie in [0, {n_clusters}), got "
                    f"[{level_assignment.min()}, {level_assignment.max()}]", field="coarse_assignment",
                )
            new_centroids[level, :n_clusters] = torch.as_tensor(level_centroids, dtype=torch.float32)
            new_valid[level, :n_clusters] = True
            new_assignment[level, :k] = torch.as_tensor(level_assignment, dtype=torch.long)
        self.coarse_centroids.copy_(new_centroids)
        self.coarse_valid.copy_(new_valid)
        self.coarse_assignment.copy_(new_assignment)

    def stepper(self, batch: dict[str, Tensor]) -> TigerStepper:
        batch = self._to_device(batch)
        cls = S2grStepper if self.config.use_reasoning else TigerStepper
        return cls(self, batch["input_ids"], batch["attention_mask"])

    def _require_coarse_clusters(self) -> None:
        if not self.coarse_valid[:, 0].all():
            raise GenrecConfigError("coarse_clusters", "S²GR aligns its thinking tokens to the codebook's coarse "
                                    "clusters: call set_coarse_clusters(centroids, assignments) with the codebook "
                                    "asset's coarse_clusters.npz first")

    def _record_loss_parts(self, ce: Tensor, **thinking: Tensor) -> None:
        zero = torch.zeros((), device=ce.device)
        values = torch.stack([ce.detach().float(), *(thinking.get(n, zero).detach().float() for n in LOSS_PARTS[1:])])
        self.loss_parts = dict(zip(LOSS_PARTS, values, strict=True))  # device scalars: the loop reads them in bulk


class S2grStepper(TigerStepper):
    """Beam-search stepper: each `step` thinks and emits one level (two cached decoder calls).

    The state is TIGER's; `reorder` is inherited, since thinking tokens live only in the cache.
    """

    model: S2gr

    def step(self, state: TigerState, prefix: Tensor) -> tuple[Tensor, TigerState]:
        level = prefix.shape[1]
        previous = prefix[:, -1].to(state.memory.device) if level else None  # (R,)
        readout, _, cache = self.model.decode_level(level, previous, state.memory, state.memory_mask, state.cache)
        log_probs = self.model.level_log_probs(readout, level)  # (R, K_l)
        return log_probs, replace(state, cache=cache)


class GlobalDecoder(nn.Module):
    """psi (eq. 19): v_g from the [BOS] embedding and the encoder output.

    One pre-norm transformer decoder layer whose only query is BOS. Self-attention over a single
    token would only re-project it, so the layer is cross-attention pooling of the memory
    followed by a feed-forward block, each with a residual.
    """

    def __init__(self, d_model: int, n_heads: int, d_kv: int, d_ff: int):
        super().__init__()
        self.n_heads, self.d_kv = n_heads, d_kv
        self.query_norm = nn.LayerNorm(d_model)
        self.query = nn.Linear(d_model, n_heads * d_kv, bias=False)
        self.key = nn.Linear(d_model, n_heads * d_kv, bias=False)
        self.value = nn.Linear(d_model, n_heads * d_kv, bias=False)
        self.out = nn.Linear(n_heads * d_kv, d_model, bias=False)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))

    def forward(self, bos: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """`bos: (B, d)`, `memory: (B, S, d)`, `memory_mask: (B, S)` -> v_g `(B, d)`."""
        batch_size, length, _ = memory.shape
        heads = (self.n_heads, self.d_kv)
        query = self.query(self.query_norm(bos)).view(batch_size, 1, *heads).transpose(1, 2)  # (B, H, 1, d_kv)
        key = self.key(memory).view(batch_size, length, *heads).transpose(1, 2)  # (B, H, S, d_kv)
        value = self.value(memory).view(batch_size, length, *heads).transpose(1, 2)  # (B, H, S, d_kv)
        attend = memory_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        pooled = F.scaled_dot_product_attention(query, key, value, attn_mask=attend)  # (B, H, 1, d_kv)
        x = bos + self.out(pooled.reshape(batch_size, self.n_heads * self.d_kv))  # (B, d)
        return x + self.ff(self.ff_norm(x))


def cluster_logits(projected: Tensor, centroids: Tensor, valid: Tensor, tau: float) -> Tensor:
    """cos(W t_l, mu_c) / tau: `(B, L_c, d_code)` x `(L_c, C, d_code)` -> `(B, L_c, C)`, -inf on padding."""
    similarity = torch.einsum(
        "bld,lcd->blc", F.normalize(projected.float(), dim=-1), F.normalize(centroids.float(), dim=-1)
    )  # (B, L_c, C)
    return (similarity / tau).masked_fill(~valid, float("-inf"))


def cluster_infonce(projected: Tensor, centroids: Tensor, valid: Tensor, clusters: Tensor, tau: float) -> Tensor:
    """L_align (eq. 18), mean over rows and levels: -log softmax_c(cos(W t_l, mu_c) / tau)[cluster of s_l].

    `projected: (B, L_c, d_code)`, `centroids: (L_c, C, d_code)`, `valid: (L_c, C)`, `clusters: (B, L_c)`.
    """
    logits = cluster_logits(projected, centroids, valid, tau)  # (B, L_c, C)
    return F.cross_entropy(logits.flatten(0, 1), clusters.flatten())


def in_batch_infonce(queries: Tensor, keys: Tensor, duplicates: Tensor, tau: float) -> Tensor:
    """In-batch InfoNCE (eq. 20): row i's positive is key i, the other rows' keys are negatives.

    `queries, keys: (B, d)`; `duplicates: (B, B)` True where row j's key is the same item as row
    i's: those are left out of i's negatives. Similarity cos / tau, mean over rows.
    """
    similarity = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T / tau  # (B, B)
    own = torch.eye(len(queries), dtype=torch.bool, device=queries.device)  # (B, B)
    logits = similarity.masked_fill(duplicates & ~own, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


def cosine_regulariser(thinking: Tensor, guide: Tensor) -> Tensor:
    """L_reg (eq. 21): mean 1 - cos(t, stopgrad(v_g)); only the thinking token moves."""
    return (1 - F.cosine_similarity(thinking.float(), guide.detach().float(), dim=-1)).mean()
