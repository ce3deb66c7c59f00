"""The training driver: options (or a resumed run's own), the run folder, then the loop in this process
or as N DDP workers under Ray Train. train.py (commands/train.py) and yolo_ray.train() both come here.

Everything is checked before the run folder exists: a start that fails leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_ray.cluster.launch import Launch, check_worker_split, fit_with_retries, make_torch_trainer, prepare_launch
from yolo_ray.cluster.launch import uses_ray
from yolo_ray.cluster.nodes import wait_for_resources
from yolo_ray.cluster.storage import RunUploader, check_storage, download_run, is_uri, next_run_uri, staging_dir
from yolo_ray.config import UserError
from yolo_ray.console import LOGGER, TRAIN_LOG, log_file, log_level, shell_command
from yolo_ray.option_fields import FOLDER, RAY, option_keys
from yolo_ray.options import TrainConfig
from yolo_ray.paths import check_project, create_run_dir, one_driver, resolve_project
from yolo_ray.training.inputs import resolve_inputs
from yolo_ray.training.rundir import (
    find_last_checkpoint,
    load_resume_state,
    resume_checkpoint,
    run_dir_of,
    save_run_files,
)


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: its folder, rank 0's final metrics (P, R, mAP@.5, mAP@.5:.95, val losses,
    fitness, epoch) and its best weights (last.pt when no best.pt was saved)."""

    save_dir: Path
    metrics: dict[str, float]
    best: Path


def fresh_run_options(opt: dict[str, Any]) -> dict[str, Any]:
    """Validate a new run's options and make every path absolute (claim_run_dir makes the folder later)."""
    opt = {**opt, **TrainConfig.from_options(opt).to_dict()}  # coerced and range-checked
    check_worker_split(opt["batch_size"], opt["ray_workers"], opt["image_weights"])
    if not uses_ray(opt):
        from yolo_ray.cluster.session import select_device  # torch: only once the cheap checks passed

        select_device(opt["device"])  # this process trains: its device must exist
    resolve_inputs(opt)
    if opt["name"] == "cfg" and opt["cfg"]:
        opt["name"] = Path(opt["cfg"]).stem
    storage = opt.pop("storage_path", None)
    if storage and not is_uri(storage):  # a local or NFS path is just where runs go
        opt["project"] = storage
    if is_uri(storage):
        check_storage(storage)
    opt["storage_uri"] = next_run_uri(storage, opt["name"], opt["exist_ok"]) if is_uri(storage) else None
    opt["project"] = str(check_project(opt["project"], opt["name"]))
    opt["save_dir"] = None
    opt["resume"] = None
    return opt


def claim_run_dir(opt: dict[str, Any]) -> None:
    """Claim project/name (or the next free nameN) and write opt.yaml and hyp.yaml into it.

    With a storage URI the run is STORAGE/name there, staged in a local folder and uploaded as it goes.
    """
    if opt.get("storage_uri"):
        opt["save_dir"] = str(staging_dir(opt["storage_uri"]))
        Path(opt["save_dir"]).mkdir(parents=True, exist_ok=True)
        save_run_files(opt["save_dir"], opt, opt["hyp"])
        RunUploader(opt["save_dir"], opt["storage_uri"]).upload()
        return
    opt["save_dir"] = str(create_run_dir(opt["project"], opt["name"], opt["exist_ok"]))
    save_run_files(opt["save_dir"], opt, opt["hyp"])


def resume_options(resume: str | bool, project: str, epochs: int | None = None) -> dict[str, Any] | None:
    """The options of the run being resumed (as upstream: all of them, from its opt.yaml); None when
    it is finished and there is nothing to do.

    `epochs` (--epochs given with --resume) above the run's own total trains on: a run with optimizer
    state continues to that total; a finished run (last.pt stripped at the end of training) fine-tunes
    its final weights for the extra epochs in a new run directory, leaving its results untouched.
    """
    if resume is True:
        last = find_last_checkpoint(resolve_project(project))
    else:
        last = resume_checkpoint(resume)
    saved, last_epoch = load_resume_state(last)
    # an older run's opt.yaml lacks the newer options: their defaults fill in
    opt = {**TrainConfig().to_dict(), **saved}
    total, save_dir = int(opt["epochs"]), run_dir_of(last)
    train_on = epochs is not None and epochs > total
    if last_epoch < 0:  # stripped: the end-of-training steps ran and no optimizer state is left
        if not train_on:
            LOGGER.info(
                f"{last}: training to {total} epochs is finished, nothing to resume. Results are in "
                f"{save_dir} (results.csv, weights/best.pt); add --epochs N (N > {total}) to train on."
            )
            return None
        LOGGER.info(f"{last}: finished {total} epochs; fine-tuning its weights for {epochs - total} more in a new run")
        opt.update(weights=str(last), cfg=None, epochs=epochs - total, exist_ok=False)
        return fresh_run_options(opt)
    if train_on:
        opt["epochs"] = epochs
    # The model comes from the checkpoint (its yaml and possibly AutoAnchor-refit anchors), not a cfg.
    opt.update(weights=str(last), cfg=None, resume=str(last), save_dir=str(save_dir))
    start_epoch = last_epoch + 1
    if start_epoch >= opt["epochs"]:  # killed after its last epoch: upstream goes to the end-of-training steps
        LOGGER.info(
            f"{last}: all {opt['epochs']} epochs are trained; finishing the run (slim weights, validate best.pt)"
        )
    else:
        LOGGER.info(f"Resuming training from {last} at epoch {start_epoch} of {opt['epochs']}")
    return opt


