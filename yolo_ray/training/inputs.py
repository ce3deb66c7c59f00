"""A run's inputs as every node will open them, resolved once on the driver for train.py and evolve.py:
the model (cfg, weights or the default one), the data yaml, the hyps, the image size and the trackers.

Each is checked here, naming the file, so a bad input fails before a run folder exists rather than
inside a worker (or in every evolution trial).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolo_ray.config import load_hyp
from yolo_ray.console import LOGGER
from yolo_ray.options import DEFAULT_CFG


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


def model_cfg(cfg: str | None) -> str | None:
    """A cfg file made absolute (trials and workers run elsewhere); a shipped name like yolov5s.yaml as it is."""
    if not cfg:
        return None
    path = Path(cfg).expanduser()
    return str(path.resolve()) if path.is_file() else cfg


def data_yaml(data: str | None, hyp: dict[str, float], single_cls: bool, cwd: str) -> str:
    """The data yaml to train on, checked (downloaded here when it names a dataset); the built-in one by default."""
    if not data:
        from yolo_ray.data.synthetic import default_data_yaml

        return str(default_data_yaml())  # generated and known to be good
    from yolo_ray.data import check_training_data, load_data_config
    from yolo_ray.data.fetch import data_option

    data = data_option(data)  # a shipped name (coco128.yaml) stays a name: each node finds its own copy
    check_training_data(load_data_config(data, cwd), hyp, single_cls)
    return data


def resolve_inputs(opt: dict[str, Any], note_prefix: str = "") -> None:
    """Resolve opt's model, hyps, trackers, image size and data in place (opt: TrainConfig keys and cwd)."""
    from yolo_ray.official import weights_option
    from yolo_ray.training.model_setup import train_image_size  # torch: only once the cheap checks passed
    from yolo_ray.training.trackers import tracker_settings

    opt["weights"] = weights_option(opt["weights"])
    opt["cfg"] = model_cfg(opt["cfg"])
    opt["cfg"], opt["weights"], chosen = default_model(opt["data"], opt["cfg"], opt["weights"])
    if chosen:
        LOGGER.info(f"{note_prefix}{chosen}")
    opt["imgsz"] = train_image_size(opt["cfg"], opt["weights"], opt["imgsz"])
    opt["hyp"] = load_hyp(opt["hyp"])
    opt["trackers"] = tracker_settings(opt.get("trackers"))  # absent from the opt.yaml of older runs
    opt["cwd"] = opt.get("cwd") or str(Path.cwd())  # a relative data `path:` may mean this; workers run elsewhere
    opt["data"] = data_yaml(opt["data"], opt["hyp"], opt["single_cls"], opt["cwd"])
