"""Start one training run: the loop in this process, or N DDP workers under Ray Train.

One worker runs the loop directly in the calling process. Measured on the 2-core dev box: a trivial
train function costs 2.0-2.7 s from process start through direct execution, 21.7 s through ray.init
+ TorchTrainer (4.4 s init, 14.7 s fit), so a single worker never pays for a TorchTrainer.
"""

from __future__ import annotations

import os
from typing import Any

from yolo_ray.config import UserError

# Options that place the run on Ray; the loop itself never sees them.
LAUNCH_KEYS = ("ray_workers", "cpus_per_worker", "gpus_per_worker", "address")


def run_training(opt: dict[str, Any]) -> dict[str, Any]:
    """Train with a TRAIN CONFIG (plus LAUNCH_KEYS) and return rank 0's final results.

    ray_workers == 1 without an address: the loop runs here, no Ray cluster needed. Otherwise a
    TorchTrainer spreads it over ray_workers DDP processes on the cluster at `address` (a local one
    when None), writing Ray Train's state under save_dir.
    """
    config = {k: v for k, v in opt.items() if k not in LAUNCH_KEYS}
    workers = int(opt.get("ray_workers", 1))
    check_worker_split(config["batch_size"], workers, config.get("image_weights", False))
    if workers == 1 and not opt.get("address"):
        from yolo_ray.train.loop import train_loop_per_worker

        return train_loop_per_worker(config)
    return _fit_on_ray(config, workers, opt.get("cpus_per_worker"), opt.get("gpus_per_worker"), opt.get("address"))


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


def default_cpus_per_worker(workers: int) -> float:
    """This machine's cores split over the workers: Ray sets each worker's torch threads from it."""
    return float(max(1, (os.cpu_count() or 1) // workers))


def ray_init_address(address: str | None) -> str | None:
    """What to hand ray.init: the given address, else $RAY_ADDRESS (set in a Ray job), else a new local cluster."""
    if address:
        return address
    return None if os.environ.get("RAY_ADDRESS") else "local"


def _fit_on_ray(config: dict[str, Any], workers: int, cpus: float | None, gpus: float | None,
                address: str | None) -> dict[str, Any]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_init_address(address))
    try:
        return _fit(config, workers, cpus, gpus)
    finally:
        if started_here:
            ray.shutdown()


def make_torch_trainer(config: dict[str, Any], workers: int, cpus: float | None, gpus: float | None,
                       callbacks: tuple = ()):
    """A TorchTrainer running train_loop_per_worker(config) on `workers` DDP processes.

    cpus/gpus are per worker (cpus None: this machine's cores split over the workers). Ray Train's own
    state (reported checkpoints, run metadata) goes to save_dir/ray_train, with the run it belongs to.
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from yolo_ray.train.loop import train_loop_per_worker

    gpus = float(gpus or 0)
    resources = {"CPU": float(cpus) if cpus else default_cpus_per_worker(workers)}
    if gpus:
        resources["GPU"] = gpus
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=resources),
        run_config=RunConfig(storage_path=config["save_dir"], name="ray_train", callbacks=list(callbacks)),
    )


def _fit(config: dict[str, Any], workers: int, cpus: float | None, gpus: float | None) -> dict[str, Any]:
    trainer = make_torch_trainer(config, workers, cpus, gpus)
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

