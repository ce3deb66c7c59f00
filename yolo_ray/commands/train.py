"""Train a YOLOv5 detector: in this process, or as N DDP workers under Ray Train.

python scripts/train.py --cfg yolov5n.yaml --epochs 3 --imgsz 160            # built-in data
python scripts/train.py --data coco128.yaml --weights runs/train/exp/weights/best.pt
python scripts/train.py --cfg yolov5s.yaml --ray-workers 2 --batch-size 32   # DDP via Ray Train
python scripts/train.py --resume                                             # newest last.pt
"""

from __future__ import annotations

import argparse

from yolo_ray.cli import OneLineParser, add_config_options, add_console_options, run_script, start_logging
from yolo_ray.option_fields import FOLDER, RAY, RUN, TRAINING
from yolo_ray.options import TrainConfig
from yolo_ray.training.driver import claim_run_dir, fresh_run_options, resume_options, train_run

__all__ = ["build_parser", "claim_run_dir", "fresh_run_options", "main", "resume_options"]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Train YOLOv5 (v7.0-compatible) on Ray.")
    add_config_options(p, TrainConfig, TRAINING, RUN, FOLDER)
    add_config_options(p.add_argument_group("Ray"), TrainConfig, RAY)
    add_console_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """0 when the run finished (or a resumed one had nothing left to do), 2 with one `error:` line."""

    def train_from_args() -> int:
        # epochs=None in the namespace: argparse keeps it unless --epochs is given, which --resume needs to know
        opt = vars(build_parser().parse_args(argv, namespace=argparse.Namespace(epochs=None)))
        start_logging(opt)
        train_run(opt)
        return 0

    return run_script(train_from_args)
