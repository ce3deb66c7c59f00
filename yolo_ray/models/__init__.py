"""YOLOv5 v7.0 models: building from yaml, and loading weights from our or upstream checkpoints."""

from yolo_ray.models.common import C3, SPPF, Bottleneck, Concat, Conv
from yolo_ray.models.prune import prune, sparsity
from yolo_ray.models.weights import load_checkpoint, load_weights, transfer_weights
from yolo_ray.models.yolo import (
    CFG_DIR,
    Detect,
    DetectionModel,
    build_model,
    check_anchor_order,
    de_parallel,
    shipped_cfgs,
)

__all__ = [
    "C3",
    "SPPF",
    "Bottleneck",
    "Concat",
    "Conv",
    "Detect",
    "DetectionModel",
    "CFG_DIR",
    "build_model",
    "check_anchor_order",
    "de_parallel",
    "shipped_cfgs",
    "load_checkpoint",
    "load_weights",
    "transfer_weights",
    "prune",
    "sparsity",
]
