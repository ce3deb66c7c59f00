"""What scripts/train.py and scripts/evolve.py share: the one-line error parser and upstream's training options."""

from __future__ import annotations

import argparse

from yolo_ray.config import INF, UserError, range_problem


class OneLineParser(argparse.ArgumentParser):
    """Option errors surface as a UserError, so they print as one `error: ...` line like any other."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def add_training_options(group: argparse._ActionsContainer) -> None:
    """Upstream train.py's options that a single run and every evolution trial both take."""
    group.add_argument("--weights", default="", help="initial weights .pt (local file; '' = from scratch)")
    group.add_argument("--cfg", default="", help="model yaml: shipped name (yolov5s.yaml) or path")
    group.add_argument("--data", default=None, help="dataset yaml (default: the built-in synthetic dataset)")
    group.add_argument("--hyp", default="hyp.scratch-low.yaml", help="hyperparameters yaml (shipped name or path)")
    group.add_argument("--epochs", type=int, default=100, help="total training epochs")
    group.add_argument("--batch-size", type=int, default=16, help="total batch size over all Ray Train workers")
    group.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="train, val image size (pixels)")
    group.add_argument("--rect", action="store_true", help="rectangular training")
    group.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    group.add_argument("--cache", nargs="?", const="ram", choices=["ram", "disk"], help="cache images in ram or disk")
    group.add_argument("--image-weights", action="store_true", help="use weighted image selection for training")
    group.add_argument("--device", default="", help="'' (auto), cpu, or cuda device like 0")
    group.add_argument("--multi-scale", action="store_true", help="vary img-size +/- 50%%")
    group.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    group.add_argument("--optimizer", choices=["SGD", "Adam", "AdamW"], default="SGD", help="optimizer")
    group.add_argument("--sync-bn", action="store_true", help="use SyncBatchNorm (DDP only)")
    group.add_argument("--workers", type=int, default=8, help="max dataloader workers per Ray Train worker")
    group.add_argument("--cos-lr", action="store_true", help="cosine LR scheduler")
    group.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing epsilon")
    group.add_argument("--freeze", nargs="+", type=int, default=[0], help="freeze layers: backbone=10, first3=0 1 2")
    group.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision (bf16/fp16)")
    group.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                       help="keep the default contiguous memory format")


def check_range(option: str, value: float, low: float, high: float = INF, low_open: bool = False,
                high_open: bool = True) -> None:
    """A UserError naming the option, its value and the valid interval when value lies outside it."""
    problem = range_problem(value, low, high, low_open, high_open)
    if problem:
        raise UserError(f"--{option} {problem}")


def check_training_numbers(opt: dict) -> None:
    """The numeric training options both scripts take (add_training_options), before anything starts;
    --batch-size is checked with the worker split (train.launch.check_worker_split)."""
    check_range("epochs", opt["epochs"], 1)
    check_range("imgsz", opt["imgsz"], 1)  # rounded up to the model's stride grid later, as upstream
    check_range("workers", opt["workers"], 0)
    check_range("label-smoothing", opt["label_smoothing"], 0, 1)
    for layer in opt["freeze"]:
        check_range("freeze", layer, 0)
    if opt.get("seed") is not None:
        check_range("seed", opt["seed"], 0, 2**31)  # numpy takes [0, 2**32); the loop adds 1 + rank
