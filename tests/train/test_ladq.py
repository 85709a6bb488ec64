"""LADQ: Hutchinson traces against the exact Hessian, rounding errors, the greedy rule by hand, patching."""

import pytest
import torch
from torch import nn

from genrec_ml.train.ladq import (
    LadqConfig,
    LadqController,
    apply_precisions,
    choose_precisions,
    hutchinson_traces,
    round_trip,
)


def test_hutchinson_trace_equals_the_exact_trace_of_a_quadratic():
    # loss = ½ Σ_i ‖W x_i‖²: the Hessian in vec(W) is I_out ⊗ XᵀX; with orthogonal x_i it is diagonal,
    # so one Rademacher probe gives the exact trace: d_out · Σ_i ‖x_i‖²
    layer = nn.Linear(3, 2, bias=False)
    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    loss = 0.5 * (layer(x) ** 2).sum()
    traces = hutchinson_traces(loss, {"w": layer}, samples=1, generator=torch.Generator().manual_seed(0))
    assert traces["w"] == pytest.approx(2 * (4.0 + 1.0) / 6)  # per parameter: Tr / n, n = 6


def test_rounding_errors_grow_from_bf16_to_fp8():
    weight = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    errors = {p: float(((round_trip(weight, p) - weight) ** 2).sum()) for p in ("fp32", "bf16", "fp8")}
    assert errors["fp32"] == 0 < errors["bf16"] < errors["fp8"]


def test_greedy_choice_by_hand():
    sensitivity = {"a": {"fp32": 0.0, "bf16": 1e-4, "fp8": 5e-4}, "b": {"fp32": 0.0, "bf16": 7e-4, "fp8": 2e-3}}
    seconds = {"a": {"fp32": 4.0, "bf16": 2.0, "fp8": 1.0}, "b": {"fp32": 4.0, "bf16": 2.0, "fp8": 1.0}}
    # moves (time saved / Ω added): a->bf16 2 s / 1e-4, a->fp8 3 s / 5e-4, b->bf16 2 s / 7e-4; b->fp8 is over
    # the budget. Take a->bf16 (Ω 1e-4); then b->bf16 (2 s / 7e-4 = 2857) beats a bf16->fp8 (1 s / 4e-4 =
    # 2500): Ω 8e-4; a->fp8 would now cost 1.2e-3 > 1e-3, so the choice stops at 4 s saved.
    assert choose_precisions(sensitivity, seconds, loss_budget=1e-3) == {"a": "bf16", "b": "bf16"}
    assert choose_precisions(sensitivity, seconds, loss_budget=0.0) == {"a": "fp32", "b": "fp32"}
    slower = {"a": {"fp32": 1.0, "bf16": 2.0, "fp8": 3.0}, "b": {"fp32": 1.0, "bf16": 2.0, "fp8": 3.0}}
    assert choose_precisions(sensitivity, slower, loss_budget=1.0) == {"a": "fp32", "b": "fp32"}


def test_patched_layers_compute_in_bf16_and_restore_exactly():
    torch.manual_seed(0)
    layer = nn.Linear(8, 4)
    x = torch.randn(5, 8)
    exact = layer(x)
    apply_precisions({"l": layer}, {"l": "bf16"})
    low = layer(x)
    assert low.dtype == torch.float32 and not torch.equal(low, exact) and torch.allclose(low, exact, atol=5e-2)
    apply_precisions({"l": layer}, {})
    assert torch.equal(layer(x), exact)


def test_controller_decides_among_the_formats_this_device_has():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    x, y = torch.randn(64, 16), torch.randn(64, 1)

    def loss_fn():
        return ((model(x) - y) ** 2).mean()

    controller = LadqController(model, LadqConfig(every=5, loss_budget=0.0), torch.device("cpu"))
    loss_fn()  # the layers see their input shapes
    assert not controller.maybe_update(3, loss_fn) and controller.maybe_update(5, loss_fn)
    assert controller.precisions == {"0": "fp32", "2": "fp32"}  # a zero budget keeps fp32
    report = controller.reports[-1]
    assert {r.name for r in report} == {"0", "2"} and all(r.trace_per_param >= 0 for r in report)
    assert set(report[0].seconds) == {"fp32", "bf16"}  # no fp8 matmul on a CPU
    assert controller.summary() == {"fp32": 2, "bf16": 0}
