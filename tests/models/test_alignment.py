"""LASAR's alignment losses against hand values and a per-sample reference loop."""

import math

import pytest
import torch

from genrec_ml.models.alignment import (
    alignment_distance,
    bidirectional_kl,
    stepwise_alignment,
    terminal_alignment,
)

LN3 = math.log(3.0)
# softmax [0, 0] = (.5, .5), softmax [ln 3, 0] = (.75, .25):
# KL(p||q) = .5 ln(4/3) = .143841, KL(q||p) = .75 ln 1.5 + .25 ln .5 = .130812
BIKL = 0.5 * (0.5 * math.log(4 / 3) + 0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_bidirectional_kl_by_hand():
    a, b = torch.tensor([0.0, 0.0]), torch.tensor([LN3, 0.0])
    assert bidirectional_kl(a, b).item() == pytest.approx(BIKL, abs=1e-6)
    assert bidirectional_kl(b, a).item() == pytest.approx(BIKL, abs=1e-6)  # symmetric
    assert bidirectional_kl(a + 5.0, a).item() == pytest.approx(0.0, abs=1e-6)  # softmax ignores a shift
    assert alignment_distance(a, b, "cosine").item() == pytest.approx(1.0)  # a is zero: cos taken as 0
    assert alignment_distance(a, b, "mse").item() == pytest.approx(LN3 ** 2 / 2)
    with pytest.raises(ValueError, match="alignment kind"):
        alignment_distance(a, b, "l1")


def _batch():
    zero, peak = [0.0, 0.0], [LN3, 0.0]
    latent = torch.tensor([[zero, peak], [zero, peak], [zero, [9.0, -9.0]]])  # sample 2: step 2 is padding
    anchors = torch.tensor([[peak, peak, zero], [peak, zero, zero], [zero, peak, zero]])
    return latent, anchors, torch.tensor([2, 2, 1]), torch.tensor([3, 1, 2])


def test_stepwise_alignment_by_hand():
    latent, anchors, n_steps, n_segments = _batch()
    # sample 0: (BIKL + 0) / 2; sample 1 has N = 2 > S = 1: left out; sample 2: its one step, 0
    expected = (BIKL / 2 + 0.0) / 2
    assert stepwise_alignment(latent, anchors, n_steps, n_segments).item() == pytest.approx(expected, abs=1e-6)
    # nothing qualifies: zero, not NaN
    assert stepwise_alignment(latent, anchors, n_steps, torch.tensor([1, 1, 0])).item() == 0.0


def test_terminal_alignment_by_hand():
    latent, anchors, n_steps, n_segments = _batch()
    # h_N against the last segment: peak vs zero, peak vs peak, zero vs peak
    expected = (BIKL + 0.0 + BIKL) / 3
    assert terminal_alignment(latent, anchors, n_steps, n_segments).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kind", ["bikl", "cosine", "mse"])
def test_stepwise_alignment_equals_a_loop_over_samples(kind):
    torch.manual_seed(0)
    latent, anchors = torch.randn(6, 5, 8, requires_grad=True), torch.randn(6, 4, 8)
    n_steps, n_segments = torch.tensor([1, 5, 3, 4, 2, 4]), torch.tensor([4, 4, 3, 2, 4, 4])
    loss = stepwise_alignment(latent, anchors, n_steps, n_segments, kind)
    kept = [sum(alignment_distance(latent[b, t], anchors[b, t], kind) for t in range(n)) / n
            for b, (n, s) in enumerate(zip(n_steps.tolist(), n_segments.tolist(), strict=True)) if n <= s]
    reference = sum(kept) / len(kept)
    assert loss.item() == pytest.approx(reference.item(), abs=1e-5)
    (grad,) = torch.autograd.grad(loss, latent)
    assert grad[1].abs().sum() == 0 and grad[3].abs().sum() == 0  # N > S: no gradient
    assert grad[0, 1:].abs().sum() == 0 and grad[0, 0].abs().sum() > 0  # beyond a sample's N: none
