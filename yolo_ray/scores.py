"""The numbers a run is ranked by: the 7 validation results, results.csv's columns and YOLOv5's fitness.

Numpy only (the detection metrics, which need torch, are in `yolo_ray.metrics`), so the evolution
driver ranks evolve.csv rows without importing torch.
"""

from __future__ import annotations

import numpy as np

# The 7 validation results, in the order of results.csv and of evolve.csv's first columns.
RESULT_KEYS = (
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
)

# results.csv's columns: epoch, the 3 training losses, the 7 validation results, the 3 learning rates.
RESULTS_CSV_KEYS = (
    "epoch",
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    *RESULT_KEYS,
    "x/lr0",
    "x/lr1",
    "x/lr2",
)

# P, R, mAP@0.5, mAP@0.5:0.95: model selection cares almost only about the strict mAP.
FITNESS_WEIGHTS = np.array([0.0, 0.0, 0.1, 0.9])


def fitness(x: np.ndarray) -> np.ndarray:
    """Model fitness per row of [P, R, mAP@0.5, mAP@0.5:0.95, ...]: 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95."""
    x = np.asarray(x, dtype=float)
    return x[:, :4] @ FITNESS_WEIGHTS
