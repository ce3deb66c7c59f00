"""Where a run (re)starts: rank 0 decides from the checkpoint it sees, and every rank starts there.

After a failure Ray Train starts the train function again on every rank. Ranks reading last.pt each
for themselves could see different versions of it (NFS attribute caching, a node whose download
failed) and start at different epochs, then hang in the first collective. So only rank 0 reads it;
the other ranks get its checkpoint (all but the EMA, which only rank 0 keeps) over the process group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolo_ray.training.checkpoint import load_training_checkpoint, restart_checkpoint
from yolo_ray.cluster.session import WorkerContext, broadcast_from_main


def starting_checkpoint(
    ctx: WorkerContext, resume: str | None, last: Path, run_id: str | None
) -> tuple[str | None, dict[str, Any] | None]:
    """(checkpoint path, its contents) to start from on every rank, or (None, None) for a fresh start.

    resume: the user's --resume file. Otherwise, in a Ray Train worker, the run's own last.pt when an
    earlier attempt of this run saved it (restart_checkpoint).
    """
    path, ckpt = None, None
    if ctx.is_main:
        path = resume or (restart_checkpoint(last, run_id) if ctx.mode == "train" else None)
        ckpt = load_training_checkpoint(path) if path else None
    if not ctx.distributed:
        return path, ckpt
    others = None if ckpt is None else {k: v for k, v in ckpt.items() if k != "ema"}
    shared_path, shared_ckpt = broadcast_from_main((path, others), ctx)
    return (path, ckpt) if ctx.is_main else (shared_path, shared_ckpt)


def finished_results(ckpt: dict[str, Any] | None) -> dict[str, float] | None:
    """The final results a stripped last.pt of this run holds: the run only has its upload left."""
    return None if ckpt is None else ckpt.get("final_results")


def epochs_to_train(ckpt: dict[str, Any] | None, epochs: int) -> tuple[int, int]:
    """(start epoch, total epochs) when starting from ckpt (None: a fresh start).

    A checkpoint saved when training was done (the last epoch, or early stopping) leaves no epoch to
    train unless the run's total was raised since (--resume with a larger --epochs).
    """
    if ckpt is None:
        return 0, epochs
    start = ckpt["epoch"] + 1
    saved_total = int((ckpt.get("opt") or {}).get("epochs", epochs))
    if ckpt.get("training_done") and epochs <= saved_total:
        return start, start
    if epochs < start:  # a finished run resumed with a larger budget: fine-tune that many more
        epochs += ckpt["epoch"]
    return start, epochs
