"""Where the training loop runs: a plain process, a Ray Train worker (DDP rank), or a Ray Tune trial.

The same loop serves all three; this module answers rank, world size, device, and how to report.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from yolo_ray.config import UserError


@dataclass(frozen=True)
class WorkerContext:
    rank: int  # 0 on the only process of a plain run
    world_size: int
    device: torch.device
    mode: str  # "plain", "train" (Ray Train worker) or "tune" (Ray Tune function trial)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _in_train_worker() -> bool:
    if "ray" not in sys.modules:  # a Ray worker has always imported ray: skip the import cost otherwise
        return False
    import ray.train

    try:
        ray.train.get_context()
    except (RuntimeError, DeprecationWarning):  # DeprecationWarning: we are in a Tune trial instead
        return False
    return True


def _in_tune_trial() -> bool:
    if "ray" not in sys.modules:
        return False
    from ray.tune.trainable.trainable_fn_utils import _in_tune_session

    return bool(_in_tune_session())


def select_device(device: str) -> torch.device:
    """'' -> first CUDA GPU if any else CPU; 'cpu'; '0' or '0,1' -> that (first) CUDA GPU."""
    device = str(device).strip().lower().replace("cuda:", "")
    if device == "cpu":
        return torch.device("cpu")
    if not device:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    first = device.split(",")[0]
    if not first.isdigit():
        raise UserError(f"--device {device!r}: expected '', 'cpu' or CUDA indices like '0' or '0,1'")
    if not torch.cuda.is_available() or int(first) >= torch.cuda.device_count():
        raise UserError(f"--device {device!r}: CUDA device {first} is not available on this machine")
    return torch.device(f"cuda:{first}")


def worker_context(device: str) -> WorkerContext:
    """Rank and device from Ray Train when inside a worker (Ray made the process group), else local."""
    if _in_train_worker():
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        world_size = ctx.get_world_size()
        if world_size > 1 and not dist.is_initialized():
            raise RuntimeError("Ray Train worker without a torch process group: launch with TorchTrainer")
        return WorkerContext(ctx.get_world_rank(), world_size, ray.train.torch.get_device(), "train")
    mode = "tune" if _in_tune_trial() else "plain"
    return WorkerContext(0, 1, select_device(device), mode)


def broadcast_from_main(obj: Any, ctx: WorkerContext) -> Any:
    """Rank 0's value on every rank (a collective: every rank must call it the same number of times)."""
    if not ctx.distributed:
        return obj
    holder = [obj if ctx.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def report(ctx: WorkerContext, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
    """Report one validated epoch to Ray; every Train rank calls this equally often (it is a barrier)."""
    if ctx.mode == "train":
        import ray.train

        checkpoint = None
        if ctx.is_main and checkpoint_dir is not None:
            checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir))
        ray.train.report(metrics, checkpoint=checkpoint)
    elif ctx.mode == "tune":
        import ray.tune

        ray.tune.report(metrics)


class EpochProgress:
    """Rank 0's progress for one epoch: a tqdm bar on a terminal, else a line every ~10% (readable logs).

    Reading the running losses syncs with the device, so it happens only when something is shown.
    """

    HEADER = ("%11s" * 7) % ("Epoch", "GPU_mem", "box_loss", "obj_loss", "cls_loss", "Instances", "Size")

    def __init__(self, epoch: int, epochs: int, nb: int):
        self.epoch_label = f"{epoch}/{epochs - 1}"
        self.nb = nb
        self.images = 0
        self.seconds = 0.0
        self.t0 = time.perf_counter()
        self.tty = sys.stdout.isatty()
        self.every = 10 if self.tty else max(1, nb // 10)
        print(self.HEADER, flush=True)
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=nb, bar_format="{l_bar}{bar:10}{r_bar}")

    def _line(self, mloss: torch.Tensor, instances: int, size: int) -> str:
        mem = f"{torch.cuda.memory_reserved() / 1e9 if torch.cuda.is_available() else 0:.3g}G"
        return ("%11s" * 2 + "%11.4g" * 5) % (self.epoch_label, mem, *mloss.tolist(), instances, size)

    def update(self, i: int, mloss: torch.Tensor, images: int, instances: int, size: int) -> None:
        self.images += images
        if self.bar is not None:
            self.bar.update(1)
        if (i + 1) % self.every and i + 1 != self.nb:
            return
        line = self._line(mloss, instances, size)
        if self.bar is not None:
            self.bar.set_description(line)
        else:
            print(f"{line}  {i + 1}/{self.nb}", flush=True)

    def close(self) -> None:
        """End of the epoch's training part: print its throughput (benchmarks read .seconds/.images)."""
        self.seconds = time.perf_counter() - self.t0
        if self.bar is not None:
            self.bar.close()
        print(f"{self.epoch_label}: trained {self.images} images in {self.seconds:.1f} s "
              f"({self.images / max(self.seconds, 1e-9):.1f} img/s on this rank)", flush=True)


def resolve_shared(value: Any) -> Any:
    """Values a trial config may carry as Ray object refs (shared decoded images) fetched to this process."""
    if "ray" not in sys.modules:
        return value
    import ray

    if isinstance(value, ray.ObjectRef):
        value = ray.get(value)
    if isinstance(value, dict):
        return {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in value.items()}
    return value
