"""val.py's plots, as upstream writes them: confusion_matrix.png, PR/F1/P/R curves, val_batch*_labels/pred.jpg.

Matplotlib's object API with the Agg canvas (no pyplot state), as in yolo_ray.data.plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from yolo_ray.boxes import xyxy2xywh
from yolo_ray.data.plots import plot_images
from yolo_ray.evaluation.evaluate import BatchOutput, Evaluation
from yolo_ray.metrics import ConfusionMatrix, smooth

PER_CLASS_LEGEND_MAX = 21  # more classes than this: per-class lines in grey, no legend entries
VAL_BATCH_PLOTS = 3


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=250)
    return path


def plot_pr_curve(px: np.ndarray, pr: np.ndarray, ap: np.ndarray, path: Path, names: list[str]) -> Path:
    """Precision over recall at IoU 0.5 per class, and the mean over classes with its mAP@0.5."""
    fig = Figure(figsize=(9, 6), tight_layout=True)
    ax = fig.subplots()
    labelled = 0 < len(names) < PER_CLASS_LEGEND_MAX
    for i, y in enumerate(pr):
        ax.plot(
            px,
            y,
            linewidth=1,
            label=f"{names[i]} {ap[i, 0]:.3f}" if labelled else None,
            color=None if labelled else "grey",
        )
    if len(pr):
        ax.plot(px, pr.mean(0), linewidth=3, color="blue", label=f"all classes {ap[:, 0].mean():.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1), title="Precision-Recall Curve")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    return _save(fig, path)


def plot_mc_curve(px: np.ndarray, py: np.ndarray, path: Path, names: list[str], ylabel: str) -> Path:
    """A metric over confidence per class, and the smoothed mean with its best value and confidence."""
    fig = Figure(figsize=(9, 6), tight_layout=True)
    ax = fig.subplots()
    labelled = 0 < len(names) < PER_CLASS_LEGEND_MAX
    for i, y in enumerate(py):
        ax.plot(px, y, linewidth=1, label=names[i] if labelled else None, color=None if labelled else "grey")
    if len(py):
        y = smooth(py.mean(0), 0.05)
        ax.plot(px, y, linewidth=3, color="blue", label=f"all classes {y.max():.2f} at {px[y.argmax()]:.3f}")
    ax.set(xlabel="Confidence", ylabel=ylabel, xlim=(0, 1), ylim=(0, 1), title=f"{ylabel}-Confidence Curve")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    return _save(fig, path)


def plot_confusion_matrix(matrix: ConfusionMatrix, names: dict[int, str], path: Path) -> Path:
    """Column-normalised (per true class) matrix with a background row and column."""
    array = matrix.matrix / (matrix.matrix.sum(0).reshape(1, -1) + 1e-9)
    array[array < 0.005] = np.nan  # blank cells read faster than a sea of zeros
    labels = [names.get(i, str(i)) for i in range(matrix.nc)] + ["background"]
    fig = Figure(figsize=(12, 9), tight_layout=True)
    ax = fig.subplots()
    image = ax.imshow(array, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax)
    if matrix.nc < 30:
        ax.set_xticks(range(len(labels)), labels, rotation=90)
        ax.set_yticks(range(len(labels)), labels)
        for (r, c), v in np.ndenumerate(array):
            if not np.isnan(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v > 0.5 else "black")
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion Matrix")
    return _save(fig, path)


def plot_evaluation(ev: Evaluation, names: dict[int, str], save_dir: Path) -> list[Path]:
    """The curves and the confusion matrix of one evaluation, into save_dir."""
    out = []
    if ev.ap is not None and ev.ap.curves is not None:
        curves = ev.ap.curves
        class_names = [names.get(int(c), str(c)) for c in ev.ap.classes]
        out.append(plot_pr_curve(curves.px, curves.pr, ev.ap.ap, save_dir / "PR_curve.png", class_names))
        for ylabel, values, stem in (("F1", curves.f1, "F1"), ("Precision", curves.p, "P"), ("Recall", curves.r, "R")):
            out.append(plot_mc_curve(curves.px, values, save_dir / f"{stem}_curve.png", class_names, ylabel))
    if ev.confusion is not None:
        out.append(plot_confusion_matrix(ev.confusion, names, save_dir / "confusion_matrix.png"))
    return out


def predictions_to_targets(preds: list[torch.Tensor], width: int, height: int) -> torch.Tensor:
    """Per-image (k, 6) xyxy pixel predictions -> (n, 7) [img, cls, xywh normalised, conf] for plot_images."""
    rows = []
    scale = torch.tensor((width, height, width, height))
    for i, pred in enumerate(preds):
        pred = pred.detach().float().cpu()
        xywh = xyxy2xywh(pred[:, :4]) / scale
        rows.append(torch.cat((torch.full((len(pred), 1), float(i)), pred[:, 5:6], xywh, pred[:, 4:5]), 1))
    return torch.cat(rows, 0) if rows else torch.zeros((0, 7))


def plot_val_batch(batch: BatchOutput, names: dict[int, str], save_dir: Path) -> None:
    """val_batch{i}_labels.jpg and val_batch{i}_pred.jpg for the first batches, as upstream."""
    if batch.index >= VAL_BATCH_PLOTS:
        return
    height, width = batch.imgs.shape[2:]
    plot_images(batch.imgs, batch.targets, batch.paths, save_dir / f"val_batch{batch.index}_labels.jpg", names)
    preds = predictions_to_targets(batch.preds, width, height)
    plot_images(batch.imgs, preds, batch.paths, save_dir / f"val_batch{batch.index}_pred.jpg", names)
