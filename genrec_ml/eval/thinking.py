"""Where S²GR's thinking tokens point: the coarse cluster of t_l against the true code's cluster.

For each quantiser level l, `thinking_clusters` (on the model) gives the coarse cluster each
thinking token is closest to and the cluster of the ground-truth code s_l. Agreement far above
chance (1/C) means the latent steps carry the coarse semantics the alignment loss asks for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genrec_ml.errors import GenrecDataError


def thinking_agreement(predicted, true, n_clusters: int) -> pd.DataFrame:
    """Per level: agreement = share of users whose thinking token points at the true cluster.

    `predicted, true: (U, L_c)` cluster ids. Columns: level, users, agreement, chance (1/C),
    predicted_clusters_used (distinct clusters the thinking tokens point at).
    """
    predicted, true = np.asarray(predicted), np.asarray(true)
    if predicted.shape != true.shape or predicted.ndim != 2 or predicted.shape[0] == 0:
        raise GenrecDataError(f"predicted {predicted.shape} and true {true.shape} must be the same (U>0, L_c) shape",
                              field="thinking_clusters")
    return pd.DataFrame({
        "level": np.arange(predicted.shape[1]),
        "users": predicted.shape[0],
        "agreement": (predicted == true).mean(axis=0),
        "chance": 1.0 / n_clusters,
        "predicted_clusters_used": [len(np.unique(predicted[:, level])) for level in range(predicted.shape[1])],
    })


def plot_thinking(predicted, true, n_clusters: int) -> Figure:
    """One confusion matrix per level (true cluster rows, thinking-token cluster columns), row-normalised."""
    predicted, true = np.asarray(predicted), np.asarray(true)
    levels = predicted.shape[1]
    fig = Figure(figsize=(3.2 * levels, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    for level, ax in enumerate(np.atleast_1d(fig.subplots(1, levels))):
        counts = np.zeros((n_clusters, n_clusters))
        np.add.at(counts, (true[:, level], predicted[:, level]), 1)
        rows = counts.sum(axis=1, keepdims=True)
        ax.imshow(np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0), vmin=0, vmax=1, cmap="viridis")
        agreement = float((predicted[:, level] == true[:, level]).mean())
        ax.set(title=f"level {level}: {agreement:.0%} agree", xlabel="thinking-token cluster", ylabel="true cluster")
    return fig
