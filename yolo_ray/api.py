"""The Python API, mirroring the commands: yolo_ray.train(...) as train.py, yolo_ray.evolve(...) as evolve.py.

    import yolo_ray
    run = yolo_ray.train(data="coco128.yaml", weights="yolov5s.pt", epochs=10, imgsz=320)
    run.metrics["mAP_0.5:0.95"], run.best                       # results.csv's last row, weights/best.pt
    evo = yolo_ray.evolve(generations=8, epochs=3, imgsz=160)
    evo.best_hyp                                                # the best row's hyperparameters

Options are the commands' (--batch-size is batch_size=...), checked as the commands check them: a bad
value raises yolo_ray.UserError with the line the command prints after `error:`; nothing is created.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolo_ray.config import UserError
from yolo_ray.console import LOGGER, setup_logging, verbosity
from yolo_ray.options import EvolveConfig, TrainConfig

if TYPE_CHECKING:  # torch and Ray load with the first run, not with `import yolo_ray`
    from yolo_ray.training.driver import TrainResult

__all__ = ["EvolveResult", "evolve", "train"]


@dataclass(frozen=True)
class EvolveResult:
    """A finished (or stopped) evolution: its folder, the best evolve.csv row and that row's hyperparameters.

    status: 'finished', 'stopped' (time budget, patience), 'interrupted' or 'failure cap'; message: the
    line evolve.py ends with."""

    save_dir: Path
    best_row: dict[str, float]
    best_hyp: dict[str, float]
    rows: int
    status: str
    message: str


def train(config: TrainConfig | None = None, **options: Any) -> TrainResult | None:
    """Train as train.py does with these options (or a TrainConfig, options overriding its values); returns
    a training.driver.TrainResult (save_dir, metrics, best), or None when resume=... names a run that has
    nothing left to train."""
    from yolo_ray.training.driver import train_run

    _start_logging()
    _check_names(options, {f.name for f in dataclasses.fields(TrainConfig)}, "train")
    config = dataclasses.replace(config, **options) if config is not None else TrainConfig(**options)
    opt = config.to_dict()
    if config.resume and options.get("epochs") is None:  # as train.py: --resume keeps the run's own epochs
        opt["epochs"] = None
    return train_run(opt)


def evolve(config: EvolveConfig | None = None, **options: Any) -> EvolveResult:
    """Evolve as evolve.py does with these options (flat: every trial's training options and the search's
    alike), or an EvolveConfig (options overriding its values); returns the folder, best row and best hyps.
    A failure cap ends it with a UserError; time budget, patience and Ctrl-C end it with a result."""
    from yolo_ray.evolution.driver import run_evolution
    from yolo_ray.evolution.evolve_csv import best_row, read_history

    _start_logging()
    flat = set(EvolveConfig().to_dict())
    _check_names(options, flat | {"patience"}, "evolve")
    if config is None or options:
        config = EvolveConfig.from_options({**(config.to_dict() if config else {}), **options})
    summary = run_evolution(config)
    if summary.status == "failure cap":
        raise UserError(summary.message)
    history = read_history(summary.save_dir / "evolve.csv") if summary.rows else None
    best = best_row(history) if history is not None and len(history) else None
    LOGGER.info(summary.message)
    return EvolveResult(
        summary.save_dir,
        dict(best.results) if best else {},
        dict(best.hyp) if best else {},
        summary.rows,
        summary.status,
        summary.message,
    )


def _check_names(options: dict[str, Any], known: set[str], command: str) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"{command}: unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)}")


def _start_logging() -> None:
    """The `yolo_ray` logger prints as the commands' do, once; a level set before (setup_logging) is kept."""
    from yolo_ray.console import log_level
    from yolo_ray.paths import settle_home_folders

    setup_logging(log_level() if LOGGER.level else verbosity())
    settle_home_folders()
