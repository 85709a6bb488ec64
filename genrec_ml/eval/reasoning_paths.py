"""Plots of REG4Rec's reasoning: PARS reward curves and which codebook CRSS fills at each step."""

from __future__ import annotations

import numpy as np

REWARDS = ("step", "category", "consistency", "path", "total")


def plot_rewards(history: list[dict[str, float]], title: str = "PARS rewards"):
    """Mean reward per component over PARS steps (MSRA-averaged where MSRA applies)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    steps = [record["step"] for record in history]
    for name in REWARDS:
        ax.plot(steps, [record[f"reward_{name}"] for record in history], label=name, lw=1.8 if name == "total" else 1)
    ax.set(xlabel="PARS step", ylabel="mean reward per path", title=title)
    ax.legend(fontsize=7, ncol=3)
    return fig


def plot_step_orders(counts: np.ndarray, title: str = "CRSS: codebook filled at each step"):
    """`counts (L, L)`: top-1 paths that filled position p (column) at step j (row), as shares per step."""
    from matplotlib.figure import Figure

    counts = np.asarray(counts, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(4.2, 3.4), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, vmin=0, vmax=1, cmap="viridis")
    labels = [str(p) for p in range(len(counts) - 1)] + ["dis."]
    ax.set_xticks(range(len(counts)), labels, fontsize=7)
    ax.set_yticks(range(len(counts)), range(len(counts)), fontsize=7)
    ax.set(xlabel="codebook", ylabel="step", title=title)
    fig.colorbar(image, ax=ax, label="share of users")
    return fig
