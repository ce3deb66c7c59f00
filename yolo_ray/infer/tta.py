"""Test-time augmentation (--augment), as upstream's DetectionModel._forward_augment: the image at scales
1, 0.83 and 0.67 (the second flipped left-right), predictions mapped back and concatenated for one NMS."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from yolo_ray.models.loading import Ensemble, model_stride

SCALES = (1.0, 0.83, 0.67)
FLIPS = (None, 3, None)  # torch dims: 3 flips left-right (2 would flip up-down)
PAD_VALUE = 0.447  # upstream's grey (ImageNet mean) for the padding of scaled images


def scale_image(x: torch.Tensor, ratio: float, stride: int) -> torch.Tensor:
    """x (b, c, h, w) resized by ratio (bilinear), padded right and bottom to a stride multiple of h, w * ratio."""
    if ratio == 1.0:
        return x
    h, w = x.shape[2:]
    size = (int(h * ratio), int(w * ratio))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    h, w = (math.ceil(v * ratio / stride) * stride for v in (h, w))
    return F.pad(x, [0, w - size[1], 0, h - size[0]], value=PAD_VALUE)


def _descale(p: torch.Tensor, flip: int | None, ratio: float, img_size: tuple[int, int]) -> torch.Tensor:
    """Predictions (b, n, 5 + nc) of a scaled (and flipped) image back in the original image's pixels."""
    x, y, wh = p[..., 0:1] / ratio, p[..., 1:2] / ratio, p[..., 2:4] / ratio
    if flip == 2:
        y = img_size[0] - y
    elif flip == 3:
        x = img_size[1] - x
    return torch.cat((x, y, wh, p[..., 4:]), -1)


def _clip_tails(y: list[torch.Tensor], nl: int) -> list[torch.Tensor]:
    """Drop the largest-stride level's boxes of the full-size pass and the smallest-stride level's of the
    smallest pass (upstream's _clip_augmented: those levels see objects at sizes they were not trained on)."""
    grid_points = sum(4**x for x in range(nl))
    y[0] = y[0][:, : -(y[0].shape[1] // grid_points)]
    y[-1] = y[-1][:, (y[-1].shape[1] // grid_points) * 4 ** (nl - 1) :]
    return y


@torch.no_grad()
def augmented_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TTA predictions (b, n, 5 + nc) of a DetectionModel, or of each member of an Ensemble concatenated."""
    if isinstance(model, Ensemble):
        return torch.cat([augmented_forward(m, x) for m in model], 1)
    stride = model_stride(model)
    img_size = tuple(x.shape[-2:])
    outputs = []
    for ratio, flip in zip(SCALES, FLIPS):
        xi = scale_image(x.flip(flip) if flip else x, ratio, stride)
        outputs.append(_descale(model(xi)[0], flip, ratio, img_size))
    return torch.cat(_clip_tails(outputs, model.model[-1].nl), 1)
