"""Train a YOLOv5 detector: in this process, or as N DDP workers under Ray Train.

    python scripts/train.py --cfg yolov5n.yaml --epochs 3 --imgsz 160            # built-in data
    python scripts/train.py --data coco128.yaml --weights runs/train/exp/weights/best.pt
    python scripts/train.py --cfg yolov5s.yaml --ray-workers 2 --batch-size 32   # DDP via Ray Train
    python scripts/train.py --resume                                             # newest last.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# Import the package beside this script: a Ray job runs a temporary copy of the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.cli import (  # noqa: E402
    OneLineParser, add_console_options, add_training_options, check_range, check_training_numbers, default_model,
    start_logging,
)
from yolo_ray.config import UserError, load_hyp  # noqa: E402
from yolo_ray.console import LOGGER, TRAIN_LOG, log_file, log_level, shell_command  # noqa: E402
from yolo_ray.cluster.launch import check_worker_split, prepare_launch, run_training, uses_ray  # noqa: E402
from yolo_ray.cluster.storage import RunUploader, download_run, is_uri, next_run_uri, staging_dir  # noqa: E402
from yolo_ray.paths import check_project, create_run_dir, resolve_project  # noqa: E402
from yolo_ray.training.rundir import find_last_checkpoint, load_resume_state, run_dir_of, save_run_files  # noqa: E402

# Options that only say where the run directory goes; the loop never needs them.
RUN_DIR_KEYS = ("project", "name", "exist_ok", "storage_path")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Train YOLOv5 (v7.0-compatible) on Ray.")
    add_training_options(p)
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="resume the most recent last.pt under --project, or the given last.pt")
    p.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    p.add_argument("--noval", action="store_true", help="only validate final epoch")
    p.add_argument("--noplots", action="store_true", help="save no plot files")
    p.add_argument("--project", default="runs/train", help="save to project/name")
    p.add_argument("--name", default="exp", help="save to project/name ('cfg' = the cfg file's stem)")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--storage-path", default=None,
                   help="keep the run at this storage URI (s3://, gs://, file://): STORAGE/name, uploaded as it goes")
    p.add_argument("--patience", type=int, default=100, help="EarlyStopping patience (epochs without improvement)")
    p.add_argument("--save-period", type=int, default=-1, help="save checkpoint every x epochs (disabled if < 1)")
    p.add_argument("--seed", type=int, default=0, help="global training seed")
    ray = p.add_argument_group("Ray")
    ray.add_argument("--ray-workers", type=int, default=1, help="Ray Train workers = DDP processes (1: no Ray)")
    ray.add_argument("--cpus-per-worker", type=float, default=None,
                     help="CPUs per worker (default: from the cluster's nodes, the most that fits all workers)")
    ray.add_argument("--gpus-per-worker", type=float, default=None,
                     help="GPUs per worker (default: 1 if the cluster has GPUs, else 0; more than 1 becomes that "
                          "many DDP workers)")
    ray.add_argument("--max-failures", type=int, default=3,
                     help="worker or node failures a Ray run survives, restarting from its last.pt")
    ray.add_argument("--address", default=None,
                     help="Ray cluster to join ('auto' = the running one); default: no Ray for 1 worker, "
                          "a local cluster for more")
    ray.add_argument("--placement-timeout", type=float, default=900,
                     help="seconds to wait for the workers' resources (an autoscaler adding GPU nodes) before an error")
    add_console_options(p)
    return p


def fresh_run_options(opt: dict[str, Any]) -> dict[str, Any]:
    """Validate a new run's options and make every path absolute (claim_run_dir makes the folder later).

    Everything is checked before the directory exists: a start that fails leaves nothing behind.
    """
    check_training_numbers(opt)
    check_range("patience", opt["patience"], 0)
    check_range("placement-timeout", opt["placement_timeout"], 0, low_open=True)
    for option in ("cpus_per_worker", "gpus_per_worker"):
        if opt[option] is not None:
            check_range(option.replace("_", "-"), opt[option], 0)
    check_worker_split(opt["batch_size"], opt["ray_workers"], opt["image_weights"])
    from yolo_ray.official import weights_option
    from yolo_ray.training.model_setup import train_image_size  # torch: only once the cheap checks passed
    from yolo_ray.cluster.session import select_device
    from yolo_ray.training.trackers import tracker_settings

    opt["weights"] = weights_option(opt["weights"])
    opt["cfg"] = _model_cfg(opt["cfg"])
    opt["cfg"], opt["weights"], chosen = default_model(opt["data"], opt["cfg"], opt["weights"])
    if chosen:
        LOGGER.info(chosen)
    if not uses_ray(opt):
        select_device(opt["device"])  # this process trains: its device must exist
    opt["imgsz"] = train_image_size(opt["cfg"], opt["weights"], opt["imgsz"])
    opt["hyp"] = load_hyp(opt["hyp"])
    opt["trackers"] = tracker_settings(opt.get("trackers"))  # absent from the opt.yaml of older runs
    opt["cwd"] = opt.get("cwd") or str(Path.cwd())  # a relative data `path:` may mean this; workers run elsewhere
    opt["data"] = _data_yaml(opt["data"], opt["hyp"], opt["single_cls"], opt["cwd"])
    if opt["name"] == "cfg" and opt["cfg"]:
        opt["name"] = Path(opt["cfg"]).stem
    storage = opt.pop("storage_path", None)
    if storage and not is_uri(storage):  # a local or NFS path is just where runs go
        opt["project"] = storage
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
        last = Path(resume).expanduser().resolve()
        if not last.is_file():
            raise UserError(f"{last}: --resume checkpoint not found")
    opt, last_epoch = load_resume_state(last)
    total, save_dir = int(opt["epochs"]), run_dir_of(last)
    train_on = epochs is not None and epochs > total
    if last_epoch < 0:  # stripped: the end-of-training steps ran and no optimizer state is left
        if not train_on:
            LOGGER.info(f"{last}: training to {total} epochs is finished, nothing to resume. Results are in "
                  f"{save_dir} (results.csv, weights/best.pt); add --epochs N (N > {total}) to train on.")
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
        LOGGER.info(f"{last}: all {opt['epochs']} epochs are trained; finishing the run "
                    "(slim weights, validate best.pt)")
    else:
        LOGGER.info(f"Resuming training from {last} at epoch {start_epoch} of {opt['epochs']}")
    return opt


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        # epochs=None in the namespace: argparse keeps it unless --epochs is given, which --resume needs to know
        opt = vars(parser.parse_args(argv, namespace=argparse.Namespace(epochs=None)))
        start_logging(opt)
        if opt["resume"]:  # the run's own options, on the cluster this command names
            address = opt["address"]
            resume, run_uri = _fetch_stored_run(opt["resume"])
            opt = resume_options(resume, opt["project"], opt["epochs"])
            if opt is None:
                return 0
            opt["address"] = address
            if run_uri and opt["resume"]:  # each node's rank downloads the run from there, not from our copy
                opt["storage_uri"] = run_uri
        else:
            opt["epochs"] = parser.get_default("epochs") if opt["epochs"] is None else opt["epochs"]
            opt = fresh_run_options(opt)
        shared_dir = None if opt.get("storage_uri") else opt["save_dir"] or opt["project"]
        launch = prepare_launch(opt, shared_dir=shared_dir)
        if not opt["save_dir"]:
            claim_run_dir(opt)
        with log_file(Path(opt["save_dir"]) / TRAIN_LOG):
            LOGGER.info(f"Run directory: {opt['save_dir']}")
            config = {k: v for k, v in opt.items() if k not in RUN_DIR_KEYS}
            results = run_training({**config, "log_level": log_level()}, launch)
            LOGGER.info(_final_message(opt, results))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _fetch_stored_run(resume: str | bool) -> tuple[str | bool, str | None]:
    """(what to resume, its storage URI): --resume STORAGE_URI/name (or .../weights/last.pt) is copied
    here to read its options, and resumed from the copy each node makes of the URI."""
    if not is_uri(resume):
        return resume, None
    run_uri = str(resume).rstrip("/")
    if run_uri.endswith(".pt"):
        run_uri = run_uri.rsplit("/", 2)[0]
    local = staging_dir(run_uri)
    if not download_run(run_uri, local):
        raise UserError(f"{run_uri}: no stored run there to resume")
    return str(local / "weights" / "last.pt"), run_uri


def _data_yaml(data: str | None, hyp: dict[str, float], single_cls: bool, cwd: str) -> str:
    from yolo_ray.data import check_training_data, load_data_config
    from yolo_ray.data.fetch import data_option

    if data is None:
        from yolo_ray.data.synthetic import default_data_yaml

        return str(default_data_yaml())  # generated and known to be good
    data = data_option(data)  # a shipped name (coco128.yaml) stays a name: each node finds its own copy
    # fail now, with the file named, rather than inside a worker after the run folder exists (downloads it here)
    check_training_data(load_data_config(data, cwd), hyp, single_cls)
    return data


def _model_cfg(cfg: str) -> str | None:
    if not cfg:
        return None
    path = Path(cfg).expanduser()
    return str(path.resolve()) if path.is_file() else cfg  # otherwise a shipped name like yolov5s


def _final_message(opt: dict[str, Any], results: dict[str, Any] | None) -> str:
    """The final metrics and the commands that use the trained weights (the loop said where results are)."""
    save_dir = Path(opt["save_dir"])
    lines = []
    if results:
        lines.append("Final: " + ", ".join(f"{k}={float(v):.4g}" for k, v in results.items()))
    if opt.get("storage_uri"):
        lines.append(f"Local copy of the run: {save_dir}")
    weights = save_dir / "weights" / "best.pt"
    if not weights.is_file():
        weights = save_dir / "weights" / "last.pt"
    from yolo_ray.data.synthetic import default_data_yaml  # the built-in data needs no --data

    data = [] if Path(opt["data"]) == default_data_yaml() else ["--data", Path(opt["data"])]
    lines.append(f"Validate: {shell_command('val.py', '--weights', weights, *data, '--imgsz', opt['imgsz'])}")
    lines.append(f"Train on: {shell_command('train.py', '--weights', weights, *data, '--imgsz', opt['imgsz'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
