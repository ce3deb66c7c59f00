"""YOLO datasets: data yamls, label checking and caching, augmentation, and the training/validation loader."""

import importlib
from typing import Any

# name -> module, imported on first use: the evolution driver reads data yamls and makes the built-in
# dataset without importing torch, which only the dataset and the loader need
_EXPORTS = {
    "load_data_config": "yolo_ray.data.config",
    **dict.fromkeys(("LoadImagesAndLabels", "DecodedImages", "check_training_data"), "yolo_ray.data.dataset"),
    **dict.fromkeys(
        ("create_dataloader", "labels_to_class_weights", "labels_to_image_weights"), "yolo_ray.data.loader"
    ),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
