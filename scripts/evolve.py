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
from pathlib import Path

# Import the package beside this script: a Ray job runs a temporary copy of the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.cli import OneLineParser, add_console_options, add_training_options, start_logging  # noqa: E402
from yolo_ray.config import UserError  # noqa: E402
from yolo_ray.console import LOGGER  # noqa: E402
from yolo_ray.evolution.strategies import STRATEGIES  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Evolve YOLOv5 hyperparameters on Ray Tune (upstream's genetic algorithm).")
    train = p.add_argument_group("training (each trial)")
    add_training_options(train)

    evolve = p.add_argument_group("evolution")
    evolve.add_argument("--generations", type=int, default=None, help="evolve.csv rows to reach (default 300; "
                                                                       "a resumed run keeps its own)")
    evolve.add_argument("--strategy", choices=list(STRATEGIES), default="classic",
                        help="search: classic (upstream v6/v7 GA), population (upstream's current GA), random, "
                             "tpe or cmaes (Optuna: pip install 'yolo_ray[optuna]')")
    evolve.add_argument("--population", type=int, default=50,
                        help="population GA: individuals per GA generation (--generations still counts rows)")
    evolve.add_argument("--search-space", default=None,
                        help="search space: shipped name or yaml path (default yolov5, yolov5_population for "
                             "--strategy population)")
    evolve.add_argument("--parent", choices=["single", "weighted"], default="single",
                        help="classic: parent selection")
    evolve.add_argument("--time-budget", default=None,
                        help="start no trial after this long, e.g. 8h, 90m (running ones finish)")
    evolve.add_argument("--patience", type=int, default=None,
                        help="stop when the best fitness has not improved for this many rows")
    evolve.add_argument("--seed", type=int, default=None, help="seed for a reproducible evolution (default: fresh)")
    evolve.add_argument("--early-stop", action="store_true",
                        help="stop hopeless trials early (ASHA on per-epoch fitness; validates every epoch)")
    evolve.add_argument("--resume", nargs="?", const=True, default=False,
                        help="continue a run directory (or a stored run, STORAGE_URI/name) until its evolve.csv "
                             "holds --generations rows (default: the newest under --project)")
    evolve.add_argument("--max-failed-trials", type=int, default=None,
                        help="end the run after this many failed trials (default max(10, generations/10))")
    evolve.add_argument("--max-retries", type=int, default=2, help="retries of a trial whose process died")
    evolve.add_argument("--project", default="runs/evolve", help="save to project/name")
    evolve.add_argument("--name", default="exp", help="save to project/name")
    evolve.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")

    ray = p.add_argument_group("Ray")
    ray.add_argument("--concurrency", type=int, default=None,
                     help="trials at once (default: as many as the cluster's resources fit)")
    ray.add_argument("--cpus-per-trial", type=float, default=None,
                     help="CPUs per trial, all its workers (default: 1 per CPU worker, the GPU nodes' CPUs per GPU "
                          "for GPU workers)")
    ray.add_argument("--gpus-per-trial", type=float, default=None,
                     help="GPUs per trial, all its workers (default: 1 per worker if the cluster has GPUs, else 0; "
                          "below 1 only for single-worker trials; more than 1 on one worker becomes that many "
                          "DDP workers)")
    ray.add_argument("--ray-workers", type=int, default=1, help="Ray Train workers per trial (>1: DDP)")
    ray.add_argument("--address", default=None, help="Ray cluster ('auto' joins the running one; "
                                                     "default: a new local cluster)")
    ray.add_argument("--storage-path", default=None,
                     help="a URI (s3://, gs://, file://): keep the run at STORAGE/name, evolve.csv and results "
                          "uploaded after every row, Tune's state beside them; a path: where Tune keeps its state "
                          "(default: the run dir)")
    ray.add_argument("--bucket", default=None, help="upstream's spelling: --storage-path gs://BUCKET")
    ray.add_argument("--no-share-images", dest="share_images", action="store_false",
                     help="each trial decodes its own images (default: decoded once, shared through the object store "
                          "when they fit)")
    ray.add_argument("--placement-timeout", type=float, default=900,
                     help="seconds to wait for one trial's resources (an autoscaler adding GPU nodes) before an error")
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


if __name__ == "__main__":
    sys.exit(main())
