"""Files detect.py writes besides labels (evaluation.writers): crops and annotated images, and its summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from yolo_ray.boxes import clip_boxes, xywh2xyxy, xyxy2xywh
from yolo_ray.data.plots import class_color, draw_box_label

CROP_GAIN, CROP_PAD = 1.02, 10  # crops are a little larger than the box, as upstream's save_one_box


def crop_box(xyxy: torch.Tensor | list, im: np.ndarray, gain: float = CROP_GAIN, pad: int = CROP_PAD) -> np.ndarray:
    """The image region of one box, enlarged by gain and pad pixels, clipped to the image."""
    b = xyxy2xywh(torch.tensor([float(v) for v in xyxy], dtype=torch.float32).view(-1, 4))
    b[:, 2:] = b[:, 2:] * gain + pad
    box = xywh2xyxy(b).long()
    clip_boxes(box, im.shape[:2])
    x1, y1, x2, y2 = box[0].tolist()
    return im[y1:y2, x1:x2]


def unique_path(path: Path) -> Path:
    """path, or path with 2, 3, ... appended to its stem when it exists (crops of one class in one image)."""
    candidate, n = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}{n}{path.suffix}")
        n += 1
    return candidate


def save_crop(xyxy: torch.Tensor | list, im: np.ndarray, file: Path) -> Path:
    """The box's crop of im (BGR) as a JPEG (quality 95, no chroma subsampling, as upstream's save_one_box)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file = unique_path(file.with_suffix(".jpg"))
    Image.fromarray(np.ascontiguousarray(crop_box(xyxy, im)[..., ::-1])).save(file, quality=95, subsampling=0)
    return file


def draw_detections(
    im: np.ndarray,
    det: torch.Tensor,
    names: dict[int, str],
    line_width: int | None = None,
    hide_labels: bool = False,
    hide_conf: bool = False,
    bgr: bool = True,
) -> np.ndarray:
    """Draw boxes with 'name conf' tags on im (HWC uint8) in place; line width from the image size by default."""
    lw = line_width or max(round(sum(im.shape[:2]) / 2 * 0.003), 2)
    for *xyxy, conf, cls in reversed(det.detach().float().cpu().tolist()):
        c = int(cls)
        label = None if hide_labels else (names.get(c, str(c)) if hide_conf else f"{names.get(c, str(c))} {conf:.2f}")
        color = class_color(c)
        draw_box_label(im, np.array(xyxy), label or "", color[::-1] if bgr else color, lw, lw / 3)
    return im


def detection_summary(det: torch.Tensor, names: dict[int, str]) -> str:
    """'2 circles, 1 square' (upstream's per-image count text), '' without detections."""
    parts = []
    for c in det[:, 5].unique().tolist():
        n = int((det[:, 5] == c).sum())
        parts.append(f"{n} {names.get(int(c), str(int(c)))}{'s' * (n > 1)}")
    return ", ".join(parts)
