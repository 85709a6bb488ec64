"""The contract every registered tokenizer keeps (tiny configs, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.tokenizers import TOKENIZERS, FitReport, load_tokenizer
from tests.tokenizers.tiny import TINY, tiny_tokenizer

NAMES = sorted(TOKENIZERS)


def expert_offsets(tokenizer) -> np.ndarray:
    """MPQ tokens of column r live in [r*K, (r+1)*K); ordered tokenizers use [0, K)."""
    if tokenizer.ordered:
        return np.zeros(len(tokenizer.codebook_sizes), dtype=np.int64)
    return np.arange(len(tokenizer.codebook_sizes)) * np.array(tokenizer.codebook_sizes)


@pytest.mark.parametrize("name", NAMES)
def test_codes_have_shape_dtype_and_range(name, fitted, items):
    tokenizer = fitted[name]
    codes = tokenizer.encode(items)
    sizes = np.array(tokenizer.codebook_sizes)
    assert codes.shape == (len(items), len(sizes))
    assert codes.dtype == np.int64
    local = codes - expert_offsets(tokenizer)
    assert (local >= 0).all() and (local < sizes).all()


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_beats_the_mean_vector(name, fitted, items):
    tokenizer = fitted[name]
    reconstruction = tokenizer.decode(tokenizer.encode(items))
    assert reconstruction.shape == items.shape
    error = ((reconstruction - items) ** 2).sum(axis=1).mean()
    mean_error = ((items - items.mean(axis=0)) ** 2).sum(axis=1).mean()
    assert error < 0.8 * mean_error


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_codes(name, items, collab):
    first, second = tiny_tokenizer(name), tiny_tokenizer(name)
    report = first.fit(items, collab=collab)
    second.fit(items, collab=collab)
    assert np.array_equal(first.encode(items), second.encode(items))
    assert np.array_equal(first.codebook_vectors(0), second.codebook_vectors(0))
    assert isinstance(report, FitReport) and report.history and report.fit_seconds > 0


@pytest.mark.parametrize("name", NAMES)
def test_other_seed_gives_other_codebooks(name, fitted, items, collab):
    other = tiny_tokenizer(name, seed=7)
    other.fit(items, collab=collab)
    assert not np.allclose(other.codebook_vectors(0), fitted[name].codebook_vectors(0))


def test_fit_leaves_the_global_torch_rng_alone(items):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_tokenizer("rq_vae").fit(items)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_identical_codes(name, fitted, items, tmp_path):
    tokenizer = fitted[name]
    path = tmp_path / "nested" / f"{name}.pt"
    tokenizer.save(path)
    for loaded in (type(tokenizer).load(path), load_tokenizer(path)):
        assert type(loaded) is type(tokenizer)
        assert loaded.config == tokenizer.config
        codes = loaded.encode(items)
        assert np.array_equal(codes, tokenizer.encode(items))
        assert np.allclose(loaded.decode(codes), tokenizer.decode(codes), atol=1e-6)


def test_load_refuses_another_tokenizers_checkpoint(fitted, tmp_path):
    path = tmp_path / "kmeans.pt"
    fitted["rq_kmeans"].save(path)
    with pytest.raises(GenrecDataError, match="rq_kmeans"):
        TOKENIZERS["rq_vae"][1].load(path)


@pytest.mark.parametrize("name", NAMES)
def test_codebook_vectors_shape(name, fitted):
    tokenizer = fitted[name]
    for level, size in enumerate(tokenizer.codebook_sizes):
        vectors = tokenizer.codebook_vectors(level)
        assert vectors.shape[0] == size and vectors.ndim == 2
    with pytest.raises(GenrecDataError, match="level"):
        tokenizer.codebook_vectors(len(tokenizer.codebook_sizes))


@pytest.mark.parametrize("name", NAMES)
def test_nan_input_names_the_first_bad_row(name, items, collab):
    bad = items.copy()
    bad[17, 3] = np.nan
    bad[40, 0] = np.inf
    with pytest.raises(GenrecDataError, match="row 17") as info:
        tiny_tokenizer(name).fit(bad, collab=collab)
    assert info.value.field == "X"


@pytest.mark.parametrize("name", NAMES)
def test_encode_rejects_wrong_width_and_unfitted_use(name, fitted, items):
    with pytest.raises(GenrecDataError, match="columns"):
        fitted[name].encode(items[:, :-1])
    with pytest.raises(RuntimeError, match="fit"):
        tiny_tokenizer(name).encode(items)


@pytest.mark.parametrize("name", NAMES)
def test_decode_rejects_out_of_range_codes(name, fitted):
    tokenizer = fitted[name]
    codes = np.zeros((2, len(tokenizer.codebook_sizes)), dtype=np.int64) + expert_offsets(
        tokenizer
    )
    codes[1, 0] = -1
    with pytest.raises(GenrecDataError):
        tokenizer.decode(codes)


LEVEL_FIELD = {"mpq": "n_experts"}


@pytest.mark.parametrize("name", NAMES)
def test_impossible_configs_name_the_field(name):
    config_class = TOKENIZERS[name][0]
    levels = LEVEL_FIELD.get(name, "n_levels")
    with pytest.raises(GenrecConfigError) as info:
        config_class(**{**TINY[name], "codebook_size": 1}).validate()
    assert info.value.field == "codebook_size"
    with pytest.raises(GenrecConfigError) as info:
        TOKENIZERS[name][1](config_class(**{**TINY[name], levels: 0}))
    assert info.value.field == levels


@pytest.mark.parametrize("name", NAMES)
def test_more_codes_than_items_names_codebook_size(name, items, collab):
    tokenizer = tiny_tokenizer(name, codebook_size=8)
    with pytest.raises(GenrecConfigError) as info:
        tokenizer.fit(items[:5], collab=collab[:5])
    assert info.value.field == "codebook_size"
    assert "5 items" in str(info.value)


@pytest.mark.parametrize("name", ["rq_vae", "mpq"])
def test_batch_smaller_than_codebook_names_batch_size(name):
    with pytest.raises(GenrecConfigError) as info:
        TOKENIZERS[name][0](**{**TINY[name], "batch_size": 4}).validate()
    assert info.value.field == "batch_size"


def test_wrong_config_class_is_refused():
    with pytest.raises(GenrecConfigError, match="RQVAEConfig"):
        TOKENIZERS["rq_vae"][1](TOKENIZERS["rq_kmeans"][0]())


@pytest.mark.parametrize("name", ["rq_vae", "coba_rqvae", "letter", "mpq"])
def test_history_has_one_record_per_epoch(name, fitted, items, collab):
    report = tiny_tokenizer(name, epochs=2).fit(items, collab=collab)
    assert [record["epoch"] for record in report.history] == [0, 1]
    assert all(np.isfinite(record["loss"]) for record in report.history)
    assert {"recon", "codebook", "commit", "dead_codes_reset"} <= set(report.history[0])
