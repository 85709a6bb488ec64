"""ReaRec (Tang et al., 2025, "Think Before Recommend"): SASRec plus K latent reasoning steps.

SASRec encodes the history; its state at the last item is h_0. Each reasoning step appends one
token to the causal sequence, the previous state plus a reasoning position embedding R_k, and
reads the new last state:

    h_0 = SASRec(items)[-1]
    h_k = SASRec([items, LN(h_0 + R_0), ..., LN(h_{k-1} + R_{k-1})])[-1]      k = 1..K

R keeps the reasoning tokens apart from the item positions; LN and dropout are the ones the
item embeddings go through, so both kinds of token enter the blocks at the same scale. A step's
logits are `h_k . E / temperature` (E the item embedding). Two ways to train (`variant`):

- ERL, ensemble reasoning learning: the cross-entropy of every step's logits, averaged over the
  K + 1 steps, minus `kl_weight` times the mean KL divergence between the steps' item
  distributions (over ordered pairs), which keeps the steps from collapsing onto one answer.
  Scores average the steps (the same as the paper's mean-pooled h, the scores being linear in h).
- PRL, progressive reasoning learning: the last step's cross-entropy, plus the earlier steps'
  cross-entropies at annealed temperatures, step k at `temperature * temperature_scale^(K-k)`
  (softer targets early, sharper later), plus an InfoNCE term that asks each reasoning state
  h_k (k >= 1) from a second pass with Gaussian noise on the reasoning inputs to pick out its
  own clean h_k among the batch's. Scores come from h_K.

What is simplified, against the paper and the authors' code: the steps are recomputed with the
whole sequence each time instead of a key/value cache (exact, since attention is causal, and
cheap at K = 2 and 20 items); ERL averages per-step losses as the paper writes it, where the
authors' code takes one loss on the mean-pooled state; PRL adds noise from the first step, where
the code waits two epochs (a model does not know the epoch); the KL treats the second
distribution of each pair as a constant, as the code does. Blocks are pre-LN (see `sasrec.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.item_model import (
    ItemModel,
    ItemModelConfig,
    attention_mask,
    catalog_scores,
    check_at_least,
    check_choice,
    check_heads,
    check_probability,
)
from genrec_ml.models.sasrec import SASRec, SASRecConfig

VARIANTS = ("erl", "prl")


@dataclass(frozen=True)
class ReaRecConfig(ItemModelConfig):
    d_model: int = 64  # SASRec backbone: embedding and hidden size
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256  # MLP width, 4 * d_model
    dropout: float = 0.2
    reasoning_steps: int = 2  # K, latent steps after the history (the paper's usual best: 1-3); 0 is SASRec
    variant: str = "erl"  # "erl": ensemble of every step; "prl": progressive, scores from the last step
    temperature: float = 0.07  # logits = h . E / temperature (the authors' code)
    kl_weight: float = 0.05  # ERL: weight of the KL between steps, subtracted from the loss
    temperature_scale: float = 5.0  # PRL: step k's temperature is temperature * temperature_scale^(K - k)
    progressive_weight: float = 1.0  # PRL: weight of the earlier steps' annealed cross-entropies
    contrastive_weight: float = 1.0  # PRL: weight of the InfoNCE between noisy and clean states
    noise_std: float = 0.01  # PRL: std of the Gaussian noise on reasoning inputs for the InfoNCE view

    def __post_init__(self):
        super().__post_init__()
        check_at_least(self, 1, "d_model", "n_layers", "n_heads", "d_ff", "temperature_scale")
        check_at_least(self, 0, "reasoning_steps", "kl_weight", "progressive_weight", "contrastive_weight",
                       "noise_std")
        check_heads(self)
        check_probability(self, "dropout")
        check_choice(self, "variant", VARIANTS)
        if self.temperature <= 0:
            raise GenrecConfigError("temperature", f"must be > 0, got {self.temperature}")


class ReaRec(ItemModel):
    name = "rearec"
    config_class = ReaRecConfig

    def __init__(self, config: ReaRecConfig):
        super().__init__(config)
        self.backbone = SASRec(SASRecConfig(
            n_items=config.n_items, max_history=config.max_history, d_model=config.d_model,
            n_layers=config.n_layers, n_heads=config.n_heads, d_ff=config.d_ff, dropout=config.dropout,
        ))
        self.reasoning_embedding = nn.Embedding(config.reasoning_steps, config.d_model)  # R_0..R_{K-1}
        nn.init.normal_(self.reasoning_embedding.weight, std=0.02)
        self.loss_parts: dict[str, Tensor] = {}  # the last forward's loss terms, logged by the training loop

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """`(logits (B, n_items), loss)`: the variant's scores and training loss."""
        history, targets = self.history(batch), self.targets(batch)
        states = self.reason(history)  # (B, K + 1, d)
        step_logits = self.step_logits(states).float()  # (B, K + 1, N)
        if self.config.variant == "erl":
            return step_logits.mean(dim=1), self._erl_loss(step_logits, targets)
        return step_logits[:, -1], self._prl_loss(history, states, step_logits, targets)

    def next_item_scores(self, batch: dict[str, Tensor]) -> Tensor:
        step_logits = self.step_logits(self.reason(self.history(batch)))  # (B, K + 1, N)
        return step_logits.mean(dim=1) if self.config.variant == "erl" else step_logits[:, -1]

    def reason(self, history: Tensor, noise_std: float = 0.0) -> Tensor:
        """`(B, T)` left-padded history -> `(B, K + 1, d)` states h_0..h_K.

        `noise_std` > 0 adds Gaussian noise (torch's global RNG) to every reasoning input.
        """
        sasrec = self.backbone
        x = sasrec.embed(history)  # (B, T, d)
        valid = history != 0  # (B, T)
        states = [sasrec.transformer(x, attention_mask(valid, causal=True))[:, -1]]  # [(B, d)]
        for k in range(self.config.reasoning_steps):
            thought = states[-1] + self.reasoning_embedding.weight[k]  # (B, d)
            if noise_std > 0:
                thought = thought + noise_std * torch.randn_like(thought)
            x = torch.cat([x, sasrec.dropout(sasrec.input_norm(thought))[:, None]], dim=1)  # (B, T + k + 1, d)
            valid = F.pad(valid, (0, 1), value=True)  # (B, T + k + 1)
            states.append(sasrec.transformer(x, attention_mask(valid, causal=True))[:, -1])
        return torch.stack(states, dim=1)  # (B, K + 1, d)

    def step_logits(self, states: Tensor) -> Tensor:
        """`(B, K + 1, d)` -> `(B, K + 1, N)` each step's item logits, temperature applied."""
        return catalog_scores(states, self.backbone.item_embedding, self.config.n_items) / self.config.temperature

    def _erl_loss(self, step_logits: Tensor, targets: Tensor) -> Tensor:
        B, S, N = step_logits.shape
        rec = F.cross_entropy(step_logits.reshape(B * S, N), targets.repeat_interleave(S))  # mean over steps
        kl = step_divergence(step_logits) if S > 1 else step_logits.new_zeros(())
        self.loss_parts = {"rec": rec.detach(), "kl": kl.detach()}
        return rec - self.config.kl_weight * kl

    def _prl_loss(self, history: Tensor, states: Tensor, step_logits: Tensor, targets: Tensor) -> Tensor:
        config, K = self.config, self.config.reasoning_steps
        loss = last = F.cross_entropy(step_logits[:, -1], targets)
        self.loss_parts = {"last": last.detach()}
        if K == 0:
            return loss
        # step k < K at temperature * scale^(K - k): the earliest step is the softest
        scales = config.temperature_scale ** torch.arange(K, 0, -1, device=step_logits.device)  # (K,)
        earlier = step_logits[:, :-1] / scales[None, :, None]  # (B, K, N)
        progressive = F.cross_entropy(earlier.flatten(0, 1), targets.repeat_interleave(K))
        loss = loss + config.progressive_weight * progressive
        self.loss_parts["progressive"] = progressive.detach()
        if self.training and config.noise_std > 0 and config.contrastive_weight > 0:
            noisy = self.reason(history, config.noise_std)  # (B, K + 1, d)
            contrastive = info_nce(noisy[:, 1:], states[:, 1:], config.temperature)
            loss = loss + config.contrastive_weight * contrastive
            self.loss_parts["contrastive"] = contrastive.detach()
        return loss


