"""Aligning latent reasoning states to CoT anchor states (LASAR eq. 4, the terminal KL of §2.4, Table 2).

`bidirectional_kl(a, b) = ½ (KL(softmax a ‖ softmax b) + KL(softmax b ‖ softmax a))` over the hidden
dimension (LASAR §2.3); cosine distance and MSE are Table 2's alternatives. Batches hold variable
step counts N and segment counts S (appendix E.1/E.3): latent step t (1-based) pairs with segment t,
samples whose N exceeds their S are left out of the step-wise loss (E.3's boundary safety), and the
loss is the mean over the kept samples of each sample's mean over its N steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

KINDS = ("bikl", "cosine", "mse")


def bidirectional_kl(a: Tensor, b: Tensor) -> Tensor:
    """(..., D), (..., D) -> (...): symmetric KL between the softmax distributions of two hidden states."""
    log_p, log_q = F.log_softmax(a.float(), dim=-1), F.log_softmax(b.float(), dim=-1)
    kl_pq = (log_p.exp() * (log_p - log_q)).sum(-1)
    kl_qp = (log_q.exp() * (log_q - log_p)).sum(-1)
    return 0.5 * (kl_pq + kl_qp)


def alignment_distance(a: Tensor, b: Tensor, kind: str = "bikl") -> Tensor:
    """(..., D), (..., D) -> (...) by the named measure."""
    if kind == "bikl":
        return bidirectional_kl(a, b)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(a.float(), b.float(), dim=-1)
    if kind == "mse":
        return (a.float() - b.float()).pow(2).mean(-1)
    raise ValueError(f"alignment kind must be one of {KINDS}, got {kind!r}")


def stepwise_alignment(latent: Tensor, anchors: Tensor, n_steps: Tensor, n_segments: Tensor,
                       kind: str = "bikl") -> Tensor:
    """L_align (eq. 4) over a batch: `latent (B, T, D)` states h_1..h_T (T = max N), `anchors (B, S, D)`,
    `n_steps (B,)` each sample's N, `n_segments (B,)` its S. A scalar; 0 when no sample qualifies."""
    steps = min(latent.shape[1], anchors.shape[1])
    distance = alignment_distance(latent[:, :steps], anchors[:, :steps], kind)  # (B, steps)
    t = torch.arange(steps, device=latent.device)
    mask = (t[None, :] < n_steps[:, None]).float()  # (B, steps): the sample's own steps only
    kept = ((n_steps <= n_segments) & (n_steps > 0)).float()  # (B,)
    per_sample = (distance * mask).sum(1) / n_steps.clamp(min=1).float()  # (B,)
    return (per_sample * kept).sum() / kept.sum().clamp(min=1.0)


def terminal_alignment(latent: Tensor, anchors: Tensor, n_steps: Tensor, n_segments: Tensor,
                       kind: str = "bikl") -> Tensor:
    """L_TerminalKL (§2.4): D(h_N, h_final^cot), the last latent step against the last segment, batch mean."""
    rows = torch.arange(latent.shape[0], device=latent.device)
    last_state = latent[rows, (n_steps - 1).clamp(min=0)]  # (B, D)
    last_anchor = anchors[rows, (n_segments - 1).clamp(min=0)]  # (B, D)
    return alignment_distance(last_state, last_anchor, kind).mean()
