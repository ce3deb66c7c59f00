"""Validation during training, as upstream's val.run does it for train.py: P, R, mAP and val losses."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
from torch import nn

from yolo_ray.infer.evaluate import evaluate


def validate(model: nn.Module, loader: Iterable, nc: int, compute_loss: Callable | None = None,
             **options: Any) -> tuple[tuple[float, ...], np.ndarray]:
    """((P, R, mAP@.5, mAP@.5:.95, val box, obj, cls loss), per-class mAP@.5:.95 of length nc).

    The same evaluation as val.py (yolo_ray.infer.evaluate, which documents the options: thresholds,
    single_cls, half, autocast_dtype, memory_format), without val.py's plots and tables.
    """
    result = evaluate(model, loader, nc, compute_loss, **options)
    return result.results, result.maps
