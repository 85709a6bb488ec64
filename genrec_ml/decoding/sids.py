"""Checks on a catalog's semantic IDs, shared by every constraint built from them."""

from __future__ import annotations

import torch
from torch import Tensor

from genrec_ml.errors import GenrecDataError


def validate_sids(
    sids: Tensor, codebook_sizes: tuple[int, ...] | None = None
) -> tuple[Tensor, tuple[int, ...]]:
    """Return `sids` as a long tensor (N_items, L) and the codebook size K_l of each level.

    Without `codebook_sizes` each K_l is inferred as (largest code at level l) + 1; pass the
    model's own sizes when some codes never occur, or the model's log-probs will not line up.
    Raises GenrecDataError naming the row and level of a bad code, or the two rows of a
    duplicated SID.
    """
    sids = _as_long_matrix(sids)
    if codebook_sizes is None:
        codebook_sizes = tuple(int(k) + 1 for k in sids.max(dim=0).values)
    codebook_sizes = _check_codebook_sizes(codebook_sizes, sids.shape[1])
    _check_code_range(sids, codebook_sizes)
    _check_unique(sids)
    return sids, codebook_sizes


def _as_long_matrix(sids: Tensor) -> Tensor:
    sids = torch.as_tensor(sids)
    if sids.dtype.is_floating_point or sids.dtype == torch.bool:
        raise GenrecDataError(f"SIDs must be integer codes, got dtype {sids.dtype}", field="sids")
    if sids.ndim != 2 or sids.shape[0] == 0 or sids.shape[1] == 0:
        raise GenrecDataError(
            f"SIDs must be a non-empty (N_items, L) matrix, got shape {tuple(sids.shape)}",
            field="sids",
        )
    return sids.long()


def _check_codebook_sizes(codebook_sizes: tuple[int, ...], n_levels: int) -> tuple[int, ...]:
    codebook_sizes = tuple(int(k) for k in codebook_sizes)
    if len(codebook_sizes) != n_levels or min(codebook_sizes) < 1:
        raise GenrecDataError(
            f"codebook_sizes {codebook_sizes} must give one positive size per SID level "
            f"({n_levels} levels)",
            field="codebook_sizes",
        )
    return codebook_sizes


def _check_code_range(sids: Tensor, codebook_sizes: tuple[int, ...]) -> None:
    sizes = torch.tensor(codebook_sizes, device=sids.device)  # (L,)
    bad = (sids < 0) | (sids >= sizes)  # (N, L)
    if bad.any():
        row, level = (int(i) for i in bad.nonzero()[0])
        raise GenrecDataError(
            f"item row {row}, level {level}: code {int(sids[row, level])} is outside "
            f"[0, {codebook_sizes[level]}); fix the tokenizer output or pass the right "
            "codebook_sizes",
            field="sids",
        )


def _check_unique(sids: Tensor) -> None:
    _, inverse, counts = torch.unique(sids, dim=0, return_inverse=True, return_counts=True)
    if (counts > 1).any():
        group = int((counts > 1).nonzero()[0])
        first, second = (int(i) for i in (inverse == group).nonzero()[:2, 0])
        raise GenrecDataError(
            f"item rows {first} and {second} share the SID {tuple(sids[first].tolist())}; "
            "SIDs must be unique -- run collision handling (an extra disambiguation level) "
            "before decoding",
            field="sids",
        )
