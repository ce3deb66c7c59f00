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

from yolo_ray.cli import OneLineParser, add_training_options, check_range, check_training_numbers  # noqa: E402
from yolo_ray.config import UserError, load_hyp  # noqa: E402
from yolo_ray.train.launch import check_worker_split, run_training  # noqa: E402
from yolo_ray.train.rundir import (  # noqa: E402
    create_run_dir, find_last_checkpoint, load_resume_state, resolve_project, run_dir_of, save_run_files,
)

# Options that only say where the run directory goes; the loop never needs them.
RUN_DIR_KEYS = ("project", "name", "exist_ok")


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
    p.add_argument("--patience", type=int, default=100, help="EarlyStopping patience (epochs without improvement)")
    p.add_argument("--save-period", type=int, default=-1, help="save checkpoint every x epochs (disabled if < 1)")
    p.add_argument("--seed", type=int, default=0, help="global training seed")
    ray = p.add_argument_group("Ray")
    ray.add_argument("--ray-workers", type=int, default=1, help="Ray Train workers = DDP processes (1: no Ray)")
    ray.add_argument("--cpus-per-worker", type=float, default=None, help="CPUs per worker (default: cores / workers)")
    ray.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per worker (default: 1 if CUDA else 0)")
    ray.add_argument("--address", default=None,
                     help="Ray cluster to join ('auto' = the running one); default: no Ray for 1 worker, "
                          "a local cluster for more")
    return p


def fresh_run_options(opt: dict[str, Any]) -> dict[str, Any]:
    """Validate a new run's options, make every path absolute, then create its run directory.

    Everything is checked before the directory exists: a start that fails leaves nothing behind.
    """
    check_training_numbers(opt)
    check_range("patience", opt["patience"], 0)
    for option in ("cpus_per_worker", "gpus_per_worker"):
        if opt[option] is not None:
            check_range(option.replace("_", "-"), opt[option], 0)
    check_worker_split(opt["batch_size"], opt["ray_workers"], opt["image_weights"])
    from yolo_ray.train.model_setup import train_image_size  # torch: only once the cheap checks passed
    from yolo_ray.train.session import select_device

    opt["weights"] = _weights_file(opt["weights"])
    opt["cfg"] = _model_cfg(opt["cfg"])
    if not opt["cfg"] and not opt["weights"]:
        raise UserError("either --cfg or --weights must be specified (e.g. --cfg yolov5n.yaml)")
    if opt["ray_workers"] == 1 and not opt["address"]:
        select_device(opt["device"])  # this process trains: its device must exist
    opt["imgsz"] = train_image_size(opt["cfg"], opt["weights"], opt["imgsz"])
    opt["hyp"] = load_hyp(opt["hyp"])
    opt["data"] = str(_data_yaml(opt["data"], opt["hyp"], opt["single_cls"]))
    if opt["name"] == "cfg" and opt["cfg"]:
        opt["name"] = Path(opt["cfg"]).stem
    opt["project"] = str(resolve_project(opt["project"]))
    opt["save_dir"] = str(create_run_dir(opt["project"], opt["name"], opt["exist_ok"]))
    opt["resume"] = None
    opt["gpus_per_worker"] = _default_gpus(opt["gpus_per_worker"], opt["device"])
    save_run_files(opt["save_dir"], opt, opt["hyp"])
    return opt


def resume_options(resume: str | bool, project: str) -> dict[str, Any]:
    """The options of the run being resumed (as upstream: all of them, from its opt.yaml)."""
    if resume is True:
        last = find_last_checkpoint(resolve_project(project))
    else:
        last = Path(resume).expanduser().resolve()
        if not last.is_file():
            raise UserError(f"{last}: --resume checkpoint not found")
    opt, last_epoch = load_resume_state(last)
    epochs = int(opt["epochs"])
    start_epoch = last_epoch + 1
    if start_epoch <= 0 or start_epoch >= epochs:
        raise UserError(f"{last}: training to {epochs} epochs is finished, nothing to resume")
    # The model comes from the checkpoint (its yaml and possibly AutoAnchor-refit anchors), not a cfg.
    opt.update(weights=str(last), cfg=None, resume=str(last), save_dir=str(run_dir_of(last)))
    print(f"Resuming training from {last} at epoch {start_epoch}")
    return opt


def main(argv: list[str] | None = None) -> int:
    try:
        opt = vars(build_parser().parse_args(argv))
        opt = resume_options(opt["resume"], opt["project"]) if opt["resume"] else fresh_run_options(opt)
        print(f"Run directory: {opt['save_dir']}", flush=True)
        results = run_training({k: v for k, v in opt.items() if k not in RUN_DIR_KEYS})
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_final_message(opt, results))
    return 0


def _data_yaml(data: str | None, hyp: dict[str, float], single_cls: bool) -> Path:
    from yolo_ray.data import check_training_data, load_data_config

    if data is None:
        from yolo_ray.data.synthetic import default_data_yaml

        return default_data_yaml()  # generated and known to be good
    path = Path(data).expanduser().resolve()
    # fail now, with the file named, rather than inside a worker after the run folder exists
    check_training_data(load_data_config(path), hyp, single_cls)
    return path


def _weights_file(weights: str) -> str | None:
    if not weights:
        return None
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"{path}: weights file not found (nothing is downloaded; pass a local .pt, "
                        "or --weights '' --cfg yolov5s.yaml to train from scratch)")
    return str(path)


def _model_cfg(cfg: str) -> str | None:
    if not cfg:
        return None
    path = Path(cfg).expanduser()
    return str(path.resolve()) if path.is_file() else cfg  # otherwise a shipped name like yolov5s


def _default_gpus(gpus: float | None, device: str) -> float:
    if gpus is not None:
        return gpus
    import torch

    return 1.0 if device != "cpu" and torch.cuda.is_available() else 0.0


def _final_message(opt: dict[str, Any], results: dict[str, Any] | None) -> str:
    save_dir = Path(opt["save_dir"])
    lines = []
    if results:
        lines.append("Final: " + ", ".join(f"{k}={float(v):.4g}" for k, v in results.items()))
    weights = save_dir / "weights" / "best.pt"
    if not weights.is_file():
        weights = save_dir / "weights" / "last.pt"
    reuse = f"python scripts/train.py --weights {weights} --data {opt['data']}"
    lines.append(f"Results saved to {save_dir}; reuse: {reuse}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
