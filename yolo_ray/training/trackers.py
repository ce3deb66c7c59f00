"""What a training run logs besides results.csv: TensorBoard by default, MLflow and W&B when asked.

TensorBoard events go into the run folder with upstream's tags (the results.csv column names), one
point per epoch, and the run's images (train batch mosaics, results and validation plots) at the end.
MLflow and Weights & Biases are optional extras (pip install 'yolo_ray[mlflow]' / '[wandb]'): a run is
one MLflow run in an experiment named after the project folder, and one W&B run in a project named
as upstream names it. Only rank 0 of a run logs. Evolution trials log through Ray Tune's callbacks
instead (evolve.trackers), one tracker run per trial.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolo_ray.config import UserError
from yolo_ray.scores import RESULTS_CSV_KEYS

LOGGER = logging.getLogger(__name__)

TRACKERS = ("mlflow", "wandb")
# The images upstream's loggers send at the end of training, then our train batch mosaics.
END_IMAGES = ("results.png", "confusion_matrix.png", "F1_curve.png", "PR_curve.png", "P_curve.png", "R_curve.png")
RUN_OPTIONS = (
    "weights",
    "cfg",
    "data",
    "epochs",
    "batch_size",
    "imgsz",
    "optimizer",
    "single_cls",
    "rect",
    "image_weights",
    "multi_scale",
    "cos_lr",
    "label_smoothing",
    "seed",
)


def tracker_settings(names: Sequence[str] | dict[str, Any] | None) -> dict[str, Any]:
    """{tracker: its settings}, fixed here on the driver (workers run elsewhere, with other environments):
    MLflow's tracking URI ($MLFLOW_TRACKING_URI, else ./mlflow.db made absolute), W&B's mode ($WANDB_MODE)."""
    if isinstance(names, dict):  # already resolved (a resumed run's opt.yaml)
        return names
    settings: dict[str, Any] = {}
    for name in names or ():
        if name not in TRACKERS:
            raise UserError(f"--trackers {name}: unknown tracker (choose from {', '.join(TRACKERS)})")
        _require(name)
        if name == "mlflow":
            settings[name] = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
        else:
            settings[name] = os.environ.get("WANDB_MODE") or None
    return settings


def _require(name: str) -> None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        raise UserError(f"--trackers {name}: the {name} package is not installed (pip install 'yolo_ray[{name}]')")


class RunTrackers:
    """The trackers of one training run (rank 0): epoch values in, images and closing at the end."""

    def __init__(self, save_dir: Path, opt: dict[str, Any], hyp: dict[str, float]):
        self.save_dir = save_dir
        self.tb = None
        if opt.get("tensorboard", True):
            from torch.utils.tensorboard import SummaryWriter  # keeps upstream's tags as they are (":" too)

            LOGGER.info(
                f"TensorBoard: Start with 'tensorboard --logdir {save_dir.parent}', view at http://localhost:6006/"
            )
            self.tb = SummaryWriter(str(save_dir))
        settings = tracker_settings(opt.get("trackers"))
        params = {**hyp, **{k: opt.get(k) for k in RUN_OPTIONS}}
        self.mlflow, self.mlflow_run = (
            _start_mlflow(settings["mlflow"], save_dir, params) if "mlflow" in settings else (None, None)
        )
        self.wandb = _start_wandb(settings["wandb"], save_dir, params) if "wandb" in settings else None

    def log_epoch(self, epoch: int, row: Sequence[float]) -> None:
        """One results.csv row (without its epoch), under upstream's tags."""
        values = {k: float(v) for k, v in zip(RESULTS_CSV_KEYS[1:], row)}
        if self.tb is not None:
            for tag, value in values.items():
                self.tb.add_scalar(tag, value, epoch)
            self.tb.flush()
        if self.mlflow is not None:
            for key, value in values.items():
                self.mlflow.log_metric(self.mlflow_run, key, value, step=epoch)
        if self.wandb is not None:
            self.wandb.log({**values, "epoch": epoch})

    def finish(self, epoch: int) -> None:
        """Send the run's images and close every tracker."""
        images = [self.save_dir / name for name in END_IMAGES] + sorted(self.save_dir.glob("train_batch*.jpg"))
        images = [f for f in images if f.is_file()]
        if self.tb is not None:
            for f in images:
                self.tb._get_file_writer().add_summary(_image_summary(f), epoch)
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.set_terminated(self.mlflow_run)
        if self.wandb is not None:
            import wandb

            self.wandb.log({f.stem: wandb.Image(str(f)) for f in images})
            self.wandb.finish()


def _start_mlflow(uri: str, save_dir: Path, params: dict[str, Any]):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    name = str(save_dir.parent)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(experiment_id, run_name=save_dir.name, tags={"save_dir": str(save_dir)})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return client, run.info.run_id


def _start_wandb(mode: str | None, save_dir: Path, params: dict[str, Any]):
    import wandb

    # upstream's naming: runs/train logs to the W&B project "YOLOv5", any other project to its folder name
    project = save_dir.parent
    name = "YOLOv5" if project.parts[-2:] == ("runs", "train") else project.name
    return wandb.init(
        project=name, name=save_dir.name, dir=str(save_dir), config=params, mode=mode, reinit="finish_previous"
    )


def _image_summary(file: Path):
    """A TensorBoard image holding the file's own PNG/JPEG bytes: re-encoding a photo mosaic as PNG (what
    add_image does) costs seconds per image, and TensorBoard shows either format."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    with Image.open(file) as im:
        width, height = im.size
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=file.read_bytes())
    return Summary(value=[Summary.Value(tag=file.stem, image=image)])
