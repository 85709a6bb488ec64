
"""Shared training pieces: code usage counts, dead-code reseeding, determinism, progress."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec_ml.tokenizers.vq import code_usage, gather_rows, mlp, reseed_dead_codes
from tests.tokenizers.tiny import clustered, tiny_tokenizer


def test_code_usage_counts_per_codebook():
    codes = torch.tensor([[0, 2], [0, 1], [3, 1]])  # (B=3, C=2)
    assert code_usage(codes, codebook_size=4).tolist() == [[2, 0, 0, 1], [0, 2, 1, 0]]


def test_dead_codes_move_onto_targets_and_live_ones_stay():
    codebooks = torch.zeros(1, 3, 2)
    codebooks[0, 0] = torch.tensor([5.0, 5.0])
    targets = [torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])]
    usage = torch.tensor([[4, 0, 0]])
    n_reset = reseed_dead_codes(codebooks, usage, targets, torch.Generator().manual_seed(0))
    assert n_reset == 2
    assert codebooks[0, 0].tolist() == [5.0, 5.0]
    reseeded = {tuple(row) for row in codebooks[0, 1:].tolist()}
    assert len(reseeded) == 2 and reseeded <= {tuple(row) for row in targets[0].tolist()}


def test_mlp_has_no_activation_after_the_last_layer():
    layers = list(mlp([4, 8, 2]))
    assert [type(layer).__name__ for layer in layers] == ["Linear", "ReLU", "Linear"]


def test_fit_is_reproducible_under_deterministic_algorithms(items, collab):
    # Any op without a deterministic kernel raises here; two fits must then agree bit for bit.
    torch.use_deterministic_algorithms(True)
    try:
        for name in ("rq_vae", "letter", "mpq"):
            first = tiny_tokenizer(name, epochs=1)
            first.fit(items, collab=collab)
            second = tiny_tokenizer(name, epochs=1)
            second.fit(items, collab=collab)
            np.testing.assert_array_equal(first.encode(items), second.encode(items))
    finally:
        torch.use_deterministic_algorithms(False)


def test_progress_bar_reports_epochs(items, capsys):
    tiny_tokenizer("rq_vae", epochs=2).fit(items, progress=True)
    assert "rq_vae epochs" in capsys.readouterr().err


def repeated_step_gradients(name: str, items, collab, repeats: int = 4) -> list[dict]:
    """Gradients of one training step on one fixed batch, computed `repeats` times."""
    tokenizer = tiny_tokenizer(name, codebook_size=64, latent_dim=32, batch_size=2048)
    x = torch.from_numpy(items)
    collab_t = tokenizer._prepare_collab(collab, len(items)) if name == "letter" else None
    torch.manual_seed(0)
    tokenizer.input_dim = x.shape[1]
    tokenizer.model = tokenizer._build_model(x.shape[1])
    tokenizer.model.init_codebooks(x, seed=0, n_iter=5)
    grads = []
    for _ in range(repeats):
        tokenizer.model.zero_grad()
        step = tokenizer._train_step(x, torch.arange(len(x)), collab_t)
        sum(step.terms.values()).backward()
        grads.append({n: p.grad.clone() for n, p in tokenizer.model.named_parameters()})
    return grads


@pytest.mark.parametrize("name", ["rq_vae", "coba_rqvae", "letter", "mpq"])
def test_step_gradients_are_bitwise_repeatable_on_two_threads(name):
    # Advanced-indexing backward sums in a thread-dependent order; this catches its return.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        items = clustered(n=2048, dim=32)
        collab = items[:, :8].copy()
        first, *rest = repeated_step_gradients(name, items, collab)
    finally:
        torch.set_num_threads(threads)
    for grads in rest:
        assert all(torch.equal(grads[n], first[n]) for n in first)


def test_gather_rows_matches_indexing():
    table = torch.randn(10, 3)
    index = torch.tensor([[1, 9], [0, 0]])
    assert torch.equal(gather_rows(table, index), table[index])
