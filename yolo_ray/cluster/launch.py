"""Where one training run executes: the loop in this process, or N DDP workers under Ray Train.

One worker runs the loop directly in the calling process. Measured on the 2-core dev box: a trivial
train function costs 2.0-2.7 s from process start through direct execution, 21.7 s through ray.init
+ TorchTrainer (4.4 s init, 14.7 s fit), so a single worker on its own machine never pays for a
TorchTrainer; on a cluster (an address, a Ray job) even one worker goes through Ray, so that it
trains on the GPU Ray placed it on rather than on whatever the driver's machine has.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_ray.config import UserError, write_refused
from yolo_ray.cluster.nodes import (
    PLACEMENT_TIMEOUT_S,
    cluster_nodes,
    connect,
    files_every_node_needs,
    verify_nodes_see,
)
from yolo_ray.cluster.placement import Node, Placement, plan_placement
from yolo_ray.console import LOGGER

# NCCL/gloo collectives wait this long: rank 0 alone builds caches, validates and saves while the
# other ranks sit in the next collective (upstream allows 3 h; Ray's default of 30 min kills big runs).
COLLECTIVE_TIMEOUT_S = 3 * 3600
# Errors that come back on every attempt: bugs and bad values, unless a lost worker or node caused them.
DETERMINISTIC_ERRORS = (
    TypeError,
    KeyError,
    AttributeError,
    ValueError,
    NameError,
    IndexError,
    AssertionError,
    NotImplementedError,
    ZeroDivisionError,
    ImportError,
)
# What a failing peer or storage leaves in the survivors: a retry on new workers can succeed.
RETRYABLE_ERRORS = (OSError, ConnectionError, TimeoutError, EOFError)


@dataclass(frozen=True)
class Launch:
    """How a run executes: in this process (placement None) or on Ray with this placement."""

    placement: Placement | None = None
    connected_here: bool = False  # this process joined Ray for the run and leaves it afterwards
    nodes: tuple[Node, ...] = ()  # the cluster's nodes, live and those its autoscaler may add
    placement_timeout_s: float = PLACEMENT_TIMEOUT_S


def device_gpus(device: str) -> int:
    """How many CUDA devices --device names ('0,1' -> 2; '', 'cpu' or one index -> 0 or 1)."""
    device = str(device).strip().lower().replace("cuda:", "")
    return len([d for d in device.split(",") if d.strip().isdigit()])


def uses_ray(opt: dict[str, Any]) -> bool:
    """Whether a run goes through Ray: several workers or GPUs, a cluster address, or inside a Ray job
    (where the job's driver holds no GPU and may sit on a CPU-only head)."""
    gpus = opt.get("gpus_per_worker") or 0
    return (
        int(opt.get("ray_workers", 1)) > 1
        or bool(opt.get("address"))
        or bool(os.environ.get("RAY_ADDRESS"))
        or device_gpus(opt.get("device", "")) > 1
        or gpus > 1
    )


def prepare_launch(opt: dict[str, Any], shared_dir: str | Path | None = None) -> Launch:
    """Join Ray if the run needs it, decide its placement and check every node sees shared_dir and the inputs.

    Runs before the run directory exists, so a run that cannot start leaves nothing behind.
    """
    check_worker_split(opt["batch_size"], int(opt.get("ray_workers", 1)), opt.get("image_weights", False))
    if not uses_ray(opt):
        return Launch()
    workers = int(opt.get("ray_workers", 1))
    listed = device_gpus(opt.get("device", ""))
    gpus = opt.get("gpus_per_worker")
    gpus = gpus * workers if gpus is not None else (float(listed) if listed > 1 else None)
    cpus = opt.get("cpus_per_worker")
    connected = connect(opt.get("address"), visible_gpus=opt["device"] if listed > 1 else None)
    try:
        nodes = cluster_nodes()
        placement = plan_placement(
            nodes,
            workers=workers,
            gpus=gpus,
            device=opt.get("device", ""),
            cpus=cpus * workers if cpus else None,
            single_run=True,
            what="--gpus-per-worker" if opt.get("gpus_per_worker") is not None else "--device",
        )
        check_worker_split(opt["batch_size"], placement.workers, opt.get("image_weights", False))
        verify_nodes_see(shared_dir, files_every_node_needs(opt), placement)
    except BaseException:
        if connected:
            import ray

            ray.shutdown()
        raise
    LOGGER.info(f"Ray placement: {placement.describe()}")
    timeout = opt.get("placement_timeout")
    return Launch(placement, connected, tuple(nodes), PLACEMENT_TIMEOUT_S if timeout is None else float(timeout))


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


def make_torch_trainer(
    train_fn: Callable[[dict[str, Any]], Any],
    config: dict[str, Any],
    placement: Placement,
    callbacks: tuple = (),
    name: str = "ray_train",
    placement_timeout_s: float = PLACEMENT_TIMEOUT_S,
):
    """A TorchTrainer running train_fn(config) (the training loop) on the placement's DDP workers, once.

    Ray Train's own records go to save_dir/ray_train: metrics and run metadata only, never weights
    (the loop reports no Ray checkpoints). `name` is what the Ray dashboard's Train view shows.
    Ray retries nothing itself (fit_with_retries decides what a retry can fix), and waits for its workers'
    placement only about placement_timeout_s (its own retries of a startup timeout are otherwise endless).
    Workers that fit on one node are kept on one node (PACK alone may split them over the network).
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = {"CPU": placement.cpus_per_worker}
    if placement.gpus_per_worker:
        resources["GPU"] = placement.gpus_per_worker
    return TorchTrainer(
        train_fn,
        train_loop_config=config,
        torch_config=TorchConfig(timeout_s=COLLECTIVE_TIMEOUT_S),
        scaling_config=ScalingConfig(
            num_workers=placement.workers,
            use_gpu=placement.gpus_per_worker > 0,
            resources_per_worker=resources,
            placement_strategy="STRICT_PACK" if placement.one_node else "PACK",
        ),
        run_config=RunConfig(
            storage_path=str(Path(config["save_dir"]) / "ray_train"),
            name=name,
            callbacks=list(callbacks),
            failure_config=FailureConfig(
                max_failures=0, controller_failure_limit=_startup_retries(placement_timeout_s)
            ),
        ),
    )


def _startup_retries(placement_timeout_s: float) -> int:
    from ray.train.v2._internal.constants import (
        DEFAULT_WORKER_GROUP_START_TIMEOUT_S,
        WORKER_GROUP_START_TIMEOUT_S_ENV_VAR,
    )

    start_timeout = float(os.environ.get(WORKER_GROUP_START_TIMEOUT_S_ENV_VAR, DEFAULT_WORKER_GROUP_START_TIMEOUT_S))
    return max(1, math.ceil(placement_timeout_s / start_timeout))


def fit_with_retries(make_trainer: Callable[[int], Any], max_failures: int) -> dict[str, Any] | None:
    """Fit make_trainer(attempt) and return rank 0's return value, again after a failure a retry can fix.

    A lost worker or node, a collective broken by it, a storage hiccup: up to max_failures new
    attempts, each restarting from the run's own last.pt. An error that would only happen again (bad
    input, CUDA out of memory at this batch size, a bug) ends the run at once with one line, rather
    than repeating label scans, caches and AutoAnchor max_failures times first.
    """
    for attempt in range(max_failures + 1):
        try:
            # Train V2 hands back what rank 0's train function returned; Result.metrics would be None here
            # unless a checkpoint had been reported.
            return make_trainer(attempt).fit().return_value
        except Exception as e:  # Ray wraps worker errors; what is inside decides
            final = deterministic_error(e)
            if final is not None:
                raise final from None
            if attempt == max_failures:
                raise
            LOGGER.info(f"Ray Train run failed ({_first_line(e)}); retry {attempt + 1}/{max_failures} from its last.pt")
    return None


def deterministic_error(error: BaseException) -> UserError | None:
    """The error a retry would only repeat, as one UserError line; None when a retry may succeed."""
    causes = _causes(error)
    user = next((e for e in causes if isinstance(e, UserError)), None)
    if user is not None:
        return UserError(str(user))
    refused = next((r for r in map(write_refused, causes) if r is not None), None)
    if refused is not None:
        return refused
    if any(_is_out_of_memory(e) for e in causes):
        return UserError(
            "CUDA out of memory in training: lower --batch-size (or --imgsz); "
            "a retry at the same size would fail the same way"
        )
    bug = next((e for e in causes if isinstance(e, DETERMINISTIC_ERRORS)), None)
    if bug is not None and not any(isinstance(e, RETRYABLE_ERRORS) for e in causes):
        return None if _lost_worker(causes) else _as_user_error(bug)
    return None


def _as_user_error(error: BaseException) -> UserError:
    return UserError(
        f"training failed with {type(error).__name__}: {_first_line(error)} "
        "(not retried: it would fail the same way again; the worker log has the traceback)"
    )


def _lost_worker(causes: list[BaseException]) -> bool:
    import ray.exceptions

    return any(
        isinstance(e, (ray.exceptions.RayActorError, ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError))
        for e in causes
    )


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "CUDA out of memory" in str(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def _causes(error: BaseException) -> list[BaseException]:
    """error and everything inside it: Ray's wrappers (worker_failures, cause), __cause__, __context__."""
    found: list[BaseException] = []
    pending = [error]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        found.append(e)
        pending.extend(getattr(e, "worker_failures", {}).values())
        pending.extend([getattr(e, "cause", None), getattr(e, "controller_failure", None), e.__cause__, e.__context__])
    return found
