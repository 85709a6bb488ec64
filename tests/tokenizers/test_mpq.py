"""MPQ: orthogonality loss vs a plain reference, token sets, unordered collisions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec_ml.errors import GenrecDataError
from genrec_ml.tokenizers import disambiguate, utilization
from genrec_ml.tokenizers.mpq import orthogonality_loss, orthogonality_loss_reference


def as_items(expert_columns: list[list[float]]) -> torch.Tensor:
    """One value per expert per item (d = 1): columns -> (B, M, 1)."""
    return torch.tensor(expert_columns, dtype=torch.float32).T.unsqueeze(2)


def test_orthogonality_hand_values():
    # Expert 1 = [1, 2, 3] centres to [-1, 0, 1]/√2.
    # Expert 2 = [3, 2, 1] is its mirror image: correlation −1, loss 1.
    # Expert 2 = [1, 0, 1] centres to [1, −2, 1]/√6, orthogonal to expert 1: loss 0.
    assert float(orthogonality_loss(as_items([[1, 2, 3], [3, 2, 1]]))) == pytest.approx(1.0)
    assert float(orthogonality_loss(as_items([[1, 2, 3], [1, 0, 1]]))) == pytest.approx(
        0.0, abs=1e-7
    )
    # Three experts: pairs (1,2) → 1, (1,3) → 0, (2,3) → 0.
    three = as_items([[1, 2, 3], [3, 2, 1], [1, 0, 1]])
    assert float(orthogonality_loss(three)) == pytest.approx(1.0)
    assert orthogonality_loss_reference(three.tolist()) == pytest.approx(1.0)


def test_orthogonality_agrees_with_reference_on_random_projections():
    projections = torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(0))
    expected = orthogonality_loss_reference(projections.tolist())
    assert float(orthogonality_loss(projections)) == pytest.approx(expected, rel=1e-5)


def test_orthogonality_ignores_scale_and_offset_of_an_expert():
    projections = torch.randn(8, 2, 3, generator=torch.Generator().manual_seed(1))
    moved = projections.clone()
    moved[:, 1] = 5.0 * moved[:, 1] + 2.0
    assert float(orthogonality_loss(moved)) == pytest.approx(
        float(orthogonality_loss(projections)), rel=1e-5
    )


def test_token_columns_belong_to_their_expert(fitted, items):
    tokens = fitted["mpq"].encode(items)
    k = fitted["mpq"].config.codebook_size
    assert ((tokens // k) == np.arange(tokens.shape[1])).all()


def test_decode_ignores_token_order(fitted, items):
    tokenizer = fitted["mpq"]
    tokens = tokenizer.encode(items[:20])
    shuffled = np.random.default_rng(0).permuted(tokens, axis=1)
    assert not np.array_equal(shuffled, tokens)
    assert np.allclose(tokenizer.decode(shuffled), tokenizer.decode(tokens), atol=1e-6)


def test_decode_refuses_two_tokens_of_one_expert(fitted):
    tokens = np.array([[0, 9, 17], [1, 2, 17]])  # row 1 has two tokens of expert 0 (K = 8)
    with pytest.raises(GenrecDataError, match="row 1"):
        fitted["mpq"].decode(tokens)


def test_permuted_token_sets_collide(fitted, items):
    tokens = fitted["mpq"].encode(items[:1])
    pair = np.concatenate([tokens, tokens[:, ::-1]])  # same set, other order
    sids, rate = disambiguate(pair, ordered=fitted["mpq"].ordered)
    assert rate == 1.0
    assert sids[:, -1].tolist() == [0, 1]


def test_per_expert_codes_count_the_same_sids_as_global_tokens(fitted, items):
    tokenizer = fitted["mpq"]
    tokens = tokenizer.encode(items)
    codes = tokenizer.tokens_to_codes(tokens)
    assert ((codes >= 0) & (codes < tokenizer.config.codebook_size)).all()
    by_tokens = utilization(tokens, tokenizer.codebook_sizes, ordered=False)
    by_codes = utilization(codes, tokenizer.codebook_sizes, ordered=True)
    assert by_tokens["distinct_sids"] == by_codes["distinct_sids"]
