"""yolo_ray: YOLOv5 v7.0 training and hyperparameter evolution on Ray."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # yolo_ray.load without importing torch for every `import yolo_ray` (the CLIs start faster)
    if name == "load":
        from yolo_ray.infer.api import load

        return load
    raise AttributeError(f"module 'yolo_ray' has no attribute {name!r}")
