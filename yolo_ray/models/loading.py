"""Models from weights files for inference and evaluation: one checkpoint, or several as upstream's Ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from yolo_ray.config import UserError
from yolo_ray.models.weights import load_checkpoint
from yolo_ray.models.yolo import DetectionModel, build_model
from yolo_ray.console import LOGGER


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
        raise UserError(
            f"{weights}: weights do not fit the model yaml they came with ({str(e).splitlines()[0]})"
        ) from None
    model.names = class_names(ckpt["names"], model.nc)
    model.float().eval()
    return model


class Ensemble(nn.ModuleList):
    """Several models on one input: their decoded outputs concatenated, so one NMS sees every box."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.cat([m(x)[0] for m in self], 1), None


def load_models(
    weights: Sequence[str | Path] | str | Path, device: torch.device | str = "cpu", fuse: bool = True
) -> nn.Module:
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
    LOGGER.info(f"Ensemble created with {[str(w) for w in paths]}\n")
    return ensemble.to(device).eval()


def model_stride(model: nn.Module) -> int:
    """The largest stride, at least 32: image sizes are rounded to multiples of it."""
    stride = model.stride
    return max(int(stride.max()) if isinstance(stride, torch.Tensor) else int(stride), 32)
