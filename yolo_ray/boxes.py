"""Box format conversions shared by data, loss, metrics and validation.

Every function accepts a torch tensor or a numpy array of shape (n, 4) (or (..., 4)) and returns
the same type. Formats: xyxy = corners, xywh = centre + size, suffix n = normalised to image size.
"""

from __future__ import annotations

import numpy as np
import torch


def _empty_like(x):
    return x.clone() if isinstance(x, torch.Tensor) else np.copy(x)


def xywh2xyxy(x):
    y = _empty_like(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def xyxy2xywh(x):
    y = _empty_like(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywhn2xyxy(x, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0):
    """Normalised centre boxes to pixel corners in an image of size (w, h) placed at offset (padw, padh)."""
    y = _empty_like(x)
    y[..., 0] = w * (x[..., 0] - x[..., 2] / 2) + padw
    y[..., 1] = h * (x[..., 1] - x[..., 3] / 2) + padh
    y[..., 2] = w * (x[..., 0] + x[..., 2] / 2) + padw
    y[..., 3] = h * (x[..., 1] + x[..., 3] / 2) + padh
    return y


def xyxy2xywhn(x, w: float = 640, h: float = 640, clip: bool = False, eps: float = 0.0):
    """Pixel corners to normalised centre boxes; `clip` first clips to the image shrunk by eps."""
    if clip:
        x = _empty_like(x)
        clip_boxes(x, (h - eps, w - eps))
    y = _empty_like(x)
    y[..., 0] = ((x[..., 0] + x[..., 2]) / 2) / w
    y[..., 1] = ((x[..., 1] + x[..., 3]) / 2) / h
    y[..., 2] = (x[..., 2] - x[..., 0]) / w
    y[..., 3] = (x[..., 3] - x[..., 1]) / h
    return y


def xyn2xy(x, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0):
    """Normalised polygon points (n, 2) to pixels."""
    y = _empty_like(x)
    y[..., 0] = w * x[..., 0] + padw
    y[..., 1] = h * x[..., 1] + padh
    return y


def clip_boxes(boxes, shape: tuple[int, int]) -> None:
    """Clip xyxy boxes in place to an image of shape (height, width)."""
    h, w = shape[0], shape[1]
    if isinstance(boxes, torch.Tensor):
        boxes[..., 0].clamp_(0, w)
        boxes[..., 1].clamp_(0, h)
        boxes[..., 2].clamp_(0, w)
        boxes[..., 3].clamp_(0, h)
    else:
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, w)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, h)


def scale_boxes(img1_shape: tuple[int, int], boxes, img0_shape: tuple[int, int], ratio_pad=None):
    """Map xyxy boxes from a letterboxed image (img1_shape, h w) back to the original (img0_shape), in place."""
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        pad = (img1_shape[1] - img0_shape[1] * gain) / 2, (img1_shape[0] - img0_shape[0] * gain) / 2
    else:
        gain = ratio_pad[0][0]
        pad = ratio_pad[1]
    boxes[..., [0, 2]] -= pad[0]
    boxes[..., [1, 3]] -= pad[1]
    boxes[..., :4] /= gain
    clip_boxes(boxes, img0_shape)
    return boxes


def segment2box(segment: np.ndarray, width: int = 640, height: int = 640) -> np.ndarray:
    """The xyxy box of one polygon's points that lie inside the image (zeros if none do)."""
    x, y = segment.T
    inside = (x >= 0) & (y >= 0) & (x <= width) & (y <= height)
    x, y = x[inside], y[inside]
    if not len(x):
        return np.zeros(4, dtype=segment.dtype)
    return np.array([x.min(), y.min(), x.max(), y.max()], dtype=segment.dtype)


def segments2boxes(segments: list[np.ndarray]) -> np.ndarray:
    """Polygons (each (k, 2), normalised or not) to xywh boxes (n, 4)."""
    boxes = [[s[:, 0].min(), s[:, 1].min(), s[:, 0].max(), s[:, 1].max()] for s in segments]
    return xyxy2xywh(np.array(boxes, dtype=np.float32).reshape(-1, 4))


def resample_segments(segments: list[np.ndarray], n: int = 1000) -> list[np.ndarray]:
    """Each polygon (k, 2) resampled to n points along its closed outline, so transforms keep its shape."""
    out = []
    for s in segments:
        s = np.concatenate((s, s[0:1, :]), axis=0)
        t = np.linspace(0, len(s) - 1, n)
        knots = np.arange(len(s))
        out.append(np.stack([np.interp(t, knots, s[:, i]) for i in range(2)], axis=1).astype(np.float32))
    return out
