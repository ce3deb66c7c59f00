"""Label and batch plots a user checks before trusting a run: labels.jpg and train_batch*.jpg.

Off the hot path (called once per run). Matplotlib is used through the object API with the Agg
canvas, never pyplot, so plotting from a Ray worker or a thread touches no global figure state.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from yolo_ray.boxes import xywh2xyxy

_PALETTE_NAMES = (
    "tab:red",
    "tab:blue",
    "tab:green",
    "tab:orange",
    "tab:purple",
    "tab:cyan",
    "tab:pink",
    "tab:olive",
    "tab:brown",
    "gold",
    "navy",
    "lime",
    "magenta",
    "teal",
    "coral",
    "slateblue",
)
_PALETTE_RGB = tuple(tuple(int(round(c * 255)) for c in to_rgb(name)) for name in _PALETTE_NAMES)
MAX_MOSAIC_IMAGES = 16
PRED_CONF_THRESHOLD = 0.25  # predictions below this are too noisy to read on a batch mosaic


def class_color(cls: int) -> tuple[int, int, int]:
    """A fixed RGB colour per class id, the same in every plot."""
    return _PALETTE_RGB[int(cls) % len(_PALETTE_RGB)]


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _save_figure(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=fig.dpi, pil_kwargs={"quality": 90})
    return path


def plot_labels(labels: np.ndarray, names: dict[int, str] | list[str], save_dir: str | Path) -> Path:
    """Write save_dir/labels.jpg: instances per class, box shapes, centre and size distributions.

    labels: (n, 5) rows [cls, xc, yc, w, h], normalised.
    """
    labels = _to_numpy(labels).reshape(-1, 5)
    names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names)
    nc = max(len(names), int(labels[:, 0].max()) + 1 if len(labels) else 0)
    cls = labels[:, 0].astype(int)
    x, y, w, h = labels[:, 1], labels[:, 2], labels[:, 3], labels[:, 4]

    fig = Figure(figsize=(8, 8), dpi=100, tight_layout=True)
    ax = fig.subplots(2, 2).ravel()
    counts = np.bincount(cls, minlength=nc)
    ax[0].bar(range(nc), counts, color=[np.array(class_color(i)) / 255 for i in range(nc)])
    ax[0].set_ylabel("instances")
    if nc <= 30:
        ax[0].set_xticks(range(nc), [names.get(i, str(i)) for i in range(nc)], rotation=90, fontsize=8)
    else:
        ax[0].set_xlabel("classes")

    # Every box drawn centred on one canvas shows the spread of shapes and sizes at a glance.
    canvas = np.full((500, 500, 3), 255, np.uint8)
    for c, bw, bh in zip(cls[:1000], w[:1000], h[:1000]):
        x1, y1 = int((0.5 - bw / 2) * 500), int((0.5 - bh / 2) * 500)
        x2, y2 = int((0.5 + bw / 2) * 500), int((0.5 + bh / 2) * 500)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), class_color(c), 1)
    ax[1].imshow(canvas)
    ax[1].axis("off")

    bins = 50
    ax[2].hist2d(x, y, bins=bins, range=[[0, 1], [0, 1]], cmap="Blues")
    ax[2].set_xlabel("x")
    ax[2].set_ylabel("y")
    ax[2].invert_yaxis()  # image coordinates: y grows downwards
    ax[3].hist2d(w, h, bins=bins, range=[[0, 1], [0, 1]], cmap="Blues")
    ax[3].set_xlabel("width")
    ax[3].set_ylabel("height")
    for a in ax[2:]:
        a.set_aspect("equal")

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    return _save_figure(fig, save_dir / "labels.jpg")


def draw_box_label(
    tile: np.ndarray, xyxy: np.ndarray, text: str, color: tuple[int, int, int], thickness: int, font_scale: float
) -> None:
    """One box with its label on a white-on-colour tag, drawn in place (colour in the image's channel order)."""
    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    cv2.rectangle(tile, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    if not text:
        return
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    # Above the box when there is room, else just inside its top edge.
    ty = y1 - 2 if y1 - th - baseline - 2 >= 0 else y1 + th + 2
    cv2.rectangle(tile, (x1, ty - th - 2), (x1 + tw + 2, ty + baseline - 2), color, -1)
    cv2.putText(tile, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)


def plot_images(
    images,
    targets,
    paths=None,
    fname: str | Path = "images.jpg",
    names: dict[int, str] | list[str] | None = None,
    max_size: int = 1920,
) -> Path:
    """Write a grid of up to 16 batch images with their boxes and class names (train_batch0.jpg style).

    images: uint8 (B, 3, H, W) RGB (floats in [0, 1] are scaled). targets: (n, 6) rows
    [img_idx, cls, xc, yc, w, h] normalised, or (n, 7) with a trailing confidence for predictions
    (only those above 0.25 are drawn, labelled with their confidence).
    """
    images = _to_numpy(images)
    if len(images) == 0:
        raise ValueError("plot_images needs at least one image")
    targets = _to_numpy(targets)
    if targets.size == 0:
        targets = np.zeros((0, 6))
    if images.dtype != np.uint8:
        images = images * 255 if images.max() <= 1.0 else images
        images = np.clip(images, 0, 255).astype(np.uint8)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    bs = min(len(images), MAX_MOSAIC_IMAGES)
    _, _, h, w = images.shape
    ns = math.ceil(math.sqrt(bs))
    # Small training images are enlarged (up to 2x) so box labels stay legible.
    scale = min(max_size / (ns * max(h, w)), 2.0)
    th, tw = math.ceil(h * scale), math.ceil(w * scale)
    mosaic = np.full((ns * th, ns * tw, 3), 255, np.uint8)
    thickness = max(2, round(ns * max(th, tw) / 600))
    font_scale = max(0.35, 0.4 * scale * min(h, w) / 320)

    for i in range(bs):
        tile = np.ascontiguousarray(images[i].transpose(1, 2, 0))
        if scale != 1:
            tile = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
        rows = targets[targets[:, 0] == i]
        boxes = xywh2xyxy(rows[:, 2:6].astype(np.float64)) * [tw, th, tw, th]
        for row, box in zip(rows, boxes):
            cls = int(row[1])
            has_conf = len(row) > 6
            if has_conf and row[6] < PRED_CONF_THRESHOLD:
                continue
            text = names.get(cls, str(cls)) if names else str(cls)
            if has_conf:
                text = f"{text} {row[6]:.1f}"
            draw_box_label(tile, box, text, class_color(cls), thickness, font_scale)
        if paths is not None and i < len(paths):
            cv2.putText(
                tile,
                Path(paths[i]).name[:40],
                (3, th - 4),
                cv2.FONT_HERSHEY_SIMPLEX,
                font_scale,
                (220, 220, 220),
                1,
                cv2.LINE_AA,
            )
        gy, gx = divmod(i, ns)
        mosaic[gy * th : (gy + 1) * th, gx * tw : (gx + 1) * tw] = tile
        cv2.rectangle(mosaic, (gx * tw, gy * th), ((gx + 1) * tw - 1, (gy + 1) * th - 1), (255, 255, 255), 2)

    fname = Path(fname)
    fname.parent.mkdir(parents=True, exist_ok=True)
    rows_used = math.ceil(bs / ns)
    cv2.imwrite(str(fname), cv2.cvtColor(mosaic[: rows_used * th], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return fname