def step_divergence(step_logits: Tensor) -> Tensor:
    """Mean KL(p_j || p_i) over ordered pairs of steps j != i; `step_logits: (B, S, N)`, S >= 2.

    p_i, the second distribution of each pair, is held constant, as in the authors' code:
    every step is pushed away from the others without being pulled by their gradients.
    """
    S = step_logits.shape[1]
    log_p = step_logits.log_softmax(dim=-1)  # (B, S, N)
    p = log_p.exp()
    neg_entropy = (p * log_p).sum(-1)  # (B, S): sum_n p_j log p_j
    cross = torch.einsum("bjn,bin->bji", p, log_p.detach())  # (B, S, S): sum_n p_j log p_i
    kl = neg_entropy[:, :, None] - cross  # (B, S, S): KL(p_j || p_i)
    pairs = ~torch.eye(S, dtype=torch.bool, device=kl.device)  # (S, S) off the diagonal
    return kl[:, pairs].mean()


def info_nce(queries: Tensor, keys: Tensor, temperature: float) -> Tensor:
    """In-batch InfoNCE per step: `queries, keys: (B, S, d)`; query b's positive is key b.

    Mean over steps and rows of the cross-entropy of `queries[b, s] . keys[:, s] / temperature`.
    """
    B, S, _ = queries.shape
    similarity = torch.einsum("bsd,csd->sbc", queries, keys).float() / temperature  # (S, B, B)
    labels = torch.arange(B, device=queries.device).repeat(S)  # (S * B,), row b of every step
    return F.cross_entropy(similarity.reshape(S * B, B), labels)
