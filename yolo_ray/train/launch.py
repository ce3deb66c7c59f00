"""Start one training run: the loop in this process, or N DDP workers under Ray Train.

One worker runs the loop directly in the calling process. Measured on the 2-core dev box: a trivial
train function costs 2.0-2.7 s from process start through direct execution, 21.7 s through ray.init
+ TorchTrainer (4.4 s init, 14.7 s fit), so a single worker on its own machine never pays for a
TorchTrainer; on a cluster (an address, a Ray job) even one worker goes through Ray, so that it
trains on the GPU Ray placed it on rather than on whatever the driver's machine has.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_ray.config import UserError
from yolo_ray.train.cluster import connect, verify_nodes_see
from yolo_ray.train.placement import Placement, cluster_nodes, plan_placement

# Options that place the run on Ray; the loop itself never sees them.
LAUNCH_KEYS = ("ray_workers", "cpus_per_worker", "gpus_per_worker", "address", "max_failures")
# NCCL/gloo collectives wait this long: rank 0 alone builds caches, validates and saves while the
# other ranks sit in the next collective (upstream allows 3 h; Ray's default of 30 min kills big runs).
COLLECTIVE_TIMEOUT_S = 3 * 3600


@dataclass(frozen=True)
class Launch:
    """How a run executes: in this process (placement None) or on Ray with this placement."""

    placement: Placement | None = None
    connected_here: bool = False  # this process joined Ray for the run and leaves it afterwards


def device_gpus(device: str) -> int:
    """How many CUDA devices --device names ('0,1' -> 2; '', 'cpu' or one index -> 0 or 1)."""
    device = str(device).strip().lower().replace("cuda:", "")
    return len([d for d in device.split(",") if d.strip().isdigit()])


def uses_ray(opt: dict[str, Any]) -> bool:
    """Whether a run goes through Ray: several workers or GPUs, a cluster address, or inside a Ray job
    (where the job's driver holds no GPU and may sit on a CPU-only head)."""
    gpus = opt.get("gpus_per_worker") or 0
    return (int(opt.get("ray_workers", 1)) > 1 or bool(opt.get("address")) or bool(os.environ.get("RAY_ADDRESS"))
            or device_gpus(opt.get("device", "")) > 1 or gpus > 1)


def prepare_launch(opt: dict[str, Any], shared_dir: str | Path | None = None) -> Launch:
    """Join Ray if the run needs it, decide its placement and check every node sees shared_dir and the inputs.

    Runs before the run directory exists, so a run that cannot start leaves nothing behind.
    """
    check_worker_split(opt["batch_size"], int(opt.get("ray_workers", 1)), opt.get("image_weights", False))
    if not uses_ray(opt):
        return Launch()
    from yolo_ray.data.synthetic import data_every_node_needs  # OpenCV: only for runs that go through Ray
    workers = int(opt.get("ray_workers", 1))
    listed = device_gpus(opt.get("device", ""))
    gpus = opt.get("gpus_per_worker")
    gpus = gpus * workers if gpus is not None else (float(listed) if listed > 1 else None)
    cpus = opt.get("cpus_per_worker")
    connected = connect(opt.get("address"), visible_gpus=opt["device"] if listed > 1 else None)
    try:
        placement = plan_placement(cluster_nodes(), workers=workers, gpus=gpus, device=opt.get("device", ""),
                                   cpus=cpus * workers if cpus else None, single_run=True,
                                   what="--gpus-per-worker" if opt.get("gpus_per_worker") is not None else "--device")
        check_worker_split(opt["batch_size"], placement.workers, opt.get("image_weights", False))
        verify_nodes_see(shared_dir, [opt.get("weights"), opt.get("resume"), data_every_node_needs(opt.get("data"))])
    except BaseException:
        if connected:
            import ray

            ray.shutdown()
        raise
    print(f"Ray placement: {placement.describe()}", flush=True)
    return Launch(placement, connected)


def run_training(opt: dict[str, Any], launch: Launch | None = None) -> dict[str, Any]:
    """Train with a TRAIN CONFIG (plus LAUNCH_KEYS) and return rank 0's final results.

    Without Ray the loop runs right here. Otherwise a TorchTrainer spreads it over the placement's DDP
    workers, restarting from the run's own last.pt after up to max_failures worker or node failures.
    """
    launch = launch or prepare_launch(opt)
    config = {k: v for k, v in opt.items() if k not in LAUNCH_KEYS}
    if launch.placement is None:
        from yolo_ray.train.loop import train_loop_per_worker

        return train_loop_per_worker(config)
    config.update(run_id=uuid.uuid4().hex, gpu_memory_fraction=launch.placement.gpu_memory_fraction)
    try:
        trainer = make_torch_trainer(config, launch.placement, max_failures=int(opt.get("max_failures") or 0),
                                     name=Path(config["save_dir"]).name)
        return _fit(trainer)
    finally:
        if launch.connected_here:
            import ray

            ray.shutdown()


def check_worker_split(batch_size: int, workers: int, image_weights: bool = False) -> None:
    """The DDP constraints upstream asserts, as user errors."""
    if workers < 1:
        raise UserError(f"--ray-workers must be at least 1, got {workers}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size} (AutoBatch is not supported)")
    if batch_size % workers:
        raise UserError(f"--batch-size {batch_size} must be a multiple of --ray-workers {workers}")
    if image_weights and workers > 1:
        raise UserError("--image-weights is not compatible with DDP training (--ray-workers > 1)")


def make_torch_trainer(config: dict[str, Any], placement: Placement, callbacks: tuple = (), max_failures: int = 0,
                       name: str = "ray_train"):
    """A TorchTrainer running train_loop_per_worker(config) on the placement's DDP workers.

    Ray Train's own records go to save_dir/ray_train: metrics and run metadata only, never weights
    (the loop reports no Ray checkpoints). `name` is what the Ray dashboard's Train view shows.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from yolo_ray.train.loop import train_loop_per_worker

    resources = {"CPU": placement.cpus_per_worker}
    if placement.gpus_per_worker:
        resources["GPU"] = placement.gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        torch_config=TorchConfig(timeout_s=COLLECTIVE_TIMEOUT_S),
        scaling_config=ScalingConfig(num_workers=placement.workers, use_gpu=placement.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(storage_path=str(Path(config["save_dir"]) / "ray_train"), name=name,
                             callbacks=list(callbacks), failure_config=FailureConfig(max_failures=max_failures)),
    )


def _fit(trainer) -> dict[str, Any]:
    try:
        result = trainer.fit()
    except Exception as e:  # Ray wraps worker errors; a user error inside still deserves one clean line
        user_error = _find_user_error(e)
        if user_error is not None:
            raise UserError(str(user_error)) from None
        raise
    # Train V2 hands back what rank 0's train function returned; Result.metrics would be None here
    # unless a checkpoint had been reported.
    return result.return_value


def _find_user_error(error: BaseException) -> UserError | None:
    """The UserError a worker raised, looked for in Ray's wrappers and their causes."""
    pending = [error]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError):
            return e
        pending.extend(getattr(e, "worker_failures", {}).values())
        pending.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return None

