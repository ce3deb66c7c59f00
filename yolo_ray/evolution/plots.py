"""evolve.png: each hyperparameter against fitness over all generations so far, the best one marked.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state), so the evolution driver can
refresh it from any thread after each result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from yolo_ray.config import replacing
from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS, best_row, read_history
from yolo_ray.scores import fitness

PANELS_PER_ROW = 5
DENSITY_BINS = 20


def point_density(x: np.ndarray, y: np.ndarray, bins: int = DENSITY_BINS) -> np.ndarray:
    """log(1 + count) of each point's cell in a bins x bins histogram: crowded regions stand out."""
    counts, x_edges, y_edges = np.histogram2d(x, y, bins=bins)
    ix = np.clip(np.digitize(x, x_edges) - 1, 0, counts.shape[0] - 1)
    iy = np.clip(np.digitize(y, y_edges) - 1, 0, counts.shape[1] - 1)
    return np.log1p(counts[ix, iy])


def plot_evolve(
    csv_path: str | Path, keys: Sequence[str] | None = None, dpi: int = 200, history: pd.DataFrame | None = None
) -> Path:
    """Write evolve.png beside the CSV (atomically replaced) with one panel per hyp column, or per key
    in `keys` (e.g. only the evolved ones); titles give the best generation's value. history: the
    CSV's rows when the caller holds them already (the CSV is not read then)."""
    csv_path = Path(csv_path)
    history = read_history(csv_path) if history is None else history
    if history.empty:
        raise ValueError(f"{csv_path}: no rows to plot")
    fig = evolve_figure(history, keys, dpi)
    png = csv_path.with_suffix(".png")
    FigureCanvasAgg(fig)
    with replacing(png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return png


def evolve_figure(history: pd.DataFrame, keys: Sequence[str] | None = None, dpi: int = 200) -> Figure:
    """The evolve.png figure of a non-empty evolve.csv history."""
    keys = [k for k in history.columns[len(EVOLVE_RESULT_KEYS) :] if keys is None or k in keys]
    scores = np.asarray(fitness(history[list(EVOLVE_RESULT_KEYS)].to_numpy(dtype=float)), dtype=float)
    best = best_row(history)
    finite = np.isfinite(scores)

    n_rows = max(1, math.ceil(len(keys) / PANELS_PER_ROW))
    height = 2 * n_rows
    fig = Figure(figsize=(10, height), dpi=dpi)
    # fixed margins (in inches at the top and bottom): the tight layout engine took 60% of the drawing time
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.35 / height, top=1 - 0.3 / height, wspace=0.35, hspace=0.6)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(n_rows, PANELS_PER_ROW, i + 1)
        values = history[key].to_numpy(dtype=float)
        shown = finite & np.isfinite(values)
        if shown.any():
            ax.scatter(
                values[shown],
                scores[shown],
                c=point_density(values[shown], scores[shown]),
                cmap="viridis",
                alpha=0.8,
                edgecolors="none",
                s=12,
            )
        ax.plot(best.hyp[key], best.fitness, "k+", markersize=15)
        ax.set_title(f"{key} = {best.hyp[key]:.3g}", fontsize=9)
        ax.tick_params(labelsize=7)
        # at most 4 short x labels a panel: small values (weight_decay 0.0005) share one exponent instead of
        # spelling out 0.00048 0.00050 0.00052 side by side, which overlap in a 2-inch panel
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3), useOffset=False)
        if i % PANELS_PER_ROW == 0:
            ax.set_ylabel("fitness", fontsize=8)
    return fig
