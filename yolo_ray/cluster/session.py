"""Where the training loop runs: a plain process, a Ray Train worker (DDP rank), or a Ray Tune trial.

The same loop serves all three; this module answers rank, world size, device, and how to report.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from yolo_ray.cluster.placement import check_device_spelling
from yolo_ray.config import UserError


@dataclass(frozen=True)
class WorkerContext:
    rank: int  # 0 on the only process of a plain run
    world_size: int
    device: torch.device
    mode: str  # "plain", "train" (Ray Train worker) or "tune" (Ray Tune function trial)
    local_rank: int = 0  # rank among this node's workers: the one that writes this node's caches first
    cpus: int | None = None  # CPUs Ray assigned this process (None: not under Ray, the machine's cores)
    local_world_size: int = 1  # ranks on this node (each holds its own --cache ram copy)

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
    device = check_device_spelling(device)
    if device == "cpu":
        return torch.device("cpu")
    if not device:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    first = device.split(",")[0]
    if not torch.cuda.is_available() or int(first) >= torch.cuda.device_count():
        raise UserError(f"--device {device!r}: CUDA device {first} is not available on this machine")
    return torch.device(f"cuda:{first}")


def ray_assigned_device() -> torch.device:
    """The first GPU Ray assigned this process, else the CPU.

    Ray 2.60 no longer hides GPUs from processes that were given none, so a CPU trial on a GPU host
    would otherwise pick cuda:0 and pile onto it with every other trial.
    """
    import ray

    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    if not gpu_ids or not torch.cuda.is_available():
        return torch.device("cpu")
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return torch.device(f"cuda:{visible.index(gpu_ids[0]) if gpu_ids[0] in visible else int(gpu_ids[0])}")


def loader_cpus(assigned: float) -> int:
    """Data-loader processes a rank may run on `assigned` Ray CPUs: the nearest whole number, at least 1.

    A DDP trial's ranks hold their share less the trial process's 0.01 sliver (1.99, 0.99 CPUs):
    truncating gave them one worker too few, or none at 1 CPU per GPU.
    """
    return max(1, math.floor(assigned + 0.5))


def _ray_assigned_cpus() -> int:
    import ray

    return loader_cpus(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))


def worker_context(device: str) -> WorkerContext:
    """Rank and device from Ray Train when inside a worker (Ray made the process group), else local.

    Under Ray the device is what Ray assigned (--device only chooses among GPUs outside Ray). Each DDP
    rank prints one line naming its Ray node: on a cluster that is how a user finds where rank 0 writes.
    """
    if _in_train_worker():
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        world_size = ctx.get_world_size()
        if world_size > 1 and not dist.is_initialized():
            raise RuntimeError("Ray Train worker without a torch process group: launch with TorchTrainer")
        worker = WorkerContext(
            ctx.get_world_rank(),
            world_size,
            ray.train.torch.get_device(),
            "train",
            ctx.get_local_rank(),
            _ray_assigned_cpus(),
            ctx.get_local_world_size(),
        )
        node = ray.get_runtime_context().get_node_id()
        print(f"DDP rank {worker.rank}/{world_size} on Ray node {node}, {worker.device}, pid {os.getpid()}", flush=True)
        return worker
    if _in_tune_trial():
        import ray

        worker = WorkerContext(0, 1, ray_assigned_device(), "tune", 0, _ray_assigned_cpus())
        # in the trial's Ray log: where it ran, on what (benchmarks/gpu_check.py reads it)
        print(
            f"Trial on Ray node {ray.get_runtime_context().get_node_id()}, {worker.device}, pid {os.getpid()}",
            flush=True,
        )
        return worker
    return WorkerContext(0, 1, select_device(device), "plain")


def claim_device(ctx: WorkerContext, memory_fraction: float | None, benchmark: bool) -> None:
    """Make ctx.device this process's current CUDA device, capped at memory_fraction of it.

    Without set_device every rank's stray allocations (and NCCL's) land on cuda:0; a fractional-GPU
    trial shares its device, so the cap keeps one trial from starving its neighbour. benchmark: let
    cuDNN pick the fastest kernels, worth it only when input shapes stay fixed.
    """
    if ctx.device.type != "cuda":
        return
    torch.cuda.set_device(ctx.device)
    if memory_fraction:
        torch.cuda.set_per_process_memory_fraction(float(memory_fraction), ctx.device)
    torch.backends.cudnn.benchmark = benchmark


@contextlib.contextmanager
def local_main_first(ctx: WorkerContext) -> Iterator[None]:
    """Run the body on each node's local rank 0 before the node's other ranks (caches written once per node)."""
    if ctx.distributed and ctx.local_rank != 0:
        dist.barrier()
    yield
    if ctx.distributed and ctx.local_rank == 0:
        dist.barrier()


def broadcast_from_main(obj: Any, ctx: WorkerContext) -> Any:
    """Rank 0's value on every rank (a collective: every rank must call it the same number of times)."""
    if not ctx.distributed:
        return obj
    holder = [obj if ctx.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def report(ctx: WorkerContext, metrics: dict[str, Any]) -> None:
    """Report one validated epoch's metrics to Ray; every Train rank calls this equally often (a barrier).

    Never a Ray checkpoint: weights/ lives in the run directory (on storage every node reaches), and
    copying it into Ray's storage every epoch cost tens of GB per long run without ever being read.
    """
    if ctx.mode == "train":
        import ray.train

        ray.train.report(metrics)
    elif ctx.mode == "tune":
        import ray.tune

        ray.tune.report(metrics)


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
