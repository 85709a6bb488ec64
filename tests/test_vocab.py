"""Token layout of SidVocab and codebook-size resolution, against hand-computed values."""

import numpy as np
import pytest
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.vocab import BOS, PAD, SidVocab, resolve_codebook_sizes


def test_layout_puts_each_level_and_the_users_in_their_own_block():
    vocab = SidVocab((3, 4, 3), n_user_buckets=5)
    assert (PAD, BOS) == (0, 1)
    assert vocab.offsets == (2, 5, 9)
    assert vocab.user_offset == 12
    assert vocab.size == 17
    assert vocab.level_slice(1) == slice(5, 9)
    codes = torch.tensor([[2, 3, 0], [0, 0, 2]])
    assert vocab.code_tokens(codes).tolist() == [[4, 8, 9], [2, 5, 11]]
    assert vocab.code_tokens(torch.tensor([[1]]), first_level=2).tolist() == [[10]]


def test_user_tokens_stay_in_the_user_block_and_spread_over_buckets():
    vocab = SidVocab((3, 4, 3), n_user_buckets=5)
    tokens = vocab.user_tokens(torch.arange(10_000))
    assert tokens.min() >= vocab.user_offset and tokens.max() < vocab.size
    counts = torch.bincount(tokens - vocab.user_offset, minlength=5)
    assert counts.min() > 1_500  # 2,000 per bucket when balanced
    assert torch.equal(tokens, vocab.user_tokens(torch.arange(10_000)))
    with pytest.raises(GenrecConfigError, match="n_user_buckets"):
        SidVocab((3,), n_user_buckets=0).user_tokens(torch.tensor([1]))


def test_level_index_gathers_each_levels_block_and_flags_missing_codes():
    vocab = SidVocab((3, 4, 3), n_user_buckets=5)
    index, valid = vocab.level_index()
    assert index.shape == valid.shape == (3, 4)
    assert valid.tolist() == [[True] * 3 + [False], [True] * 4, [True] * 3 + [False]]
    assert index[valid].tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_resolve_codebook_sizes_infers_or_completes_the_disambiguation_level():
    sids = np.array([[0, 5, 0], [1, 2, 3]])
    assert resolve_codebook_sizes(sids) == (2, 6, 4)
    assert resolve_codebook_sizes(sids, [8, 8]) == (8, 8, 4)
    assert resolve_codebook_sizes(sids, [8, 8, 6]) == (8, 8, 6)
    with pytest.raises(GenrecDataError, match="level 1 holds code 5"):
        resolve_codebook_sizes(sids, [8, 4])
    with pytest.raises(GenrecConfigError, match="codebook_sizes"):
        resolve_codebook_sizes(sids, [8])
