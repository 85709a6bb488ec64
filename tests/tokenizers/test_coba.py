"""CoBa RQ-VAE: uniformity loss vs a plain reference, balance scale, balancing effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genrec_ml.errors import GenrecConfigError
from genrec_ml.tokenizers import CoBaRQVAEConfig, utilization
from genrec_ml.tokenizers.coba_rqvae import (
    balance_scale,
    uniformity_loss,
    uniformity_loss_reference,
)
from tests.tokenizers.tiny import TINY, tiny_tokenizer

# Pairwise D: 01=1, 02=4, 03=9, 12=5, 13=4, 23=13.
CODEBOOK = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]


def test_uniformity_matches_hand_value_and_reference():
    # δ = 4.5 keeps pairs 01 (D=1), 02 (D=4) and 13 (D=4).
    expected = math.log(1 + math.exp(-1) + 2 * math.exp(-4))
    assert expected == pytest.approx(0.339688, abs=1e-6)
    loss = uniformity_loss(torch.tensor(CODEBOOK), delta=4.5, mu=1.0)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert uniformity_loss_reference(CODEBOOK, delta=4.5, mu=1.0) == pytest.approx(expected)


@pytest.mark.parametrize("delta,mu", [(0.5, 1.0), (4.01, 0.3), (6.0, 2.0), (100.0, 0.1)])
def test_uniformity_agrees_with_reference(delta, mu):
    loss = uniformity_loss(torch.tensor(CODEBOOK), delta=delta, mu=mu)
    assert float(loss) == pytest.approx(uniformity_loss_reference(CODEBOOK, delta, mu), rel=1e-6)


def test_relative_uniformity_divides_by_mean_pair_distance():
    # mean D = 36 / 6 = 6, so δ = 1 keeps D/6 in {1/6, 4/6, 5/6, 4/6}.
    expected = math.log(1 + math.exp(-1 / 6) + 2 * math.exp(-4 / 6) + math.exp(-5 / 6))
    loss = uniformity_loss(torch.tensor(CODEBOOK), delta=1.0, mu=1.0, relative=True)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_uniformity_gradient_pushes_close_codes_apart():
    codebook = torch.tensor(CODEBOOK, requires_grad=True)
    uniformity_loss(codebook, delta=4.5, mu=1.0).backward()
    with torch.no_grad():
        moved = codebook - 0.1 * codebook.grad
    assert torch.dist(moved[0], moved[1]) > torch.dist(codebook[0], codebook[1])


def test_balance_scale_clips_relative_counts():
    scale = balance_scale(torch.tensor([1.0, 2.0, 3.0, 10.0]), max_ratio=2.0)  # mean 4
    assert scale.tolist() == pytest.approx([0.5, 0.5, 0.75, 2.0])


def skewed_items() -> np.ndarray:
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(400, 16)) * 0.3  # 80% of items crowd one spot
    spread = rng.normal(size=(100, 16)) * 3.0
    return np.concatenate([dense, spread]).astype(np.float32)


def test_load_balancing_flattens_code_usage():
    items = skewed_items()
    usage = {}
    for balance in (False, True):
        tokenizer = tiny_tokenizer("coba_rqvae", n_levels=1, uniformity_weight=0.0,
                                   balance=balance)
        tokenizer.fit(items)
        usage[balance] = utilization(tokenizer.encode(items), tokenizer.codebook_sizes)["levels"][0]
    assert usage[True]["usage_entropy"] > usage[False]["usage_entropy"] + 0.2
    assert usage[True]["largest_code_share"] < usage[False]["largest_code_share"] - 0.1


def test_counts_are_saved_with_the_model(tmp_path, items):
    tokenizer = tiny_tokenizer("coba_rqvae")
    tokenizer.fit(items)
    assert not torch.allclose(tokenizer.code_counts, torch.full_like(tokenizer.code_counts, 1 / 8))
    tokenizer.save(tmp_path / "coba.pt")
    loaded = type(tokenizer).load(tmp_path / "coba.pt")
    assert torch.equal(loaded.code_counts, tokenizer.code_counts)


@pytest.mark.parametrize("field,value", [("balance_max", 0.5), ("count_decay", 1.0),
                                         ("uniformity_mu", 0.0), ("uniformity_weight", -1.0)])
def test_bad_coba_settings_name_the_field(field, value):
    with pytest.raises(GenrecConfigError) as info:
        CoBaRQVAEConfig(**{**TINY["coba_rqvae"], field: value}).validate()
    assert info.value.field == field
