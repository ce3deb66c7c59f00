"""yolo_ray: YOLOv5 v7.0 training and hyperparameter evolution on Ray."""

__version__ = "0.1.0"
