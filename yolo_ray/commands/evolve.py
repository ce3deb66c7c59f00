"""Evolve YOLOv5 hyperparameters with its genetic algorithm, generations running in parallel on Ray.

python scripts/evolve.py --generations 8 --epochs 3 --imgsz 160      # built-in synthetic data
python scripts/evolve.py --data coco128.yaml --weights yolov5s.pt --epochs 10 --address auto
python scripts/evolve.py --strategy population --population 8 --generations 32 --epochs 3 --imgsz 160
python scripts/evolve.py --resume                                    # newest runs/evolve/exp*
"""

from __future__ import annotations

import argparse
import logging
import sys

from yolo_ray.cli import OneLineParser, add_config_options, add_console_options, start_logging
from yolo_ray.config import UserError
from yolo_ray.console import LOGGER
from yolo_ray.option_fields import RAY, SEARCH, TRAINING
from yolo_ray.options import EvolveConfig, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Evolve YOLOv5 hyperparameters on Ray Tune (upstream's genetic algorithm).")
    add_config_options(p.add_argument_group("training (each trial)"), TrainConfig, TRAINING)
    add_config_options(p.add_argument_group("evolution"), EvolveConfig, SEARCH)
    add_config_options(p.add_argument_group("Ray"), EvolveConfig, RAY)
    add_console_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        opt = vars(build_parser().parse_args(argv))
        start_logging(opt)
        from yolo_ray.evolution.driver import run_evolution

        summary = run_evolution(opt)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before trials started (Tune handles Ctrl-C itself once they run)
        print("interrupted", file=sys.stderr)
        return 130
    if summary.exit_code:
        print(f"error: {summary.message}" if summary.status != "interrupted" else summary.message, file=sys.stderr)
    else:
        LOGGER.log(logging.INFO if summary.ranked else logging.WARNING, summary.message)  # --quiet keeps a warning
    return summary.exit_code
