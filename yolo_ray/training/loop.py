"""train_loop_per_worker: one YOLOv5 v7.0 training run, in one process or as one Ray Train DDP rank.

Read top to bottom: setup here (options, model, optimizer, data, anchors, DDP), then train_one_epoch
(epoch.py), the end of each epoch and of training (epoch_end.py); the run's state is one RunState.
Only rank 0 validates, writes files and returns results; every rank reports to Ray equally often.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from yolo_ray.config import UserError, load_hyp
from yolo_ray.console import LOGGER, TRAIN_LOG, log_file, setup_logging
from yolo_ray.data import create_dataloader, labels_to_class_weights, load_data_config
from yolo_ray.data.synthetic import locate_data_yaml
from yolo_ray.loss import ComputeLoss
from yolo_ray.models import de_parallel
from yolo_ray.options import TrainConfig
from yolo_ray.training.autoanchor import check_anchors
from yolo_ray.training.checkpoint import (
    truncate_results,
)
from yolo_ray.cluster.nodes import node_weights
from yolo_ray.training.model_setup import (
    check_img_size,
    create_model,
    freeze_layers,
    init_seeds,
    process_seed,
    scale_loss_gains,
)
from yolo_ray.training.optim import (
    EarlyStopping,
    ModelEMA,
    accumulation_steps,
    build_optimizer,
    lr_lambda,
    scaled_weight_decay,
    warmup_iterations,
)
from yolo_ray.training.epoch import train_one_epoch
from yolo_ray.training.epoch_end import end_epoch, finish_training
from yolo_ray.training.precision import Precision
from yolo_ray.training.run_state import RunState
from yolo_ray.training.restart import epochs_to_train, finished_results, starting_checkpoint
from yolo_ray.cluster.session import (
    claim_device,
    local_main_first,
    resolve_shared,
    worker_context,
)
from yolo_ray.cluster.storage import attach_storage, staging_dir
from yolo_ray.training.trackers import RunTrackers

# What the loop takes besides TrainConfig's options (their defaults are TrainConfig's): set by the drivers.
WORKER_DEFAULTS: dict[str, Any] = {
    "evolve": False,
    "report_every_epoch": False,
    "decoded": None,
    "gpu_memory_fraction": None,
    "run_id": None,
    "cwd": None,
    "storage_uri": None,
    "attempt": 0,
    "log_level": "info",
    "save_dir": None,
    "resume": None,
}


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, float] | None:
    """Train as config says (TrainConfig's options and WORKER_DEFAULTS' keys); rank 0 returns the final
    results, other ranks None."""
    with contextlib.ExitStack() as run_log:
        return _train({**TrainConfig().to_dict(), **WORKER_DEFAULTS, **config}, run_log)


def _train(opt: dict[str, Any], run_log: contextlib.ExitStack) -> dict[str, float] | None:
    run = _start(opt, run_log)
    if finished_results(run.resume_ckpt) is not None:  # an earlier attempt did everything but the last upload
        if run.uploader is not None:
            run.uploader.upload()
        return finished_results(run.resume_ckpt) if run.ctx.is_main else None
    _build_model(run)
    _build_optimizer(run)
    _build_loaders(run)
    _check_anchors(run)
    _prepare_model(run)
    _begin_training(run)
    t0 = time.time()
    epoch = run.start_epoch - 1
    for epoch in range(run.start_epoch, run.epochs):
        mloss = train_one_epoch(run, epoch)
        if end_epoch(run, epoch, mloss):
            break
    return finish_training(run, epoch, t0)


def _start(opt: dict[str, Any], run_log: contextlib.ExitStack) -> RunState:
    """This rank's context and device, the run folder and its log, seeds, and the checkpoint to start from."""
    ctx = worker_context(opt["device"])
    if ctx.mode != "plain":  # a Ray worker process: its records reach the driver through its stdout
        setup_logging(opt["log_level"])
    claim_device(
        ctx, opt["gpu_memory_fraction"], benchmark=not (opt["deterministic"] or opt["rect"] or opt["multi_scale"])
    )
    evolve = bool(opt["evolve"])
    # A stored run is staged in this node's own folder for it (nodes may share no disk with the driver)
    save_dir = staging_dir(opt["storage_uri"]) if opt["storage_uri"] else Path(opt["save_dir"])
    run = RunState(
        opt,
        ctx,
        evolve,
        noval=opt["noval"] or evolve,
        nosave=opt["nosave"] or evolve,
        plots=ctx.is_main and not evolve and not opt["noplots"],
        save_dir=save_dir,
    )
    if opt["storage_uri"] and opt["resume"]:  # the driver's copy of the stored last.pt: here it is this node's
        opt["resume"] = str(run.last)
    if ctx.is_main:
        (save_dir if evolve else run.weights_dir).mkdir(parents=True, exist_ok=True)
        if not evolve:  # a trial's lines stay in Ray's logs; the evolution has its own
            run_log.enter_context(log_file(save_dir / TRAIN_LOG))
    run.uploader = attach_storage(ctx, opt["storage_uri"], save_dir)
    init_seeds(process_seed(int(opt["seed"]), ctx.rank, ctx.distributed), deterministic=bool(opt["deterministic"]))
    opt["resume"], run.resume_ckpt = starting_checkpoint(ctx, opt["resume"], run.last, opt["run_id"])
    return run


