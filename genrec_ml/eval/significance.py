"""Is a method better than its baseline on the same users? A paired bootstrap over test users.

Both models ranked the same test users; `evaluation_ranks` holds where each user's target landed.
Per user, a cut-off metric is a number (hit or not for Recall@K, 1/log2(rank+1) for NDCG@K);
averaged over each side's seeds, the two sides form pairs. Resampling users with replacement
keeps each user's pair together, which is what makes the test paired: the large user-to-user
variance cancels, as in the bootstrap tests of the LASAR paper (§3.2) and of Urbano et al.'s IR
evaluation studies.

    diff      = mean_u (a_u - b_u)
    d*_j      = mean of (a - b) over a resample of the users, j = 1..B
    CI        = the (1 - c)/2 and (1 + c)/2 percentiles of d*
    p-value   = (1 + #{j: |d*_j - diff| >= |diff|}) / (B + 1)

The p-value shifts the bootstrap distribution to the null (mean 0) and counts resamples at least
as extreme as the observed difference, two-sided; the +1s keep it a valid p-value at small B.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Which model each method is compared with: the papers' own comparisons (S²GR, CARE and REG4Rec
# report gains over TIGER; LASAR, and the explicit-CoT baseline it reports beside itself, over the
# SFT-only baseline, MiniOneRec SFT; ReaRec adds latent reasoning steps to SASRec, its backbone).
BASELINES: dict[str, tuple[str, str]] = {
    "s2gr": ("tiger", "default"),
    "care": ("tiger", "default"),
    "reg4rec": ("tiger", "default"),
    "lasar": ("minionerec", "default"),
    "explicit_cot": ("minionerec", "default"),
    "rearec": ("sasrec", "default"),
}
DEFAULT_METRICS = (("recall", 10), ("ndcg", 10))


@dataclass(frozen=True)
class Bootstrap:
    mean: float  # the method's mean metric
    baseline_mean: float
    diff: float  # mean - baseline_mean
    ci_low: float
    ci_high: float
    p_value: float
    n_users: int
    n_boot: int
    confidence: float


def paired_bootstrap(values, baseline, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> Bootstrap:
    """Paired bootstrap of mean(values - baseline) over users; `values`, `baseline`: (U,) per-user metric."""
    a, b = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"needs two equal, non-empty per-user vectors, got shapes {a.shape} and {b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = a - b
    diff = float(d.mean())
    rng = np.random.default_rng(seed)
    resampled = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # blocks of resamples: (256, U) indices at a time, not (B, U)
        rows = min(256, n_boot - start)
        resampled[start : start + rows] = d[rng.integers(0, len(d), (rows, len(d)))].mean(axis=1)
    low, high = np.quantile(resampled, [(1 - confidence) / 2, (1 + confidence) / 2])
    extreme = int((np.abs(resampled - diff) >= abs(diff) - 1e-12).sum())
    return Bootstrap(mean=float(a.mean()), baseline_mean=float(b.mean()), diff=diff, ci_low=float(low),
                     ci_high=float(high), p_value=(1 + extreme) / (n_boot + 1), n_users=len(d), n_boot=n_boot,
                     confidence=confidence)


def per_user_metric(rank: np.ndarray, metric: str, k: int) -> np.ndarray:
    """(U,) Recall@k (hit) or NDCG@k of each user from `rank`: 1-based position of the target, 0 = absent."""
    rank = np.asarray(rank)
    inside = (rank >= 1) & (rank <= k)
    if metric == "recall":
        return inside.astype(np.float64)
    if metric == "ndcg":
        return np.where(inside, 1.0 / np.log2(np.maximum(rank, 1) + 1), 0.0)
    raise ValueError(f"per-user metric {metric!r} is not defined; use recall or ndcg")


IDENTITY = ["model", "variant", "tokenizer", "profile", "scheme"]


def significance_rows(ranks: pd.DataFrame, metrics=DEFAULT_METRICS, n_boot: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> pd.DataFrame:
    """One row per (method evaluation group, metric) against its baseline under the same profile and scheme.

    `ranks`: test rows of current evaluations with columns model, variant, tokenizer, profile, scheme,
    seed, user_index, rank. A method's seeds are averaged per user, and so are the baseline's; only
    users both sides ranked are compared. The baseline is `BASELINES[model]` on the method's own
    codebook when that was evaluated, else on the baseline's most evaluated one.
    """
    rows = []
    groups = {key: frame for key, frame in ranks.groupby(IDENTITY, dropna=False)}
    for (model, variant, tokenizer, profile, scheme), frame in groups.items():
        if model not in BASELINES:
            continue
        base_model, base_variant = BASELINES[model]
        candidates = {key: f for key, f in groups.items()
                      if key[:2] == (base_model, base_variant) and key[3:] == (profile, scheme)}
        if not candidates:
            continue
        same_codes = [key for key in candidates if key[2] == tokenizer]
        base_key = same_codes[0] if same_codes else max(candidates, key=lambda key: len(candidates[key]))
        base = candidates[base_key]
        for metric, k in metrics:
            ours, theirs = _seed_mean(frame, metric, k), _seed_mean(base, metric, k)
            paired = pd.concat([ours, theirs], axis=1, join="inner", keys=["ours", "theirs"])
            if paired.empty:
                continue
            result = paired_bootstrap(paired["ours"], paired["theirs"], n_boot, confidence, seed)
            rows.append({"model": model, "variant": variant, "tokenizer": tokenizer, "profile": profile,
                         "scheme": scheme, "baseline_model": base_model, "baseline_variant": base_variant,
                         "baseline_tokenizer": base_key[2], "metric": metric, "k": k, "mean": result.mean,
                         "baseline_mean": result.baseline_mean, "diff": result.diff, "ci_low": result.ci_low,
                         "ci_high": result.ci_high, "p_value": result.p_value, "n_users": result.n_users,
                         "seeds": sorted(int(s) for s in frame["seed"].dropna().unique()),
                         "baseline_seeds": sorted(int(s) for s in base["seed"].dropna().unique()),
                         "n_boot": n_boot, "confidence": confidence})
    return pd.DataFrame(rows)


def _seed_mean(frame: pd.DataFrame, metric: str, k: int) -> pd.Series:
    """Per-user metric averaged over the seeds of one evaluation group, indexed by user_index."""
    values = frame.assign(value=per_user_metric(frame["rank"].to_numpy(), metric, k))
    return values.groupby("user_index")["value"].mean()
