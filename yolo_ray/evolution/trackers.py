"""What an evolution logs for its trials, through Ray Tune's own logger callbacks.

TensorBoard (default): Tune's TBXLoggerCallback writes one event folder per trial under the run
folder (tune-*/trial_*), its hyps as HParams, so `tensorboard --logdir <run folder>` compares the
trials side by side. MLflow (Ray's MLflowLoggerCallback): one experiment per evolution, named by its
run folder, one MLflow run per trial. W&B (Ray's WandbLoggerCallback): one run per trial, grouped by
evolution, files under the run folder. Tune's CSV and JSON trial logs are kept as they always were.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from yolo_ray.training.trackers import tracker_settings

LOGGER = logging.getLogger(__name__)


def tune_callbacks(opt: dict[str, Any]) -> list[Any]:
    """The logger callbacks of the evolution opt describes (its save_dir, tensorboard and trackers)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    save_dir = Path(opt["save_dir"])
    # Tune adds TensorBoard on its own unless told not to: the choice of loggers is made here instead.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    callbacks: list[Any] = [CSVLoggerCallback(), JsonLoggerCallback()]
    if opt.get("tensorboard", True):
        LOGGER.info(
            f"TensorBoard: Start with 'tensorboard --logdir {save_dir}', view at http://localhost:6006/ "
            "(one run per trial, hyps under HPARAMS)"
        )
        callbacks.append(TBXLoggerCallback())
    settings = tracker_settings(opt.get("trackers"))
    if "mlflow" in settings:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(
            MLflowLoggerCallback(
                tracking_uri=settings["mlflow"], experiment_name=str(save_dir), tags={"evolution": str(save_dir)}
            )
        )
    if "wandb" in settings:
        from ray.air.integrations.wandb import WandbLoggerCallback

        callbacks.append(
            WandbLoggerCallback(
                project=save_dir.parent.name, group=str(save_dir), dir=str(save_dir), mode=settings["wandb"]
            )
        )
    return callbacks