def _build_model(run: RunState) -> None:
    """Data config, model and hyperparameters."""
    opt, ctx = run.opt, run.ctx
    run.hyp = load_hyp(opt["hyp"])  # our own copy: train() scales some values
    run.trackers = RunTrackers(run.save_dir, opt, run.hyp) if ctx.is_main and not run.evolve else None
    run.data = load_data_config(locate_data_yaml(opt["data"]), opt["cwd"])
    single_cls = bool(opt["single_cls"])
    run.nc = 1 if single_cls else run.data["nc"]
    run.names = {0: "item"} if single_cls and len(run.data["names"]) != 1 else run.data["names"]
    weights = node_weights(opt["weights"]) if run.resume_ckpt is None else None  # resuming: the checkpoint's model
    run.model = create_model(opt["cfg"], weights, run.resume_ckpt, run.nc, run.hyp).to(run.device)
    frozen = freeze_layers(run.model, list(opt["freeze"]))
    if frozen and ctx.is_main:
        LOGGER.info(f"freezing {len(frozen)} parameter tensors")
    run.gs = max(int(run.model.stride.max()), 32)
    run.imgsz = check_img_size(int(opt["imgsz"]), run.gs, floor=run.gs * 2)
    run.epochs, run.batch_size = int(opt["epochs"]), int(opt["batch_size"])
    if run.batch_size % ctx.world_size:
        raise UserError(f"--batch-size {run.batch_size} must be a multiple of the {ctx.world_size} workers")


def _build_optimizer(run: RunState) -> None:
    """Optimizer and LR schedule (nominal batch 64: accumulate gradients, scale weight decay)."""
    hyp, resume_ckpt = run.hyp, run.resume_ckpt
    if resume_ckpt is not None and resume_ckpt["epoch"] < 0:
        raise UserError(f"{run.opt['resume']}: training is finished, nothing to resume")
    run.start_epoch, run.epochs = epochs_to_train(resume_ckpt, run.epochs)
    run.accumulate = accumulation_steps(run.batch_size)
    hyp["weight_decay"] = scaled_weight_decay(hyp["weight_decay"], run.batch_size)
    run.optimizer = build_optimizer(run.model, run.opt["optimizer"], hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
    run.lf = lr_lambda(run.epochs, hyp["lrf"], bool(run.opt["cos_lr"]))
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lr_lambda=run.lf)
    if resume_ckpt is not None:  # after the scheduler: the saved lr, not lf(0), continues
        run.optimizer.load_state_dict(resume_ckpt["optimizer"])
        run.best_fitness = float(resume_ckpt["best_fitness"])


