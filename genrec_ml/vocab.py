"""Token ids of a semantic-ID model: special tokens, one block of ids per SID level, user buckets.

Layout of the vocabulary (V = 2 + sum_l K_l + n_user_buckets ids):

    0                      pad
    1                      bos / eos (decoder start; with `history_eos`, also the end of the history)
    offset_l + c           code c of SID level l, offset_l = 2 + K_0 + ... + K_{l-1}
    user_offset + h        user bucket h = hash(user_index) mod n_user_buckets

Every level owns its own block, so the same code at two levels is two different tokens, and a
level's output distribution is just its block of the logits. Shared by every SID method (TIGER,
S²GR, CARE, REG4Rec, LASAR) so that datasets and decoders agree on the numbering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from genrec_ml.errors import GenrecConfigError, GenrecDataError

PAD = 0
BOS = 1  # also eos: a SID has a fixed length, so the decoder never needs to emit an end token
N_SPECIAL = 2
# Knuth's multiplicative constant: consecutive user indices land in unrelated buckets, so users
# that are neighbours in the index (often: signed up together) do not systematically share one.
_HASH_MULTIPLIER = 2654435761


@dataclass(frozen=True)
class SidVocab:
    codebook_sizes: tuple[int, ...]  # K_l per SID level, the last one the disambiguation level
    n_user_buckets: int = 2000  # hashed user ids (TIGER); 0 drops the user token
    # An EOS token (id 1, as T5's </s>) after the history: the anchor from which the encoder's relative
    # positions tell the most recent item from older ones (without it nothing marks where a right-padded
    # history ends, and cross-attention has no positions at all)
    history_eos: bool = False

    def __post_init__(self):
        sizes = tuple(int(k) for k in self.codebook_sizes)
        object.__setattr__(self, "codebook_sizes", sizes)
        if not sizes or min(sizes) < 1:
            raise GenrecConfigError("codebook_sizes", f"needs one positive size per SID level, got {sizes}")
        if self.n_user_buckets < 0:
            raise GenrecConfigError("n_user_buckets", f"must be >= 0, got {self.n_user_buckets}")

    @property
    def n_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """First token id of each level's block."""
        return tuple(N_SPECIAL + sum(self.codebook_sizes[:level]) for level in range(self.n_levels))

    @property
    def user_offset(self) -> int:
        return N_SPECIAL + sum(self.codebook_sizes)

    @property
    def size(self) -> int:
        return self.user_offset + self.n_user_buckets

    def level_slice(self, level: int) -> slice:
        """Token ids of level `level`'s codes, as a slice of the vocabulary."""
        start = self.offsets[level]
        return slice(start, start + self.codebook_sizes[level])

    def code_tokens(self, codes: Tensor, first_level: int = 0) -> Tensor:
        """Token ids of `codes: (..., l)` holding levels first_level .. first_level + l - 1."""
        n = codes.shape[-1]
        offsets = torch.tensor(self.offsets[first_level : first_level + n], device=codes.device)  # (l,)
        return codes.long() + offsets

    def user_tokens(self, user_index: Tensor) -> Tensor:
        """(B,) user-bucket token per user index; needs n_user_buckets > 0."""
        if self.n_user_buckets == 0:
            raise GenrecConfigError("n_user_buckets", "is 0, so there is no user token to look up")
        buckets = (user_index.long() * _HASH_MULTIPLIER) % (2**32) % self.n_user_buckets
        return self.user_offset + buckets

    def level_index(self) -> tuple[Tensor, Tensor]:
        """Gather table from vocabulary logits to per-level code logits.

        Returns `index: (L, K_max)` token ids (pad id past K_l) and `valid: (L, K_max)` bool,
        False where code c does not exist at level l.
        """
        k_max = max(self.codebook_sizes)
        codes = torch.arange(k_max)  # (K_max,)
        valid = codes[None, :] < torch.tensor(self.codebook_sizes)[:, None]  # (L, K_max)
        index = torch.tensor(self.offsets)[:, None] + codes[None, :]  # (L, K_max)
        return index.masked_fill(~valid, PAD), valid


def resolve_codebook_sizes(sids, codebook_sizes: Sequence[int] | None = None) -> tuple[int, ...]:
    """K_l for every level of `sids: (N_items, L)`.

    `codebook_sizes` may list all L levels, or only the L-1 quantiser levels: the disambiguation
    level's size is then the largest disambiguation code + 1. Without it every level is inferred.
    """
    sids = np.asarray(sids)
    if sids.ndim != 2 or sids.shape[0] == 0:
        raise GenrecDataError(f"SIDs must be a non-empty (N_items, L) matrix, got shape {sids.shape}", field="sids")
    inferred = tuple(int(k) + 1 for k in sids.max(axis=0))
    if codebook_sizes is None:
        return inferred
    sizes = tuple(int(k) for k in codebook_sizes)
    if len(sizes) == sids.shape[1] - 1:
        sizes = (*sizes, inferred[-1])
    if len(sizes) != sids.shape[1]:
        raise GenrecConfigError(
            "codebook_sizes",
            f"{sizes} has {len(sizes)} levels but the SIDs have {sids.shape[1]}; pass one size per level, "
            "or one per quantiser level without the disambiguation level",
        )
    too_small = [level for level, (k, seen) in enumerate(zip(sizes, inferred, strict=True)) if seen > k]
    if too_small:
        level = too_small[0]
        raise GenrecDataError(
            f"level {level} holds code {inferred[level] - 1} but codebook_sizes gives only {sizes[level]} codes",
            field="codebook_sizes",
        )
    return sizes
