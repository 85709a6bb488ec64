"""Dataclass configs for the data stages, with commented defaults.

Dagster `Config` classes only map onto these; checkpoints and tables store `asdict(config)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from genrec_ml.errors import GenrecConfigError


@dataclass(frozen=True)
class CleaningConfig:
    k_core: int = 5  # users and items keep >= k interactions after iterative filtering; 1 disables it
    # A title carried by more than this share of the catalog is no name but a placeholder or
    # scraping debris ("Amazon.com", a cut-off tag): it falls back like an empty one. A real
    # catalog has no product name on 1% of its items...
    shared_title_share: float = 0.01
    # ...and a title must be carried by more than this many items as well: variants (sizes,
    # colours) may share a name, and in a small catalog 1% is only one or two items.
    shared_title_min_items: int = 5

    def __post_init__(self):
        if self.k_core < 1:
            raise GenrecConfigError("k_core", f"must be >= 1, got {self.k_core}")
        if not 0 < self.shared_title_share <= 1:
            raise GenrecConfigError("shared_title_share", f"must be in (0, 1], got {self.shared_title_share}")
        if self.shared_title_min_items < 1:
            raise GenrecConfigError("shared_title_min_items", f"must be >= 1, got {self.shared_title_min_items}")


@dataclass(frozen=True)
class SplitConfig:
    max_history: int = 20  # items of history kept before each target (most recent ones)
    ratio: tuple[float, float, float] = (0.8, 0.1, 0.1)  # per-user chronological train/valid/test

    def __post_init__(self):
        if self.max_history < 1:
            raise GenrecConfigError("max_history", f"must be >= 1, got {self.max_history}")
        if len(self.ratio) != 3 or any(r < 0 for r in self.ratio) or abs(sum(self.ratio) - 1) > 1e-6:
            raise GenrecConfigError("ratio", f"must be three non-negative shares summing to 1, got {self.ratio}")


@dataclass(frozen=True)
class EmbeddingConfig:
    model: str = "all-MiniLM-L6-v2"  # sentence-transformers name or local path; this name maps to the offline package
    batch_size: int = 128
    max_seq_length: int = 128  # tokens per item text; titles and short descriptions fit
    normalize: bool = True  # unit-length vectors, so cosine = dot product downstream

    def __post_init__(self):
        if self.batch_size < 1:
            raise GenrecConfigError("batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class CooccurrenceConfig:
    window: int = 3  # items within w consecutive interactions of one user co-occur
    max_seconds: int | None = None  # if set, co-occur when at most this many seconds apart instead

    def __post_init__(self):
        if self.window < 2:
            raise GenrecConfigError("window", f"a window of {self.window} holds no pair; use >= 2")
        if self.max_seconds is not None and self.max_seconds < 0:
            raise GenrecConfigError("max_seconds", f"must be >= 0, got {self.max_seconds}")


@dataclass(frozen=True)
class PropagationConfig:
    alpha: float = 0.2  # restart weight: share of the text embedding re-injected each hop (S²GR eq. 4)
    hops: int = 3  # K, propagation depth

    def __post_init__(self):
        if not 0 < self.alpha <= 1:
            raise GenrecConfigError("alpha", f"must be in (0, 1], got {self.alpha}")
        if self.hops < 0:
            raise GenrecConfigError("hops", f"must be >= 0, got {self.hops}")
