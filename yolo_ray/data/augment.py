"""Image augmentations of YOLOv5 v7.0 (letterbox, random perspective, HSV, mixup, copy-paste).

Images are HWC uint8 BGR numpy arrays; labels are (n, 5) [cls, x1, y1, x2, y2] in pixels unless
a function says otherwise. Randomness comes from the `random` and `numpy.random` module states, which
the loader seeds per worker, as upstream does. Albumentations are not used.
"""

from __future__ import annotations

import math
import random

import cv2
import numpy as np

from yolo_ray.boxes import resample_segments, segment2box

FILL = 114  # grey of padding and of the area a warp uncovers


def letterbox(
    im: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    color: tuple[int, int, int] = (FILL,) * 3,
    auto: bool = True,
    scale_fill: bool = False,
    scaleup: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize keeping aspect ratio and pad to new_shape (h, w); returns (image, (rw, rh) ratio, (dw, dh) pad).

    auto pads only to the next multiple of stride; scale_fill stretches without padding; scaleup=False
    never enlarges (used for validation so small images keep their pixels).
    """
    shape = im.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    ratio = r, r
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scale_fill:
        dw, dh = 0.0, 0.0
        new_unpad = new_shape[1], new_shape[0]
        ratio = new_shape[1] / shape[1], new_shape[0] / shape[0]
    dw, dh = dw / 2, dh / 2  # split the padding between both sides
    if shape[::-1] != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return im, ratio, (dw, dh)


def box_candidates(
    box1: np.ndarray,
    box2: np.ndarray,
    wh_thr: float = 2,
    ar_thr: float = 100,
    area_thr: float = 0.1,
    eps: float = 1e-16,
) -> np.ndarray:
    """Which boxes survive a transform: box1 before (4, n) xyxy, box2 after; keeps boxes wider and taller
    than wh_thr px, keeping more than area_thr of their area, with aspect ratio below ar_thr."""
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def random_perspective(
    im: np.ndarray,
    targets: np.ndarray = (),
    segments: list[np.ndarray] = (),
    degrees: float = 10,
    translate: float = 0.1,
    scale: float = 0.1,
    shear: float = 10,
    perspective: float = 0.0,
    border: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation/scale/shear/translation/perspective of an image and its xyxy pixel targets.

    The output is the input size shrunk by 2*border (negative border: the mosaic's 2s canvas back to s).
    With segments (one polygon per target), boxes are re-derived from the warped polygons, which fits
    rotated objects much more tightly than warping box corners.
    """
    height = im.shape[0] + border[0] * 2
    width = im.shape[1] + border[1] * 2

    centre = np.eye(3)
    centre[0, 2] = -im.shape[1] / 2
    centre[1, 2] = -im.shape[0] / 2
    persp = np.eye(3)
    persp[2, 0] = random.uniform(-perspective, perspective)
    persp[2, 1] = random.uniform(-perspective, perspective)
    rot = np.eye(3)
    angle = random.uniform(-degrees, degrees)
    s = random.uniform(1 - scale, 1 + scale)
    rot[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    shr = np.eye(3)
    shr[0, 1] = math.tan(random.uniform(-shear, shear) * math.pi / 180)
    shr[1, 0] = math.tan(random.uniform(-shear, shear) * math.pi / 180)
    trans = np.eye(3)
    trans[0, 2] = random.uniform(0.5 - translate, 0.5 + translate) * width
    trans[1, 2] = random.uniform(0.5 - translate, 0.5 + translate) * height
    m = trans @ shr @ rot @ persp @ centre  # applied right to left: centre first

    if border[0] != 0 or border[1] != 0 or (m != np.eye(3)).any():
        if perspective:
            im = cv2.warpPerspective(im, m, dsize=(width, height), borderValue=(FILL,) * 3)
        else:
            im = cv2.warpAffine(im, m[:2], dsize=(width, height), borderValue=(FILL,) * 3)

    targets = np.asarray(targets, dtype=np.float32).reshape(-1, 5)
    n = len(targets)
    if n:
        use_segments = len(segments) == n and any(len(x) and x.any() for x in segments)
        new = np.zeros((n, 4), dtype=np.float32)
        if use_segments:
            for i, seg in enumerate(resample_segments(list(segments))):
                xy = _transform_points(seg, m, perspective)
                new[i] = segment2box(xy, width, height)
        else:
            corners = targets[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
            xy = _transform_points(corners, m, perspective).reshape(n, 8)
            x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
            new = np.stack((x.min(1), y.min(1), x.max(1), y.max(1)), axis=1)
            new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
            new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
        keep = box_candidates(targets[:, 1:5].T * s, new.T, area_thr=0.01 if use_segments else 0.10)
        targets = targets[keep]
        targets[:, 1:5] = new[keep]
    return im, targets


def _transform_points(xy: np.ndarray, m: np.ndarray, perspective: float) -> np.ndarray:
    points = xy @ m[:2, :2].T + m[:2, 2]
    if perspective:
        w = xy @ m[2, :2] + m[2, 2]
        points = points / w[:, None]
    return points.astype(np.float32)


def augment_hsv(im: np.ndarray, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5) -> None:
    """Random hue/saturation/value gains, in place, through one 256-entry lookup table per channel."""
    if not (hgain or sgain or vgain):
        return
    r = np.random.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    x = np.arange(0, 256, dtype=r.dtype)
    lut = (
        np.stack(
            (
                (x * r[0]) % 180,  # OpenCV hue is 0..179 and wraps around
                np.clip(x * r[1], 0, 255),
                np.clip(x * r[2], 0, 255),
            ),
            axis=-1,
        )
        .astype(np.uint8)
        .reshape(256, 1, 3)
    )
    hsv = cv2.cvtColor(im, cv2.COLOR_BGR2HSV)
    cv2.LUT(hsv, lut, dst=hsv)  # all three channels in one pass, no split/merge copies
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=im)


def mixup(im: np.ndarray, labels: np.ndarray, im2: np.ndarray, labels2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blend two images with a beta(32, 32) ratio (about 0.5) and keep both label sets."""
    r = np.random.beta(32.0, 32.0)
    im = (im * r + im2 * (1 - r)).astype(np.uint8)  # truncates, as upstream (cv2.addWeighted would round)
    return im, np.concatenate((labels, labels2), 0)


def bbox_ioa(box: np.ndarray, boxes: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Intersection of one xyxy box with each of boxes (n, 4), over the area of each of boxes."""
    iw = (np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])).clip(0)
    ih = (np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])).clip(0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + eps
    return iw * ih / area


def copy_paste(
    im: np.ndarray, labels: np.ndarray, segments: list[np.ndarray], p: float = 0.5
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Paste left-right mirrored copies of round(p * n) segmented objects where they cover < 30% of any
    existing box. labels (n, 5) xyxy pixels, segments pixel polygons; both gain the pasted copies."""
    n = len(segments)
    if not (p and n):
        return im, labels, segments
    w = im.shape[1]
    mask = np.zeros(im.shape[:2], dtype=np.uint8)
    segments = list(segments)
    for j in random.sample(range(n), k=round(p * n)):
        cls, x1, y1, x2, y2 = labels[j]
        mirrored = np.array([w - x2, y1, w - x1, y2], dtype=labels.dtype)
        if (bbox_ioa(mirrored, labels[:, 1:5]) < 0.30).all():
            labels = np.concatenate((labels, [[cls, *mirrored]]), 0)
            seg = segments[j]
            segments.append(np.concatenate((w - seg[:, 0:1], seg[:, 1:2]), 1))
            cv2.drawContours(mask, [seg.astype(np.int32)], -1, 1, cv2.FILLED)
    if mask.any():
        flipped_mask = cv2.flip(mask, 1).astype(bool)
        im[flipped_mask] = cv2.flip(im, 1)[flipped_mask]
    return im, labels, segments
