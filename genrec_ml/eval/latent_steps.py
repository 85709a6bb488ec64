"""How deep LASAR reasons: each test user's latent step count N (the policy head's argmax, or Force N), its
mean and histogram (LASAR Table 3's Mean N, Figure 4b) and the hit rate per N (Figure 5b).

Rows go to `metrics` beside the ranking metrics, so SQL compares them across runs:
`latent_steps_mean` (k = -1), `latent_steps_share_n<N>` (k = -1: share of users with that N) and
`recall_n<N>` (k = 10: HR@10 of the users given that N; with one target per user HR@K = Recall@K).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genrec_ml.data.batching import length_sorted_batches
from genrec_ml.errors import GenrecDataError


def latent_step_counts(model, data, batch_size: int = 256) -> np.ndarray:
    """(E,) the N `model.predict_steps` gives each example of `data` (a dataset with `batch`), in order."""
    data.to(model.device)
    steps = torch.zeros(len(data), dtype=torch.long)
    for indices in length_sorted_batches(data.lengths, batch_size):
        steps[torch.as_tensor(indices)] = model.predict_steps(data.batch(indices)).cpu()
    return steps.numpy()


def latent_step_rows(steps: np.ndarray, ranks: np.ndarray, max_steps: int, k: int = 10) -> list[dict]:
    """Test metric rows from each user's N and target rank (1..K, 0 = not in the top K)."""
    steps, ranks = np.asarray(steps), np.asarray(ranks)
    if steps.shape != ranks.shape or steps.ndim != 1 or not len(steps):
        raise GenrecDataError(f"steps {steps.shape} and ranks {ranks.shape} must be one (E>0,) vector each",
                              field="latent_steps")
    hit = (ranks > 0) & (ranks <= k)
    rows = [{"split": "test", "metric": "latent_steps_mean", "k": -1, "value": float(steps.mean())}]
    for n in range(max_steps + 1):
        chosen = steps == n
        if chosen.any():
            rows.append({"split": "test", "metric": f"latent_steps_share_n{n}", "k": -1, "value": float(chosen.mean())})
            rows.append({"split": "test", "metric": f"recall_n{n}", "k": k, "value": float(hit[chosen].mean())})
    return rows


def plot_latent_steps(steps: np.ndarray, ranks: np.ndarray, max_steps: int, k: int = 10) -> Figure:
    """Histogram of N and HR@k per N, side by side."""
    steps, ranks = np.asarray(steps), np.asarray(ranks)
    values = np.arange(max_steps + 1)
    counts = np.array([(steps == n).sum() for n in values])
    hits = np.array([((ranks[steps == n] > 0) & (ranks[steps == n] <= k)).mean() if counts[n] else np.nan
                     for n in values])
    fig = Figure(figsize=(8, 3), layout="constrained")
    FigureCanvasAgg(fig)
    share_ax, hit_ax = fig.subplots(1, 2)
    share_ax.bar(values, counts / max(len(steps), 1))
    share_ax.set(xlabel="latent steps N", ylabel="share of test users", title=f"mean N = {steps.mean():.2f}")
    hit_ax.bar(values, hits)
    hit_ax.set(xlabel="latent steps N", ylabel=f"HR@{k}", title="hit rate per N")
    return fig


def plot_rl_dynamics(history: list[dict[str, float]]) -> Figure:
    """LASAR's RL phase (Figure 5a): mean reward per candidate and mean sampled N over the steps."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    FigureCanvasAgg(fig)
    reward_ax = fig.subplots()
    steps = [record["step"] for record in history]
    reward_ax.plot(steps, [record["reward"] for record in history], color="tab:blue", label="reward")
    reward_ax.set(xlabel="RL step", ylabel="mean reward per candidate")
    steps_ax = reward_ax.twinx()
    steps_ax.plot(steps, [record["mean_n"] for record in history], color="tab:orange", label="mean N")
    steps_ax.set_ylabel("mean sampled N")
    fig.legend(loc="upper right", fontsize=7)
    return fig
