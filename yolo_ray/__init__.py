"""yolo_ray: YOLOv5 v7.0 training and hyperparameter evolution on Ray."""

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module, imported on first use: `import yolo_ray` stays cheap (no torch) and the commands start fast
_EXPORTS = {
    "load": "yolo_ray.infer.api",
    "train": "yolo_ray.api",
    "evolve": "yolo_ray.api",
    "EvolveResult": "yolo_ray.api",
    "TrainResult": "yolo_ray.training.driver",
    "TrainConfig": "yolo_ray.options",
    "EvolveConfig": "yolo_ray.options",
    "UserError": "yolo_ray.config",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'yolo_ray' has no attribute {name!r}")
