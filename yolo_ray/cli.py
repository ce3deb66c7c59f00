"""What the scripts share: the one-line error parser, upstream's training options, the inference options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from yolo_ray.config import INF, UserError, range_problem

DEFAULT_CFG = "yolov5n.yaml"  # the model of a run on user data given neither --cfg nor --weights


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """--help names every default: '(default: 100)', '(default: none)' unless the help already says it
    ('default: ...' in words); switches (on/off flags) stay as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.nargs == 0 or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if "default" in text.lower():
            return text
        if action.default is None:
            default = "none"
        elif action.default == "":
            default = "''"
        elif action.default is False:
            default = "off"
        else:
            default = " ".join(map(str, action.default)) if isinstance(action.default, list) else "%(default)s"
        return f"{text} (default: {default})"


class OneLineParser(argparse.ArgumentParser):
    """Option errors surface as a UserError, so they print as one `error: ...` line like any other;
    --help shows every default (DefaultsHelpFormatter)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def add_training_options(group: argparse._ActionsContainer) -> None:
    """Upstream train.py's options that a single run and every evolution trial both take."""
    group.add_argument("--weights", default="",
                       help="initial weights: a .pt path or an official name (yolov5s.pt, downloaded once); "
                            "'' = from scratch")
    group.add_argument("--cfg", default="", help="model yaml: shipped name (yolov5s.yaml) or path. With neither "
                       "--cfg nor --weights: yolov5n.yaml from scratch on your --data, the built-in weights on the "
                       "built-in data")
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
    group.add_argument("--deterministic", action="store_true",
                       help="deterministic algorithms only (reproducible, slower; as upstream's init_seeds)")
    group.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision (bf16/fp16)")
    group.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                       help="keep the default contiguous memory format")
    group.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                       help="write no TensorBoard events (default: every run and evolution writes them)")
    group.add_argument("--trackers", nargs="+", choices=["mlflow", "wandb"], default=[],
                       help="also log to MLflow ($MLFLOW_TRACKING_URI, default ./mlflow.db) and/or Weights & Biases "
                            "(WANDB_MODE=offline needs no account)")


def add_console_options(parser: argparse.ArgumentParser, verbose: bool = True) -> None:
    """--quiet (warnings and errors only) and --verbose (debug records, Ray's own INFO lines), as upstream's
    YOLOv5_VERBOSE; verbose=False where the script's --verbose already means something else (val.py)."""
    group = parser.add_argument_group("console")
    group.add_argument("--quiet", action="store_true", help="print warnings and errors only (as YOLOv5_VERBOSE=False)")
    if verbose:
        group.add_argument("--verbose", action="store_true", help="also print debug lines and Ray's own INFO lines")


def start_logging(opt: dict[str, Any]) -> None:
    """Configure logging once for a script from its --quiet/--verbose (taken out of opt)."""
    from yolo_ray.console import setup_logging, verbosity

    setup_logging(verbosity(opt.pop("quiet", False), opt.pop("verbose", False)))


def default_model(data: str | None, cfg: str | None, weights: str | None) -> tuple[str | None, str | None, str]:
    """(cfg, weights, what was chosen) when neither --cfg nor --weights is given, the same rule for train.py
    and evolve.py: the built-in data starts from the built-in weights (yolov5n trained on it; a few epochs
    from scratch learn nothing there), a user's data trains yolov5n.yaml from scratch. Otherwise unchanged, ''."""
    if cfg or weights:
        return cfg, weights, ""
    if not data:
        from yolo_ray.data.synthetic import builtin_weights

        note = "no --cfg/--weights: on the built-in data, starting from the built-in weights (yolov5n trained on it)"
        return None, str(builtin_weights()), note
    note = f"no --cfg/--weights: training {DEFAULT_CFG} from scratch on {data} (choose a model with --weights or --cfg)"
    return DEFAULT_CFG, None, note


def add_model_options(group: argparse._ActionsContainer, project: str | None, weights_help: str,
                      device_default: str = "", half_help: str = "use FP16 half-precision inference") -> None:
    """What val.py, detect.py and export.py share: weights, device, and the run folder (unless project is None)."""
    group.add_argument("--weights", nargs="+", required=True, help=weights_help)
    group.add_argument("--device", default=device_default, help="'' (auto), cpu, or cuda device like 0")
    group.add_argument("--half", action="store_true", help=half_help)
    if project is None:
        return
    group.add_argument("--project", default=project, help="save to project/name")
    group.add_argument("--name", default="exp", help="save to project/name")
    group.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")


def check_fraction(option: str, value: float, upper_open: bool = False) -> None:
    """Thresholds and amounts live in [0, 1] ([0, 1) when upper_open)."""
    if not 0 <= value <= 1 or (upper_open and value == 1):
        raise UserError(f"{option} must be in [0, 1{')' if upper_open else ']'}, got {value}")


def make_run_dir(project: str, name: str, exist_ok: bool) -> Path:
    """project/name (incremented: exp, exp2, ...), created; call only once the inputs are validated."""
    from yolo_ray.paths import create_run_dir

    return create_run_dir(project, name, exist_ok)


def check_range(option: str, value: float, low: float, high: float = INF, low_open: bool = False,
                high_open: bool = True) -> None:
    """A UserError naming the option, its value and the valid interval when value lies outside it."""
    problem = range_problem(value, low, high, low_open, high_open)
    if problem:
        raise UserError(f"--{option} {problem}")


def check_training_numbers(opt: dict) -> None:
    """The numeric training options both scripts take (add_training_options), before anything starts;
    --batch-size is checked with the worker split (cluster.launch.check_worker_split)."""
    check_range("epochs", opt["epochs"], 1)
    check_range("imgsz", opt["imgsz"], 1)  # rounded up to the model's stride grid later, as upstream
    check_range("workers", opt["workers"], 0)
    check_range("label-smoothing", opt["label_smoothing"], 0, 1)
    for layer in opt["freeze"]:
        check_range("freeze", layer, 0)
    if opt.get("seed") is not None:
        check_range("seed", opt["seed"], 0, 2**31)  # numpy takes [0, 2**32); the loop adds 1 + rank
