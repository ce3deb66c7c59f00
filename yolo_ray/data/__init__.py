"""YOLO datasets: data yamls, label checking and caching, augmentation, and the training/validation loader."""

from yolo_ray.data.config import load_data_config
from yolo_ray.data.dataset import DecodedImages, LoadImagesAndLabels, check_training_data
from yolo_ray.data.loader import create_dataloader, labels_to_class_weights, labels_to_image_weights

__all__ = [
    "load_data_config",
    "create_dataloader",
    "LoadImagesAndLabels",
    "DecodedImages",
    "check_training_data",
    "labels_to_class_weights",
    "labels_to_image_weights",
]
