"""Inference on images in memory: letterboxed batches through a model, then NMS, boxes in image pixels."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from yolo_ray.boxes import scale_boxes
from yolo_ray.data.augment import letterbox
from yolo_ray.metrics import nms_input, non_max_suppression
from yolo_ray.models.loading import model_stride


def inference_shape(shapes: list[tuple[int, ...]], size: int | tuple[int, int], stride: int) -> list[int]:
    """One (h, w) for a batch: each image scaled so its long side fits `size`, the largest, on the stride grid."""
    size = (size, size) if isinstance(size, int) else size
    scaled = []
    for s in shapes:
        g = max(size) / max(s[:2])
        scaled.append([int(y * g) for y in s[:2]])
    return [math.ceil(x / stride) * stride for x in np.array(scaled).max(0)]


@torch.no_grad()
def predict(
    model: nn.Module,
    ims: list[np.ndarray],
    size: int | tuple[int, int] = 640,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 1000,
    amp: bool = False,
    augment: bool = False,
) -> tuple[list[torch.Tensor], tuple[float, float, float], tuple[int, ...]]:
    """Detections per image (k, 6) [x1, y1, x2, y2, conf, cls] in that image's pixels, upstream AutoShape's way.

    model: a Backend (yolo_ray.infer.backends). ims: HWC uint8 RGB arrays, letterboxed together to one
    stride-multiple shape (a fixed-shape export's own shape). amp: autocast the forward pass (CUDA);
    augment: test-time augmentation. Also returns (pre-process, inference, NMS) seconds and the input shape.
    """
    cuda = model.device.type == "cuda"
    t0 = time.perf_counter()
    fixed = model.input_shape
    shape1 = list(fixed[2:]) if fixed else inference_shape([im.shape for im in ims], size, model_stride(model))
    batch = np.stack([letterbox(im, shape1, auto=False)[0] for im in ims])
    x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(model.device)
    x = (x.half() if model.fp16 else x.float()) / 255
    t1 = _sync(cuda)
    with torch.autocast("cuda", enabled=amp and cuda):
        raw = model(x, augment=augment)
    t2 = _sync(cuda)
    preds = non_max_suppression(nms_input(raw), conf_thres, iou_thres, classes, agnostic, multi_label, max_det=max_det)
    for pred, im in zip(preds, ims):
        scale_boxes(shape1, pred[:, :4], im.shape[:2])
    t3 = _sync(cuda)
    return preds, (t1 - t0, t2 - t1, t3 - t2), tuple(x.shape)


def _sync(cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()
