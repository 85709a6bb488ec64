"""The contract every tokenizer keeps, plus the input checks they share.

A tokenizer turns item embeddings ``X`` of shape (N, D) into integer codes of shape (N, L).
``encode`` returns codes *before* collision handling; ``collisions.disambiguate`` adds the
extra level that makes every item's SID unique.

Fits are bitwise reproducible for the same X, config (seed included) and torch thread count;
another thread count sums floats in another order, so codes may then differ slightly.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError


@dataclass
class FitReport:
    """What ``fit`` hands back: one dict per epoch (or per level for k-means) and wall time."""

    history: list[dict] = field(default_factory=list)
    fit_seconds: float = 0.0


class Tokenizer(ABC):
    """Base class: subclasses set ``name``, ``config_class`` and ``ordered``.

    ``save`` writes ``{"tokenizer", "config", "state"}`` with ``torch.save`` so that
    ``load`` can rebuild the same model from ``asdict(config)`` alone.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    # False when an item's tokens form an unordered set (MPQ) rather than a coarse-to-fine path.
    ordered: ClassVar[bool] = True

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise GenrecConfigError(
                "config",
                f"{self.name} needs a {self.config_class.__name__}, "
                f"got {type(self.config).__name__}",
            )
        self.config.validate()

    # --- what each tokenizer implements -------------------------------------------------------
    @property
    @abstractmethod
    def codebook_sizes(self) -> list[int]:
        """Number of codes at each level (for MPQ: in each expert's codebook)."""

    @abstractmethod
    def fit(
        self, X: np.ndarray, *, collab: np.ndarray | None = None, progress: bool = False
    ) -> FitReport: ...

    @abstractmethod
    def encode(self, X: np.ndarray) -> np.ndarray:
        """(N, D) float embeddings -> (N, L) int64 codes, before disambiguation."""

    @abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(N, L) codes -> (N, D) float32 reconstruction."""

    @abstractmethod
    def codebook_vectors(self, level: int) -> np.ndarray:
        """(K_level, d) code vectors of one level."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """Tensors and plain values that, with the config, rebuild the fitted tokenizer."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None: ...

    @property
    @abstractmethod
    def is_fitted(self) -> bool: ...

    # --- shared behaviour -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        self._require_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {"tokenizer": self.name, "config": asdict(self.config), "state": self._state()}
        # Write then rename so that a crash never leaves a half-written checkpoint behind.
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        blob = torch.load(Path(path), weights_only=True)
        if blob.get("tokenizer") != cls.name:
            raise GenrecDataError(
                f"checkpoint holds a '{blob.get('tokenizer')}' tokenizer, not '{cls.name}'; "
                "load it with genrec_ml.tokenizers.load_tokenizer",
                path=path,
            )
        tokenizer = cls(cls.config_class(**blob["config"]))
        tokenizer._load_state(blob["state"])
        return tokenizer

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{self.name} tokenizer is not fitted: call fit() or load() first")

    def _check_level(self, level: int) -> None:
        if not 0 <= level < len(self.codebook_sizes):
            raise GenrecDataError(
                f"level {level} out of range 0..{len(self.codebook_sizes) - 1}", field="level"
            )


def as_embeddings(X: Any, name: str = "X", dim: int | None = None) -> np.ndarray:
    """Check an (N, D) matrix of finite numbers and return it as a writable float32 array (torch.from_numpy
    of a read-only one, e.g. a warehouse column, warns of undefined behaviour).

    Raises GenrecDataError naming the first row with a NaN or inf, because one bad row
    silently poisons every centroid and gradient after it.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise GenrecDataError(
            f"expected a non-empty (N, D) matrix, got shape {X.shape}", field=name
        )
    if not np.issubdtype(X.dtype, np.number):
        raise GenrecDataError(f"expected numbers, got dtype {X.dtype}", field=name)
    if dim is not None and X.shape[1] != dim:
        raise GenrecDataError(
            f"expected {dim} columns (the fitted input size), got {X.shape[1]}", field=name
        )
    finite_rows = np.isfinite(X).all(axis=1)
    if not finite_rows.all():
        bad = int(np.flatnonzero(~finite_rows)[0])
        raise GenrecDataError(
            f"row {bad} has NaN or inf values "
            f"({int((~finite_rows).sum())} bad rows); drop or re-embed those items",
            field=name,
        )
    return np.require(X, dtype=np.float32, requirements=["C", "W"])


def as_codes(codes: Any, codebook_sizes: list[int], name: str = "codes") -> np.ndarray:
    """Check (N, L) integer codes with column l in [0, codebook_sizes[l]); return int64."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != len(codebook_sizes):
        raise GenrecDataError(
            f"expected shape (N, {len(codebook_sizes)}), got {codes.shape}", field=name
        )
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise GenrecDataError(f"expected integer codes, got dtype {codes.dtype}", field=name)
    codes = codes.astype(np.int64, copy=False)
    for level, size in enumerate(codebook_sizes):
        column = codes[:, level]
        if column.size and (column.min() < 0 or column.max() >= size):
            raise GenrecDataError(
                f"level {level} holds codes outside [0, {size})", field=name
            )
    return codes


def check_positive(config: Any, *names: str) -> None:
    """Raise GenrecConfigError for the first named numeric field that is not > 0."""
    for name in names:
        if not getattr(config, name) > 0:
            raise GenrecConfigError(name, f"must be > 0, got {getattr(config, name)!r}")


def check_codebook_shape(n_levels: int, codebook_size: int, levels_field: str = "n_levels") -> None:
    if n_levels < 1:
        raise GenrecConfigError(levels_field, f"needs at least 1, got {n_levels}")
    if codebook_size < 2:
        raise GenrecConfigError(
            "codebook_size", f"needs at least 2 codes per codebook, got {codebook_size}"
        )


def check_enough_items(n_items: int, codebook_size: int) -> None:
    """k-means cannot place more centroids than there are items."""
    if codebook_size > n_items:
        raise GenrecConfigError(
            "codebook_size",
            f"{codebook_size} codes but only {n_items} items; lower codebook_size to <= {n_items}",
        )
