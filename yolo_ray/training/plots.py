"""results.png: the per-epoch losses and metrics of one run, drawn once training has ended."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; runs on headless nodes and inside Ray workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from yolo_ray.config import UserError  # noqa: E402

# Upstream's panel layout: train losses and P/R on top, val losses and mAPs below.
RESULTS_PANELS = (
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
)


def smooth(y: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Gaussian smoothing with edge values repeated, so the trend line spans every epoch."""
    radius = int(4 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(y, radius, mode="edge"), kernel, mode="valid")


def plot_results(results_csv: str | Path) -> Path:
    """Draw results.png beside results.csv (2x5 panels, values and a smoothed trend per epoch)."""
    results_csv = Path(results_csv)
    data = pd.read_csv(results_csv, skipinitialspace=True)
    data.columns = [c.strip() for c in data.columns]  # upstream pads names to a fixed width
    missing = [c for c in ("epoch", *RESULTS_PANELS) if c not in data.columns]
    if missing:
        raise UserError(f"{results_csv}: missing columns {', '.join(missing)}")
    epochs = data["epoch"].to_numpy()
    fig, axes = plt.subplots(2, 5, figsize=(12, 6), tight_layout=True)
    for ax, column in zip(axes.ravel(), RESULTS_PANELS):
        values = data[column].to_numpy(dtype=float)
        ax.plot(epochs, values, marker=".", linewidth=2, markersize=8, label="results")
        if len(values) > 1:
            ax.plot(epochs, smooth(values), ":", linewidth=2, label="smooth")
        ax.set_title(column, fontsize=12)
    axes[0, 0].legend()
    out = results_csv.with_name("results.png")
    fig.savefig(out, dpi=200)
    plt.close(fig)
    return out