def run_options(opt: dict[str, Any]) -> dict[str, Any] | None:
    """A new run's options resolved, or (--resume) the resumed run's own on the cluster this command names;
    None when a resumed run has nothing left to do. opt["epochs"] None: not given (--resume keeps the run's)."""
    if not opt["resume"]:
        return fresh_run_options({**opt, "epochs": TrainConfig().epochs if opt["epochs"] is None else opt["epochs"]})
    resume, run_uri = _fetch_stored_run(opt["resume"])
    resumed = resume_options(resume, opt["project"], opt["epochs"])
    if resumed is None:
        return None
    resumed["address"] = opt["address"]
    if run_uri and resumed["resume"]:  # each node's rank downloads the run from there, not from our copy
        resumed["storage_uri"] = run_uri
    return resumed


def train_run(opt: dict[str, Any]) -> TrainResult | None:
    """Train as opt says (TrainConfig keys; epochs None when not given): resolve or resume, claim the run
    folder, train, print the final metrics. None when a resumed run has nothing left to do."""
    opt = run_options(opt)
    if opt is None:
        return None
    with contextlib.ExitStack() as held:
        if opt["save_dir"]:  # a resume: refused now if another train.py is running the same run
            held.enter_context(one_driver(Path(opt["save_dir"]), "train.py"))
        shared_dir = None if opt.get("storage_uri") else opt["save_dir"] or opt["project"]
        launch = prepare_launch(opt, shared_dir=shared_dir)
        if not opt["save_dir"]:
            claim_run_dir(opt)
            held.enter_context(one_driver(Path(opt["save_dir"]), "train.py"))
        with log_file(Path(opt["save_dir"]) / TRAIN_LOG):
            LOGGER.info(f"Run directory: {opt['save_dir']}")
            folder_keys = option_keys(TrainConfig, FOLDER)
            config = {k: v for k, v in opt.items() if k not in folder_keys}
            results = run_training({**config, "log_level": log_level()}, launch)
            LOGGER.info(_final_message(opt, results))
    save_dir = Path(opt["save_dir"])
    return TrainResult(save_dir, dict(results or {}), _best_weights(save_dir))


def run_training(opt: dict[str, Any], launch: Launch | None = None) -> dict[str, Any] | None:
    """Run the loop with a resolved run's options (the Ray options included) and return rank 0's final results.

    Without Ray the loop runs right here. Otherwise a TorchTrainer spreads it over the placement's DDP
    workers, restarting from the run's own last.pt after up to max_failures worker or node failures.
    """
    from yolo_ray.training.loop import train_loop_per_worker

    launch = launch or prepare_launch(opt)
    ray_keys = option_keys(TrainConfig, RAY)
    config = {k: v for k, v in opt.items() if k not in ray_keys}
    if launch.placement is None:
        return train_loop_per_worker(config)
    config.update(run_id=uuid.uuid4().hex, gpu_memory_fraction=launch.placement.gpu_memory_fraction)
    name = Path(config["save_dir"]).name

    def attempt_trainer(attempt: int):
        # before every attempt: a restart after a lost node may have to wait for the autoscaler to replace it
        wait_for_resources(launch.placement, list(launch.nodes), launch.placement_timeout_s, "the training run")
        return make_torch_trainer(
            train_loop_per_worker,
            {**config, "attempt": attempt},
            launch.placement,
            name=name if not attempt else f"{name}-{attempt}",
            placement_timeout_s=launch.placement_timeout_s,
        )

    try:
        return fit_with_retries(attempt_trainer, max_failures=int(opt.get("max_failures") or 0))
    finally:
        if launch.connected_here:
            import ray

            ray.shutdown()


def _fetch_stored_run(resume: str | bool) -> tuple[str | bool, str | None]:
    """(what to resume, its storage URI): --resume STORAGE_URI/name (or .../weights/last.pt) is copied
    here to read its options, and resumed from the copy each node makes of the URI."""
    if not is_uri(resume):
        return resume, None
    run_uri = str(resume).rstrip("/")
    if run_uri.endswith(".pt"):
        run_uri = run_uri.rsplit("/", 2)[0]
    check_storage(run_uri, "--resume")
    local = staging_dir(run_uri)
    if not download_run(run_uri, local):
        raise UserError(f"{run_uri}: no stored run there to resume")
    return str(local / "weights" / "last.pt"), run_uri


def _best_weights(save_dir: Path) -> Path:
    best = save_dir / "weights" / "best.pt"
    return best if best.is_file() else save_dir / "weights" / "last.pt"


def _final_message(opt: dict[str, Any], results: dict[str, Any] | None) -> str:
    """The final metrics and the commands that use the trained weights (the loop said where results are)."""
    save_dir = Path(opt["save_dir"])
    lines = []
    if results:
        lines.append("Final: " + ", ".join(f"{k}={float(v):.4g}" for k, v in results.items()))
    if opt.get("storage_uri"):
        lines.append(f"Local copy of the run: {save_dir}")
    weights = _best_weights(save_dir)
    from yolo_ray.data.synthetic import default_data_yaml  # the built-in data needs no --data

    data = [] if Path(opt["data"]) == default_data_yaml() else ["--data", Path(opt["data"])]
    lines.append(f"Validate: {shell_command('val.py', '--weights', weights, *data, '--imgsz', opt['imgsz'])}")
    lines.append(f"Train on: {shell_command('train.py', '--weights', weights, *data, '--imgsz', opt['imgsz'])}")
    return "\n".join(lines)
