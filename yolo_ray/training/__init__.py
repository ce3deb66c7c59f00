"""Training: the driver (options, run folder, launch), the per-worker loop (one process or one Ray Train
DDP rank) and its parts."""

from typing import Any

__all__ = ["run_training", "train_loop_per_worker"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the commands' --help and option checks need no torch
    if name == "train_loop_per_worker":
        from yolo_ray.training.loop import train_loop_per_worker

        return train_loop_per_worker
    if name == "run_training":
        from yolo_ray.training.driver import run_training

        return run_training
    raise AttributeError(f"module 'yolo_ray.training' has no attribute {name!r}")
