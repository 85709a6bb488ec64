"""LETTER: collab checks, InfoNCE and the diversity term."""

from __future__ import annotations

import math

import pytest
import torch

from genrec_ml.errors import GenrecDataError
from genrec_ml.tokenizers.letter import diversity_loss, diversity_loss_reference, info_nce
from tests.tokenizers.tiny import tiny_tokenizer


def test_missing_collab_names_the_argument(items):
    with pytest.raises(GenrecDataError, match="collab") as info:
        tiny_tokenizer("letter").fit(items)
    assert info.value.field == "collab"


def test_collab_with_other_rows_names_the_argument(items, collab):
    with pytest.raises(GenrecDataError, match="rows") as info:
        tiny_tokenizer("letter").fit(items, collab=collab[:-1])
    assert info.value.field == "collab"


def test_nan_collab_names_the_row(items, collab):
    bad = collab.copy()
    bad[5, 0] = float("nan")
    with pytest.raises(GenrecDataError, match="row 5"):
        tiny_tokenizer("letter").fit(items, collab=bad)


def test_info_nce_prefers_matched_pairs():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(16, 8, generator=generator)
    matched = info_nce(q, q, temperature=0.1)
    shuffled = info_nce(q, q[torch.randperm(16, generator=generator)], temperature=0.1)
    assert matched < 0.5 < shuffled


def test_diversity_matches_reference():
    distances = [[0.1, 2.0, 3.0], [0.2, 2.5, 1.0], [0.3, 0.1, 4.0], [1.0, 1.0, 0.5]]
    loss = diversity_loss(torch.tensor(distances), temperature=0.5)
    assert float(loss) == pytest.approx(diversity_loss_reference(distances, 0.5), rel=1e-5)


def test_diversity_rewards_confident_balanced_use_only():
    balanced = 5.0 * (1 - torch.eye(4)).repeat(2, 1)  # 8 items, each sure of its code, every code used twice
    crowded = torch.tensor([[0.0, 5.0, 5.0, 5.0]] * 8)  # everyone nearest code 0
    undecided = torch.ones(8, 4)  # equally far from every code: the collapse the KL alone cannot see
    assert float(diversity_loss(balanced, 0.1)) == pytest.approx(0.0, abs=1e-4)
    assert float(diversity_loss(crowded, 0.1)) > 1.0
    assert float(diversity_loss(undecided, 0.1)) == pytest.approx(math.log(4), rel=1e-5)


def test_history_logs_collab_and_diversity(items, collab):
    report = tiny_tokenizer("letter", epochs=2).fit(items, collab=collab)
    assert report.history[-1]["collab"] > 0
    assert "diversity" in report.history[-1]
