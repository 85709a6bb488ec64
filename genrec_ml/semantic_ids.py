"""Semantic IDs for a catalog: fit a tokenizer, encode, disambiguate, measure, save.

One call per codebook variant; the Dagster asset only loads embeddings, calls `build_semantic_ids`
and writes what it returns.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from genrec_ml.errors import GenrecConfigError
from genrec_ml.tokenizers import TOKENIZERS
from genrec_ml.tokenizers.base import FitReport, Tokenizer
from genrec_ml.tokenizers.collisions import coarse_clusters, disambiguate, utilization


@dataclass
class SemanticIds:
    tokenizer: Tokenizer
    codes: np.ndarray  # (N, L) codes in [0, K_l) before disambiguation; for MPQ column l = expert l
    sids: np.ndarray  # (N, L + 1) unique per item: the last level separates colliding items
    utilization: dict[str, Any]  # see tokenizers.collisions.utilization
    coarse_centroids: list[np.ndarray]  # per level (C, d): S²GR's coarse clusters of code vectors
    coarse_assignment: list[np.ndarray]  # per level (K_l,): cluster of each code
    fit: FitReport


def tokenizer_config(name: str, overrides: dict[str, Any] | None = None, seed: int | None = None):
    """The tokenizer's dataclass config with validated overrides (unknown fields are errors)."""
    if name not in TOKENIZERS:
        raise GenrecConfigError("tokenizer", f"unknown tokenizer {name!r}; choose one of {sorted(TOKENIZERS)}")
    config_class, _ = TOKENIZERS[name]
    known = {f.name for f in fields(config_class)}
    overrides = dict(overrides or {})
    if seed is not None:
        overrides["seed"] = seed
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise GenrecConfigError(unknown[0], f"{name} has no such setting; known: {sorted(known)}")
    # JSON has no tuples: lists become tuples where the default is a tuple (e.g. hidden sizes).
    defaults = config_class()
    for key, value in overrides.items():
        if isinstance(getattr(defaults, key), tuple) and isinstance(value, list):
            overrides[key] = tuple(value)
    return config_class(**{**asdict(defaults), **overrides})


# Codebook variants that are a tokenizer under other default settings: variant -> (tokenizer, settings).
# rq_vae_8x300 is REG4Rec's "w/o MPQ": RQ-VAE with MPQ's M = 8 codebooks of D = 300 (REG4Rec §4.3).
CODEBOOK_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "rq_vae_8x300": ("rq_vae", {"n_levels": 8, "codebook_size": 300}),
    "rq_kmeans_4x256": ("rq_kmeans", {"n_levels": 4, "codebook_size": 256}),  # LASAR §3.1: M = 4 tokens of 256
}


def build_semantic_ids(name: str, x: np.ndarray, *, collab: np.ndarray | None = None,
                       overrides: dict[str, Any] | None = None, seed: int = 0, n_coarse: int = 16,
                       progress: bool = False) -> SemanticIds:
    """Fit codebook variant `name` (a tokenizer, or a `CODEBOOK_VARIANTS` entry) on `x` and encode it."""
    if name in CODEBOOK_VARIANTS:
        name, defaults = CODEBOOK_VARIANTS[name]
        overrides = {**defaults, **(overrides or {})}
    config = tokenizer_config(name, overrides, seed)
    _, tokenizer_class = TOKENIZERS[name]
    tokenizer = tokenizer_class(config)
    report = tokenizer.fit(x, collab=collab, progress=progress)
    codes = tokenizer.encode(x)
    if not tokenizer.ordered:
        # MPQ encodes global tokens (expert·K + code) so a set can be shuffled; tables and the
        # utilization stats hold per-expert codes, like every other variant's per-level codes.
        codes = tokenizer.tokens_to_codes(codes)
    # Per-expert columns identify the expert, so equal sets are equal rows: compare in order.
    sids, _ = disambiguate(codes, ordered=True)
    stats = utilization(codes, tokenizer.codebook_sizes, ordered=True)
    centroids, assignments = [], []
    for level, size in enumerate(tokenizer.codebook_sizes):
        c, a = coarse_clusters(tokenizer.codebook_vectors(level), min(n_coarse, size), seed=seed)
        centroids.append(c)
        assignments.append(a)
    return SemanticIds(tokenizer, codes, sids, stats, centroids, assignments, report)


def save_semantic_ids(result: SemanticIds, folder: str | Path) -> dict[str, Path]:
    """tokenizer.pt (config + weights), coarse_clusters.npz and sids.npy in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"tokenizer": folder / "tokenizer.pt", "coarse_clusters": folder / "coarse_clusters.npz",
             "sids": folder / "sids.npy", "fit_history": folder / "fit_history.json"}
    result.tokenizer.save(paths["tokenizer"])
    np.savez(paths["coarse_clusters"],
             **{f"centroids_{i}": c for i, c in enumerate(result.coarse_centroids)},
             **{f"assignment_{i}": a for i, a in enumerate(result.coarse_assignment)})
    np.save(paths["sids"], result.sids)
    paths["fit_history"].write_text(json.dumps(result.fit.history))
    return paths
