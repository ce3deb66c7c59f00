"""Inference models from weights files: one checkpoint, or several as upstream's Ensemble."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from yolo_ray.boxes import scale_boxes
from yolo_ray.config import UserError
from yolo_ray.data.augment import letterbox
from yolo_ray.metrics import non_max_suppression
from yolo_ray.models import DetectionModel, build_model, load_checkpoint


def class_names(names, nc: int) -> dict[int, str]:
    """{id: name} from a list, a dict or nothing (then '0', '1', ...)."""
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or len(names) != nc:
        return {i: str(i) for i in range(nc)}
    return {int(k): str(v) for k, v in names.items()}


def model_from_checkpoint(weights: str | Path) -> DetectionModel:
    """A float32 eval-mode model with the checkpoint's architecture, weights and class names.

    Our checkpoints and upstream .pt files both work (the latter through the restricted loader).
    """
    ckpt = load_checkpoint(weights)
    if not ckpt["yaml"]:
        raise UserError(f"{weights}: checkpoint holds no model yaml, so the architecture is unknown")
    model = build_model(ckpt["yaml"])
    state = ckpt["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{weights}: weights do not fit the model yaml they came with "
                        f"({str(e).splitlines()[0]})") from None
    model.names = class_names(ckpt["names"], model.nc)
    model.float().eval()
    return model


class Ensemble(nn.ModuleList):
    """Several models on one input: their decoded outputs concatenated, so one NMS sees every box."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.cat([m(x)[0] for m in self], 1), None


def load_models(weights: Sequence[str | Path] | str | Path, device: torch.device | str = "cpu",
                fuse: bool = True) -> nn.Module:
    """One model, or an Ensemble when several weights are given (same classes required), on `device`.

    The result carries names, nc and stride (the ensemble's largest); fused for inference by default.
    """
    paths = [weights] if isinstance(weights, (str, Path)) else list(weights)
    if not paths:
        raise UserError("--weights: give at least one weights file")
    models = []
    for w in paths:
        model = model_from_checkpoint(w)
        models.append(model.fuse() if fuse else model)
    if len(models) == 1:
        return models[0].to(device)
    first = models[0]
    for w, m in zip(paths[1:], models[1:]):
        if m.nc != first.nc:
            raise UserError(f"{w}: an ensemble needs models of the same classes, got nc={m.nc} and nc={first.nc}")
    ensemble = Ensemble(models)
    ensemble.names, ensemble.nc, ensemble.yaml = first.names, first.nc, first.yaml
    ensemble.stride = max((m.stride for m in models), key=lambda s: float(s.max()))
    print(f"Ensemble created with {[str(w) for w in paths]}\n")
    return ensemble.to(device).eval()


def model_stride(model: nn.Module) -> int:
    """The largest stride, at least 32: image sizes are rounded to multiples of it."""
    stride = model.stride
    return max(int(stride.max()) if isinstance(stride, torch.Tensor) else int(stride), 32)


def inference_shape(shapes: list[tuple[int, ...]], size: int | tuple[int, int], stride: int) -> list[int]:
    """One (h, w) for a batch: each image scaled so its long side fits `size`, the largest, on the stride grid."""
    size = (size, size) if isinstance(size, int) else size
    scaled = []
    for s in shapes:
        g = max(size) / max(s[:2])
        scaled.append([int(y * g) for y in s[:2]])
    return [math.ceil(x / stride) * stride for x in np.array(scaled).max(0)]


@torch.no_grad()
def predict(model: nn.Module, ims: list[np.ndarray], size: int | tuple[int, int] = 640, conf_thres: float = 0.25,
            iou_thres: float = 0.45, classes: list[int] | None = None, agnostic: bool = False,
            multi_label: bool = False, max_det: int = 1000, amp: bool = False, augment: bool = False
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
    preds = non_max_suppression(raw.float(), conf_thres, iou_thres, classes, agnostic, multi_label, max_det=max_det)
    for pred, im in zip(preds, ims):
        scale_boxes(shape1, pred[:, :4], im.shape[:2])
    t3 = _sync(cuda)
    return preds, (t1 - t0, t2 - t1, t3 - t2), tuple(x.shape)


def _sync(cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()
