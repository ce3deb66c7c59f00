"""Training: the per-worker loop (one process or one Ray Train DDP rank) and its launcher."""

from .loop import train_loop_per_worker
from .launch import run_training
