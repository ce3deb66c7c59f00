"""Every option of a training run and of an evolution, in one place: its default, its valid values and
its help text. The scripts' argparse options, the Python API, opt.yaml and validation all read them here.

TrainConfig is upstream train.py's `opt`; EvolveConfig holds the TrainConfig every trial trains with
plus the search's own options. Both are frozen: a resolved run is a new object (dataclasses.replace).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yolo_ray.console import LOGGER
from yolo_ray.option_fields import (
    FOLDER,
    RAY,
    RUN,
    SEARCH,
    TRAINING,
    config_from_options,
    plain_value,
    check_values,
    option,
)

DEFAULT_CFG = "yolov5n.yaml"  # the model of a run on user data given neither --cfg nor --weights
STRATEGIES = ("classic", "population", "random", "tpe", "cmaes")  # evolution.strategies builds each
DEFAULT_GENERATIONS = 300  # evolve.csv rows an evolution aims for, as upstream's --evolve 300


@dataclass(frozen=True)
class TrainConfig:
    """One training run: upstream train.py's options (same names, same defaults) and Ray's."""

    weights: str = option(
        "", "initial weights: a .pt path or an official name (yolov5s.pt, downloaded once); '' = from scratch"
    )
    cfg: str = option(
        "",
        "model yaml: shipped name (yolov5s.yaml) or path. With neither --cfg nor --weights: "
        "yolov5n.yaml from scratch on your --data, the built-in weights on the built-in data",
    )
    data: str | None = option(None, "dataset yaml (default: the built-in synthetic dataset)", kind=str)
    hyp: Any = option("hyp.scratch-low.yaml", "hyperparameters yaml (shipped name or path)")
    epochs: int = option(100, "total training epochs", low=1)
    batch_size: int = option(16, "total batch size over all Ray Train workers")
    imgsz: int = option(640, "train, val image size (pixels)", flags=("--imgsz", "--img", "--img-size"), low=1)
    rect: bool = option(False, "rectangular training")
    noautoanchor: bool = option(False, "disable AutoAnchor")
    cache: str | None = option(
        None, "cache images in ram or disk", kind=str, choices=("ram", "disk"), nargs="?", const="ram"
    )
    image_weights: bool = option(False, "use weighted image selection for training")
    device: str = option("", "'' (auto), cpu, or cuda device like 0")
    multi_scale: bool = option(False, "vary img-size +/- 50%%")
    single_cls: bool = option(False, "train multi-class data as single-class")
    optimizer: str = option("SGD", "optimizer", choices=("SGD", "Adam", "AdamW"))
    sync_bn: bool = option(False, "use SyncBatchNorm (DDP only)")
    workers: int = option(8, "max dataloader workers per Ray Train worker", low=0)
    cos_lr: bool = option(False, "cosine LR scheduler")
    label_smoothing: float = option(0.0, "label smoothing epsilon", low=0, high=1)
    freeze: list[int] = option([0], "freeze layers: backbone=10, first3=0 1 2", nargs="+", low=0)
    deterministic: bool = option(
        False, "deterministic algorithms only (reproducible, slower; as upstream's init_seeds)"
    )
    amp: bool = option(True, "no mixed precision (bf16/fp16)", negated="--no-amp")
    channels_last: bool = option(True, "keep the default contiguous memory format", negated="--no-channels-last")
    tensorboard: bool = option(
        True, "write no TensorBoard events (default: every run and evolution writes them)", negated="--no-tensorboard"
    )
    trackers: Any = option(
        [],
        "also log to MLflow ($MLFLOW_TRACKING_URI, default ./mlflow.db) and/or Weights & "
        "Biases (WANDB_MODE=offline needs no account)",
        nargs="+",
        choices=("mlflow", "wandb"),
    )

    resume: Any = option(
        False,
        "resume the most recent last.pt under --project, or the given last.pt",
        group=RUN,
        kind=str,
        nargs="?",
        const=True,
    )
    nosave: bool = option(False, "only save final checkpoint", group=RUN)
    noval: bool = option(False, "only validate final epoch", group=RUN)
    noplots: bool = option(False, "save no plot files", group=RUN)
    project: str = option("runs/train", "save to project/name", group=FOLDER)
    name: str = option("exp", "save to project/name ('cfg' = the cfg file's stem)", group=FOLDER)
    exist_ok: bool = option(False, "existing project/name ok, do not increment", group=FOLDER)
    storage_path: str | None = option(
        None,
        "keep the run at this storage URI (s3://, gs://, file://): STORAGE/name, uploaded as it goes",
        group=FOLDER,
        kind=str,
    )
    patience: int = option(100, "EarlyStopping patience (epochs without improvement)", group=RUN, low=0)
    save_period: int = option(-1, "save checkpoint every x epochs (disabled if < 1)", group=RUN)
    seed: int = option(0, "global training seed", group=RUN, low=0, high=2**31)

    ray_workers: int = option(1, "Ray Train workers = DDP processes (1: no Ray)", group=RAY)
    cpus_per_worker: float | None = option(
        None,
        "CPUs per worker (default: from the cluster's nodes, the most that fits all workers)",
        group=RAY,
        kind=float,
        low=0,
    )
    gpus_per_worker: float | None = option(
        None,
        "GPUs per worker (default: 1 if the cluster has GPUs, else 0; more than 1 becomes that many DDP workers)",
        group=RAY,
        kind=float,
        low=0,
    )
    max_failures: int = option(
        3, "worker or node failures a Ray run survives, restarting from its last.pt", group=RAY, low=0
    )
    address: str | None = option(
        None,
        "Ray cluster to join ('auto' = the running one); default: no Ray for 1 worker, a local cluster for more",
        group=RAY,
        kind=str,
    )
    placement_timeout: float = option(
        900.0,
        "seconds to wait for the workers' resources (an autoscaler adding GPU nodes) before an error",
        group=RAY,
        low=0,
        low_open=True,
    )

    def __post_init__(self) -> None:
        check_values(self)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TrainConfig:
        """From a mapping such as an opt.yaml (ours, older ones, upstream's): unknown keys are left out."""
        return config_from_options(cls, options)

    def to_dict(self) -> dict[str, Any]:
        """Plain values by upstream's opt names (lists, not tuples): what opt.yaml holds."""
        return plain_value(dataclasses.asdict(self))

    def training_options(self) -> dict[str, Any]:
        """The options every evolution trial takes (the TRAINING group)."""
        fields = dataclasses.fields(self)
        return {f.name: plain_value(getattr(self, f.name)) for f in fields if f.metadata["group"] == TRAINING}


@dataclass(frozen=True)
class EvolveConfig:
    """One evolution: the TrainConfig each trial trains with, and how the search runs."""

    train: TrainConfig = field(default_factory=TrainConfig, metadata=dict(group="train"))
    generations: int | None = option(
        None, "evolve.csv rows to reach (default 300; a resumed run keeps its own)", group=SEARCH, kind=int, low=1
    )
    strategy: str = option(
        "classic",
        "search: classic (upstream v6/v7 GA), population (upstream's current GA), "
        "random, tpe or cmaes (Optuna: pip install 'yolo_ray[optuna]')",
        group=SEARCH,
        choices=STRATEGIES,
    )
    population: int = option(
        50, "population GA: individuals per GA generation (--generations still counts rows)", group=SEARCH
    )
    search_space: str | None = option(
        None,
        "search space: shipped name or yaml path (default yolov5, yolov5_population for --strategy population)",
        group=SEARCH,
        kind=str,
    )
    parent: str = option("single", "classic: parent selection", group=SEARCH, choices=("single", "weighted"))
    time_budget: str | None = option(
        None, "start no trial after this long, e.g. 8h, 90m (running ones finish)", group=SEARCH, kind=str, runtime=True
    )
    patience_rows: int | None = option(
        None,
        "stop when the best fitness has not improved for this many rows",
        group=SEARCH,
        kind=int,
        low=1,
        runtime=True,
        deprecated=("--patience",),
    )
    seed: int | None = option(
        None, "seed for a reproducible evolution (default: fresh)", group=SEARCH, kind=int, low=0, high=2**31
    )
    early_stop: bool = option(
        False, "stop hopeless trials early (ASHA on per-epoch fitness; validates every epoch)", group=SEARCH
    )
    resume: Any = option(
        False,
        "continue a run directory (or a stored run, STORAGE_URI/name) until its evolve.csv "
        "holds --generations rows (default: the newest under --project)",
        group=SEARCH,
        kind=str,
        nargs="?",
        const=True,
        runtime=True,
    )
    max_failed_trials: int | None = option(
        None,
        "end the run after this many failed trials (default max(10, generations/10))",
        group=SEARCH,
        kind=int,
        low=1,
        runtime=True,
    )
    max_retries: int = option(2, "retries of a trial whose process died", group=SEARCH, low=0, runtime=True)
    project: str = option("runs/evolve", "save to project/name", group=SEARCH)
    name: str = option("exp", "save to project/name", group=SEARCH)
    exist_ok: bool = option(False, "existing project/name ok, do not increment", group=SEARCH, runtime=True)

    concurrency: int | None = option(
        None, "trials at once (default: as many as the cluster's resources fit)", group=RAY, kind=int, low=1
    )
    cpus_per_trial: float | None = option(
        None,
        "CPUs per trial, all its workers (default: 1 per CPU worker, the GPU nodes' CPUs per GPU for GPU workers)",
        group=RAY,
        kind=float,
        low=0,
        low_open=True,
    )
    gpus_per_trial: float | None = option(
        None,
        "GPUs per trial, all its workers (default: 1 per worker if the "
        "cluster has GPUs, else 0; below 1 only for single-worker trials; "
        "more than 1 on one worker becomes that many DDP workers)",
        group=RAY,
        kind=float,
        low=0,
    )
    ray_workers: int = option(1, "Ray Train workers per trial (>1: DDP)", group=RAY, runtime=False)
    address: str | None = option(
        None, "Ray cluster ('auto' joins the running one; default: a new local cluster)", group=RAY, kind=str
    )
    storage_path: str | None = option(
        None,
        "keep the run at this storage URI (s3://, gs://, file://): STORAGE/name, "
        "evolve.csv and results uploaded after every row, Tune's state beside "
        "them",
        group=RAY,
        kind=str,
    )
    tune_storage: str | None = option(
        None, "a folder for Ray Tune's own state (default: the run folder)", group=RAY, kind=str
    )
    bucket: str | None = option(None, "upstream's spelling: --storage-path gs://BUCKET", group=RAY, kind=str)
    share_images: bool = option(
        True,
        "each trial decodes its own images (default: decoded once, shared through the object store when they fit)",
        group=RAY,
        negated="--no-share-images",
    )
    placement_timeout: float = option(
        900.0,
        "seconds to wait for one trial's resources (an autoscaler adding GPU nodes) before an error",
        group=RAY,
        low=0,
        low_open=True,
    )

    def __post_init__(self) -> None:
        check_values(self)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EvolveConfig:
        """From one flat mapping (evolve.py's options, an evolution's opt.yaml): the training options go to
        `train`; the old name `patience` (rows) is read as patience_rows."""
        options = dict(options)
        if options.get("patience") is not None:
            LOGGER.warning(
                "WARNING: evolve's --patience is now --patience-rows (rows without improvement; "
                "train.py's --patience counts epochs); the old spelling still works"
            )
            options["patience_rows"] = options.pop("patience")
        train_defaults = EvolveConfig().train.to_dict()
        train = TrainConfig.from_options(
            {**train_defaults, **{k: v for k, v in options.items() if k in train_defaults and k in TRAINING_KEYS}}
        )
        return config_from_options(cls, {**options, "train": train})

    def to_dict(self) -> dict[str, Any]:
        """One flat mapping: every trial's training options, then the search's (an evolution's opt.yaml)."""
        own = {f.name: plain_value(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "train"}
        return {**self.train.training_options(), **own}

    def saved_options(self) -> dict[str, Any]:
        """What an evolution's opt.yaml keeps: the options a resumed run takes over (not the runtime ones)."""
        runtime = {f.name for f in dataclasses.fields(self) if f.metadata.get("runtime")}
        return {k: v for k, v in self.to_dict().items() if k not in runtime}


TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["group"] == TRAINING)
