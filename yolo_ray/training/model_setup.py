"""Building the model a run trains: from cfg and/or weights, freezing, image size, loss-gain scaling."""

from __future__ import annotations

import math
import os
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from yolo_ray.config import UserError
from yolo_ray.models import build_model, load_checkpoint, transfer_weights
from yolo_ray.console import LOGGER


def process_seed(seed: int, rank: int, distributed: bool) -> int:
    """Upstream's init_seeds(opt.seed + 1 + RANK), where RANK is -1 outside DDP: `seed` itself for a single
    process, seed + 1 + r on DDP rank r."""
    return seed + 1 + (rank if distributed else -1)


def init_seeds(seed: int, deterministic: bool = False) -> None:
    """Seed every generator; deterministic also makes torch refuse nondeterministic kernels (upstream's option)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # cuBLAS needs it to be deterministic
        os.environ["PYTHONHASHSEED"] = str(seed)


def create_model(
    cfg: str | None, weights: str | None, resume_ckpt: dict[str, Any] | None, nc: int, hyp: dict[str, float]
) -> nn.Module:
    """The model to train, on CPU in fp32.

    Resume: the checkpoint's own architecture and training weights, anchors included. Weights: built
    from cfg (else the checkpoint's yaml) with this dataset's nc; matching tensors transferred, except
    the anchors when a cfg or hyp anchors say otherwise.
    """
    anchors = round(hyp["anchors"]) if hyp.get("anchors") else None  # evolved counts are floats: 3.6 -> 4
    if resume_ckpt is not None:
        model = build_model(resume_ckpt["yaml"], nc=nc, anchors=anchors)
        state = {k: v.float() if v.is_floating_point() else v for k, v in resume_ckpt["model"].items()}
        transfer_weights(model, state)
        return model
    if weights:
        ckpt = load_checkpoint(weights, prefer="model")  # upstream train.py: ckpt['model'], not the EMA
        source = cfg or ckpt["yaml"]
        if not source:
            raise UserError(f"{weights}: checkpoint holds no model yaml; pass --cfg as well")
        model = build_model(source, nc=nc, anchors=anchors)
        exclude = ["anchor"] if (cfg or anchors) else []
        transfer_weights(model, ckpt["state_dict"], exclude=exclude)
        return model
    if not cfg:
        raise UserError("no model: give --cfg (e.g. yolov5s.yaml) and/or --weights")
    return build_model(cfg, nc=nc, anchors=anchors)


def freeze_layers(model: nn.Module, freeze: list[int]) -> list[str]:
    """freeze [n] = the first n layers; [a, b, ...] = those layer indices. Returns the frozen names."""
    layers = freeze if len(freeze) > 1 else range(freeze[0] if freeze else 0)
    prefixes = [f"model.{x}." for x in layers]
    frozen = []
    for name, param in model.named_parameters():
        param.requires_grad = True
        if any(p in name for p in prefixes):
            param.requires_grad = False
            frozen.append(name)
    return frozen


def check_img_size(imgsz: int, stride: int, floor: int = 0) -> int:
    """imgsz rounded up to a multiple of the model's max stride (at least floor), warning when changed."""
    new_size = max(math.ceil(imgsz / stride) * stride, floor)
    if new_size != imgsz:
        LOGGER.warning(f"WARNING: --img-size {imgsz} must be multiple of max stride {stride}, updating to {new_size}")
    return new_size


def train_image_size(cfg: str | None, weights: str | None, imgsz: int) -> int:
    """Load the weights and build the model as training will, so a bad --cfg or --weights fails before a
    run starts; returns imgsz on the model's stride grid, as the loop rounds it (with its warning)."""
    ckpt = load_checkpoint(weights) if weights else None
    source = cfg or (ckpt["yaml"] if ckpt else None)
    if not source:
        raise UserError(
            f"{weights}: checkpoint holds no model yaml; pass --cfg as well"
            if weights
            else "no model: give --cfg (e.g. yolov5s.yaml) and/or --weights"
        )
    gs = max(int(build_model(source).stride.max()), 32)
    return check_img_size(int(imgsz), gs, floor=gs * 2)


def scale_loss_gains(hyp: dict[str, float], nl: int, nc: int, imgsz: int, label_smoothing: float) -> dict[str, float]:
    """Gains tuned for 3 levels, 80 classes and 640 px, rescaled to this model and image size."""
    hyp = dict(hyp)
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = label_smoothing
    return hyp
