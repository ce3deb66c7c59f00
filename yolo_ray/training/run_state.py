"""RunState: what one rank's training run holds, set up once by the loop and carried from epoch to epoch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo_ray.loss import ComputeLoss
from yolo_ray.training.optim import EarlyStopping, ModelEMA
from yolo_ray.training.precision import Precision
from yolo_ray.training.trackers import RunTrackers


@dataclass
class RunState:
    """Everything one rank's run holds: set up once, then carried from epoch to epoch."""

    opt: dict[str, Any]
    ctx: Any
    evolve: bool
    noval: bool
    nosave: bool
    plots: bool
    save_dir: Path
    uploader: Any = None
    resume_ckpt: dict[str, Any] | None = None
    hyp: dict[str, float] | None = None
    trackers: RunTrackers | None = None
    data: dict[str, Any] | None = None
    nc: int = 0
    names: Any = None
    model: Any = None
    gs: int = 32
    imgsz: int = 0
    epochs: int = 0
    batch_size: int = 0
    start_epoch: int = 0
    best_fitness: float = 0.0
    accumulate: int = 1
    optimizer: Any = None
    lf: Any = None
    scheduler: Any = None
    per_rank_batch: int = 0
    train_loader: Any = None
    dataset: Any = None
    labels: np.ndarray | None = None
    val_loader: Any = None
    precision: Precision | None = None
    ema: ModelEMA | None = None
    bare: Any = None
    compute_loss: ComputeLoss | None = None
    nw: int = 0
    last_opt_step: int = -1
    maps: np.ndarray | None = None
    results: tuple[float, ...] = (0.0,) * 7
    stopper: EarlyStopping | None = None

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def weights_dir(self) -> Path:
        return self.save_dir / "weights"

    @property
    def last(self) -> Path:
        return self.weights_dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.weights_dir / "best.pt"

    @property
    def results_csv(self) -> Path:
        return self.save_dir / "results.csv"

    @property
    def nb(self) -> int:
        return len(self.train_loader)
