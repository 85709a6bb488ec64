"""LADQ (REG4Rec §3.4.4): a per-layer precision controller that re-decides during training.

Every `every` steps the controller looks at each `nn.Linear` of the model and picks the numeric
format its matmul runs in, among those the device has: fp32 always; bf16 where autocast has bf16
kernels (CUDA; on CPU too, where it is often slower than fp32 without AMX, and then the measured
times keep fp32); fp8 (e4m3, per-tensor scales, `torch._scaled_mm`) only on CUDA GPUs of compute
capability 8.9 or newer. It weighs two things, as the paper says, and measures both:

    sensitivity  Ω_l(p) = ½ · Tr(H_l) / n_l · ‖Q_p(W_l) − W_l‖²
    time         t_l(p) = the layer's forward at its last input shape in format p, timed

Ω is HAWQ-V2's [7] second-order estimate of the loss increase when layer l's n_l weights are rounded
to p: the Hessian trace per parameter, from Hutchinson's estimator Tr(H) ≈ E_v[vᵀHv] (Rademacher v,
one Hessian-vector product gives every layer's trace at once: cross terms vanish in expectation),
times the squared rounding error. The paper gives neither the estimator's samples nor the rule that
turns (Ω, t) into a choice; ours: start from fp32 everywhere and take, greedily, the move (layer,
lower format) with the most time saved per unit of Ω added, while the summed Ω stays within
`loss_budget` (an absolute loss increase, default 1e-3 nats) and the move saves time at all.

The chosen format is applied by patching the layer's `forward` (`apply_precisions`); fp32 restores
the module's own. Only matmuls change: parameters, optimizer state and gradients stay fp32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

PRECISIONS = ("fp32", "bf16", "fp8")
FP8_MAX = 448.0  # largest finite float8_e4m3fn


@dataclass
class LadqConfig:
    every: int = 50  # optimizer steps between decisions
    hutchinson_samples: int = 2  # Rademacher probes per decision
    loss_budget: float = 1e-3  # summed Ω (estimated loss increase, nats) the low formats may cost
    timing_repeats: int = 3  # best of this many timed forwards per (layer, format)


@dataclass
class LayerReport:
    name: str
    precision: str
    trace_per_param: float
    sensitivity: dict[str, float] = field(default_factory=dict)  # Ω per format
    seconds: dict[str, float] = field(default_factory=dict)  # t per format


def available_precisions(device: torch.device) -> tuple[str, ...]:
    found = ["fp32"]
    if device.type == "cuda" and torch.cuda.is_bf16_supported() or device.type == "cpu":
        found.append("bf16")
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9) and hasattr(torch, "_scaled_mm"):
        found.append("fp8")
    return tuple(found)


def round_trip(weight: Tensor, precision: str) -> Tensor:
    """`weight` rounded to `precision` and back to fp32 (fp8: per-tensor scale to e4m3's range)."""
    if precision == "fp32":
        return weight
    if precision == "bf16":
        return weight.to(torch.bfloat16).float()
    scale = weight.abs().max().clamp(min=1e-12) / FP8_MAX
    return (weight / scale).to(torch.float8_e4m3fn).float() * scale


def hutchinson_traces(loss: Tensor, layers: dict[str, nn.Linear], samples: int,
                      generator: torch.Generator | None = None) -> dict[str, float]:
    """Tr(H_l) / n_l for each layer's weight: the mean of vᵀHv over `samples` Rademacher probes."""
    weights = [layer.weight for layer in layers.values()]
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    totals = [0.0] * len(weights)
    for sample in range(samples):
        probes = [(torch.randint(0, 2, w.shape, generator=generator, device="cpu") * 2 - 1).to(w) for w in weights]
        hvps = torch.autograd.grad(grads, weights, grad_outputs=probes, retain_graph=sample < samples - 1)
        for index, (probe, hvp) in enumerate(zip(probes, hvps, strict=True)):
            totals[index] += float((probe * hvp).sum()) / samples
    return {name: total / w.numel() for name, total, w in zip(layers, totals, weights, strict=True)}


def choose_precisions(sensitivity: dict[str, dict[str, float]], seconds: dict[str, dict[str, float]],
                      loss_budget: float) -> dict[str, str]:
    """The greedy rule of the module docstring: cheapest time for summed Ω within `loss_budget`."""
    chosen = {name: "fp32" for name in sensitivity}
    spent = 0.0
    while True:
        best, best_rate = None, 0.0
        for name, current in chosen.items():
            for precision in sensitivity[name]:
                saved = seconds[name][current] - seconds[name][precision]
                added = sensitivity[name][precision] - sensitivity[name][current]
                if saved <= 0 or spent + added > loss_budget:
                    continue
                rate = saved / max(added, 1e-30)
                if rate > best_rate:
                    best, best_rate = (name, precision, added), rate
        if best is None:
            return chosen
        name, precision, added = best
        chosen[name], spent = precision, spent + added


def linear_in(precision: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`F.linear` computed in `precision`, the result in x's dtype."""
    if precision == "fp32":
        return F.linear(x, weight, bias)
    if precision == "bf16":
        return F.linear(x.to(torch.bfloat16), weight.to(torch.bfloat16),
                        None if bias is None else bias.to(torch.bfloat16)).to(x.dtype)
    return _Fp8Linear.apply(x, weight, bias)


class _Fp8Linear(torch.autograd.Function):
    """fp8 forward (per-tensor scaled e4m3 operands, bf16 output); backward in bf16 from the saved inputs."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        flat = x.reshape(-1, x.shape[-1])
        x_scale = flat.abs().max().float().clamp(min=1e-12) / FP8_MAX
        w_scale = weight.abs().max().float().clamp(min=1e-12) / FP8_MAX
        x8 = (flat / x_scale).to(torch.float8_e4m3fn)
        w8 = (weight / w_scale).to(torch.float8_e4m3fn)
        out = torch._scaled_mm(x8, w8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=torch.bfloat16)
        if bias is not None:
            out = out + bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], weight.shape[0]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        g = grad.to(torch.bfloat16)
        grad_x = (g @ weight.to(torch.bfloat16)).to(x.dtype)
        grad_w = (g.reshape(-1, g.shape[-1]).t() @ x.reshape(-1, x.shape[-1]).to(torch.bfloat16)).to(weight.dtype)
        grad_b = g.reshape(-1, g.shape[-1]).sum(0).to(weight.dtype) if ctx.has_bias else None
        return grad_x, grad_w, grad_b


def apply_precisions(layers: dict[str, nn.Linear], chosen: dict[str, str]) -> None:
    for name, layer in layers.items():
        precision = chosen.get(name, "fp32")
        if precision == "fp32":
            layer.__dict__.pop("forward", None)  # back to nn.Linear.forward
        else:
            layer.forward = _PrecisionForward(layer, precision)


class _PrecisionForward:
    def __init__(self, layer: nn.Linear, precision: str):
        self.layer, self.precision = layer, precision

    def __call__(self, x: Tensor) -> Tensor:
        return linear_in(self.precision, x, self.layer.weight, self.layer.bias)


class LadqController:
    """Re-decides every `config.every` steps (`maybe_update`); `precisions` is the current choice."""

    def __init__(self, model: nn.Module, config: LadqConfig, device: torch.device, seed: int = 0):
        self.config, self.device = config, device
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        self.formats = available_precisions(device)
        self.precisions = {name: "fp32" for name in self.layers}
        self.generator = torch.Generator().manual_seed(seed)
        self.reports: list[list[LayerReport]] = []
        self._shapes: dict[str, torch.Size] = {}
        for name, layer in self.layers.items():
            layer.register_forward_pre_hook(self._recorder(name))

    def _recorder(self, name: str):
        def record(module, args):
            self._shapes[name] = args[0].shape
        return record

    def maybe_update(self, step: int, loss_fn, force: bool = False) -> bool:
        """At every `every`-th step (or when `force`d: a resumed run): traces from `loss_fn()` (a fresh
        differentiable loss), times, choice."""
        if step % self.config.every and not force:
            return False
        apply_precisions(self.layers, {})  # measure the fp32 model
        # Hessian-vector products differentiate the backward pass: fused attention kernels have no
        # double backward, the plain (math) one has
        with sdpa_kernel(SDPBackend.MATH):
            traces = hutchinson_traces(loss_fn(), self.layers, self.config.hutchinson_samples, self.generator)
        sensitivity, seconds = {}, {}
        for name, layer in self.layers.items():
            weight = layer.weight.detach()
            sensitivity[name] = {p: 0.5 * max(traces[name], 0.0) * float(((round_trip(weight, p) - weight) ** 2).sum())
                                 for p in self.formats}
            seconds[name] = {p: self._time(layer, name, p) for p in self.formats}
        self.precisions = choose_precisions(sensitivity, seconds, self.config.loss_budget)
        apply_precisions(self.layers, self.precisions)
        self.reports.append([LayerReport(name, self.precisions[name], traces[name], sensitivity[name], seconds[name])
                             for name in self.layers])
        return True

    @torch.no_grad()
    def _time(self, layer: nn.Linear, name: str, precision: str) -> float:
        shape = self._shapes.get(name)
        if shape is None:  # never ran: nothing to save
            return 0.0
        x = torch.randn(shape, device=self.device)
        best = float("inf")
        for _ in range(self.config.timing_repeats + 1):  # the first call warms up kernels
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            started = time.perf_counter()
            linear_in(precision, x, layer.weight, layer.bias)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            best = min(best, time.perf_counter() - started)
        return best

    def summary(self) -> dict[str, int]:
        """How many layers run in each format now."""
        return {p: sum(v == p for v in self.precisions.values()) for p in self.formats}