def _build_loaders(run: RunState) -> None:
    """A shard of the train set per rank, validation on rank 0 only."""
    opt, ctx, hyp, nc = run.opt, run.ctx, run.hyp, run.nc
    single_cls = bool(opt["single_cls"])
    decoded = resolve_shared(opt["decoded"]) or {}
    run.per_rank_batch = run.batch_size // ctx.world_size
    # Under Ray, loader processes per rank stay within the CPUs Ray gave this rank.
    workers = min(int(opt["workers"]), ctx.cpus) if ctx.cpus is not None else int(opt["workers"])
    pin = run.device.type == "cuda"
    with local_main_first(ctx):
        run.train_loader, run.dataset = create_dataloader(
            run.data["train"],
            run.imgsz,
            run.per_rank_batch,
            run.gs,
            single_cls,
            hyp=hyp,
            augment=True,
            cache=opt["cache"],
            rect=opt["rect"],
            rank=ctx.rank if ctx.distributed else -1,
            world_size=ctx.world_size,
            workers=workers,
            image_weights=opt["image_weights"],
            shuffle=True,
            seed=opt["seed"],
            decoded=decoded.get("train"),
            prefix="train: ",
            nc=nc,
            pin_memory=pin,
            ram_copies=ctx.local_world_size,
        )
    labels = run.dataset.labels
    run.labels = np.concatenate(labels, 0) if len(labels) else np.zeros((0, 5))
    if len(run.labels) and int(run.labels[:, 0].max()) >= nc:
        raise UserError(f"{opt['data']}: label class {int(run.labels[:, 0].max())} exceeds nc={nc}")
    if ctx.is_main:
        run.val_loader = create_dataloader(
            run.data["val"],
            run.imgsz,
            run.per_rank_batch * 2,
            run.gs,
            single_cls,
            hyp=hyp,
            cache=None if run.noval else opt["cache"],
            rect=True,
            rank=-1,
            workers=workers if ctx.cpus is not None else workers * 2,
            pad=0.5,
            decoded=decoded.get("val"),
            prefix="val: ",
            nc=nc,
            pin_memory=pin,
        )[0]


def _check_anchors(run: RunState) -> None:
    """Labels plot and AutoAnchor (rank 0 decides; every rank takes its anchors)."""
    detect = run.model.model[-1]
    if run.ctx.is_main and not run.opt["resume"]:
        if run.plots:
            from yolo_ray.data.plots import plot_labels

            plot_labels(run.labels, run.names, run.save_dir)
        if not run.opt["noautoanchor"]:
            check_anchors(
                detect,
                run.dataset.shapes,
                run.dataset.labels,
                thr=run.hyp["anchor_t"],
                imgsz=run.imgsz,
                rng=np.random.default_rng(run.opt["seed"]),
            )
        run.model.half().float()  # pre-reduce anchor precision, so fp16 checkpoints hold the anchors exactly
    if run.ctx.distributed:
        dist.broadcast(detect.anchors, src=0)


def _prepare_model(run: RunState) -> None:
    """Loss gains for this model/data/size; precision; EMA (rank 0); DDP."""
    opt, ctx, device, nc = run.opt, run.ctx, run.device, run.nc
    run.hyp = scale_loss_gains(run.hyp, run.model.model[-1].nl, nc, run.imgsz, float(opt["label_smoothing"]))
    model = run.model
    model.nc, model.hyp, model.names = nc, run.hyp, run.names
    model.class_weights = torch.from_numpy(labels_to_class_weights(run.dataset.labels, nc)).to(device) * nc
    run.precision = Precision(device, bool(opt["amp"]), bool(opt["channels_last"]))
    model = run.precision.prepare_model(model)
    run.ema = ModelEMA(model) if ctx.is_main else None
    if run.ema is not None and run.resume_ckpt is not None:
        run.ema.load_state(run.resume_ckpt["ema"], run.resume_ckpt["updates"])
    run.resume_ckpt = None  # everything is loaded: free the memory
    if ctx.distributed:
        if opt["sync_bn"] and device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif opt["sync_bn"] and ctx.is_main:
            LOGGER.warning("WARNING: --sync-bn needs CUDA (as upstream); training with per-rank BatchNorm")
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    run.model = model
    run.bare = de_parallel(model)
    run.compute_loss = ComputeLoss(run.bare, run.hyp)


def _begin_training(run: RunState) -> None:
    """Warmup, the schedule's position, early stopping, and results.csv cut back to the restart epoch."""
    run.nw = warmup_iterations(run.hyp["warmup_epochs"], run.nb)
    run.maps = np.zeros(run.nc)
    run.scheduler.last_epoch = run.start_epoch - 1  # upstream's schedule: post-warmup epochs use lf(epoch - 1)
    run.stopper = EarlyStopping(patience=int(run.opt["patience"]))
    if run.ctx.is_main and (run.opt["resume"] or run.opt["attempt"]):  # rows a failed attempt wrote after its save
        truncate_results(run.results_csv, run.start_epoch - 1)
    if run.ctx.is_main:
        LOGGER.info(
            f"Image sizes {run.imgsz} train, {run.imgsz} val; {run.nb} batches/epoch of {run.per_rank_batch} "
            f"per rank x {run.ctx.world_size}; {run.precision}; logging results to {run.save_dir}\n"
            f"Starting training for {run.epochs} epochs..."
        )
