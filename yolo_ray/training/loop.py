"""train_loop_per_worker: one YOLOv5 v7.0 training run, in one process or as one Ray Train DDP rank.

Read top to bottom: setup (options, model, optimizer, data, anchors, DDP), the epoch loop, the end.
Only rank 0 validates, writes files and returns results; every rank reports to Ray equally often.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from yolo_ray.config import UserError, load_hyp
from yolo_ray.console import LOGGER, TRAIN_LOG, EpochProgress, log_file, setup_logging
from yolo_ray.data import create_dataloader, labels_to_class_weights, labels_to_image_weights, load_data_config
from yolo_ray.data.synthetic import locate_data_yaml
from yolo_ray.loss import ComputeLoss
from yolo_ray.metrics import RESULT_KEYS, fitness
from yolo_ray.models import de_parallel
from yolo_ray.training.autoanchor import check_anchors
from yolo_ray.training.checkpoint import (
    RESULTS_CSV_KEYS, append_results_row, build_checkpoint, save_checkpoint, strip_optimizer, truncate_results,
)
from yolo_ray.cluster.nodes import node_weights
from yolo_ray.training.model_setup import (
    check_img_size, create_model, freeze_layers, init_seeds, process_seed, scale_loss_gains,
)
from yolo_ray.training.optim import (
    EarlyStopping, ModelEMA, accumulation_steps, apply_warmup, build_optimizer, lr_lambda, scaled_weight_decay,
    warmup_iterations,
)
from yolo_ray.training.precision import Precision
from yolo_ray.training.restart import epochs_to_train, finished_results, starting_checkpoint
from yolo_ray.cluster.session import (
    broadcast_from_main, claim_device, local_main_first, report, resolve_shared, worker_context,
)
from yolo_ray.cluster.storage import attach_storage, staging_dir
from yolo_ray.training.trackers import RunTrackers
from yolo_ray.training.validate import validate

DEFAULTS: dict[str, Any] = {
    "weights": None, "cfg": None, "hyp": None, "epochs": 100, "batch_size": 16, "imgsz": 640,
    "rect": False, "resume": None, "nosave": False, "noval": False, "noautoanchor": False, "noplots": False,
    "cache": None, "image_weights": False, "device": "", "multi_scale": False, "single_cls": False,
    "optimizer": "SGD", "sync_bn": False, "cos_lr": False, "workers": 8, "label_smoothing": 0.0, "patience": 100,
    "freeze": [0], "save_period": -1, "seed": 0, "evolve": False, "report_every_epoch": False,
    "amp": True, "channels_last": True, "decoded": None, "deterministic": False, "gpu_memory_fraction": None,
    "run_id": None, "cwd": None, "storage_uri": None, "attempt": 0, "log_level": "info", "tensorboard": True,
    "trackers": None,
}
EMA_ATTRS = ("yaml", "nc", "hyp", "names", "stride", "class_weights")


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, float] | None:
    """Train as config says (TRAIN CONFIG keys); rank 0 returns the final results, other ranks None."""
    with contextlib.ExitStack() as run_log:
        return _train({**DEFAULTS, **config}, run_log)


def _train(opt: dict[str, Any], run_log: contextlib.ExitStack) -> dict[str, float] | None:
    ctx = worker_context(opt["device"])
    if ctx.mode != "plain":  # a Ray worker process: its records reach the driver through its stdout
        setup_logging(opt["log_level"])
    device = ctx.device
    claim_device(ctx, opt["gpu_memory_fraction"],
                 benchmark=not (opt["deterministic"] or opt["rect"] or opt["multi_scale"]))
    evolve = bool(opt["evolve"])
    noval, nosave = opt["noval"] or evolve, opt["nosave"] or evolve
    plots = ctx.is_main and not evolve and not opt["noplots"]
    # A stored run is staged in this node's own folder for it (nodes may share no disk with the driver)
    save_dir = staging_dir(opt["storage_uri"]) if opt["storage_uri"] else Path(opt["save_dir"])
    weights_dir = save_dir / "weights"
    last, best = weights_dir / "last.pt", weights_dir / "best.pt"
    if opt["storage_uri"] and opt["resume"]:  # the driver's copy of the stored last.pt: here it is this node's
        opt["resume"] = str(last)
    results_csv = save_dir / "results.csv"
    if ctx.is_main:
        (save_dir if evolve else weights_dir).mkdir(parents=True, exist_ok=True)
        if not evolve:  # a trial's lines stay in Ray's logs; the evolution has its own
            run_log.enter_context(log_file(save_dir / TRAIN_LOG))
    uploader = attach_storage(ctx, opt["storage_uri"], save_dir)
    init_seeds(process_seed(int(opt["seed"]), ctx.rank, ctx.distributed), deterministic=bool(opt["deterministic"]))
    opt["resume"], resume_ckpt = starting_checkpoint(ctx, opt["resume"], last, opt["run_id"])
    if finished_results(resume_ckpt) is not None:  # an earlier attempt did everything but the last upload
        if uploader is not None:
            uploader.upload()
        return finished_results(resume_ckpt) if ctx.is_main else None

    # ---- data config, model, hyperparameters
    hyp = load_hyp(opt["hyp"])  # our own copy: train() scales some values
    trackers = RunTrackers(save_dir, opt, hyp) if ctx.is_main and not evolve else None
    data = load_data_config(locate_data_yaml(opt["data"]), opt["cwd"])
    single_cls = bool(opt["single_cls"])
    nc = 1 if single_cls else data["nc"]
    names = {0: "item"} if single_cls and len(data["names"]) != 1 else data["names"]
    weights = node_weights(opt["weights"]) if resume_ckpt is None else None  # resuming: the checkpoint's model
    model = create_model(opt["cfg"], weights, resume_ckpt, nc, hyp).to(device)
    frozen = freeze_layers(model, list(opt["freeze"]))
    if frozen and ctx.is_main:
        LOGGER.info(f"freezing {len(frozen)} parameter tensors")
    gs = max(int(model.stride.max()), 32)
    imgsz = check_img_size(int(opt["imgsz"]), gs, floor=gs * 2)
    epochs, batch_size = int(opt["epochs"]), int(opt["batch_size"])
    if batch_size % ctx.world_size:
        raise UserError(f"--batch-size {batch_size} must be a multiple of the {ctx.world_size} workers")

    # ---- optimizer and LR schedule (nominal batch 64: accumulate gradients, scale weight decay)
    best_fitness = 0.0
    if resume_ckpt is not None and resume_ckpt["epoch"] < 0:
        raise UserError(f"{opt['resume']}: training is finished, nothing to resume")
    start_epoch, epochs = epochs_to_train(resume_ckpt, epochs)
    accumulate = accumulation_steps(batch_size)
    hyp["weight_decay"] = scaled_weight_decay(hyp["weight_decay"], batch_size)
    optimizer = build_optimizer(model, opt["optimizer"], hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
    lf = lr_lambda(epochs, hyp["lrf"], bool(opt["cos_lr"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    if resume_ckpt is not None:  # after the scheduler: the saved lr, not lf(0), continues
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        best_fitness = float(resume_ckpt["best_fitness"])

    # ---- data: a shard of the train set per rank, validation on rank 0 only
    decoded = resolve_shared(opt["decoded"]) or {}
    per_rank_batch = batch_size // ctx.world_size
    # Under Ray, loader processes per rank stay within the CPUs Ray gave this rank.
    workers = min(int(opt["workers"]), ctx.cpus) if ctx.cpus is not None else int(opt["workers"])
    pin = device.type == "cuda"
    with local_main_first(ctx):
        train_loader, dataset = create_dataloader(
            data["train"], imgsz, per_rank_batch, gs, single_cls, hyp=hyp, augment=True, cache=opt["cache"],
            rect=opt["rect"], rank=ctx.rank if ctx.distributed else -1, world_size=ctx.world_size,
            workers=workers, image_weights=opt["image_weights"], shuffle=True, seed=opt["seed"],
            decoded=decoded.get("train"), prefix="train: ", nc=nc, pin_memory=pin, ram_copies=ctx.local_world_size,
        )
    labels = np.concatenate(dataset.labels, 0) if len(dataset.labels) else np.zeros((0, 5))
    if len(labels) and int(labels[:, 0].max()) >= nc:
        raise UserError(f"{opt['data']}: label class {int(labels[:, 0].max())} exceeds nc={nc}")
    nb = len(train_loader)
    val_loader = None
    if ctx.is_main:
        val_loader = create_dataloader(
            data["val"], imgsz, per_rank_batch * 2, gs, single_cls, hyp=hyp, cache=None if noval else opt["cache"],
            rect=True, rank=-1, workers=workers if ctx.cpus is not None else workers * 2, pad=0.5,
            decoded=decoded.get("val"), prefix="val: ", nc=nc, pin_memory=pin,
        )[0]

    # ---- labels plot and AutoAnchor (rank 0 decides; every rank takes its anchors)
    detect = model.model[-1]
    if ctx.is_main and not opt["resume"]:
        if plots:
            from yolo_ray.data.plots import plot_labels

            plot_labels(labels, names, save_dir)
        if not opt["noautoanchor"]:
            check_anchors(detect, dataset.shapes, dataset.labels, thr=hyp["anchor_t"], imgsz=imgsz,
                          rng=np.random.default_rng(opt["seed"]))
        model.half().float()  # pre-reduce anchor precision, so fp16 checkpoints hold the anchors exactly
    if ctx.distributed:
        dist.broadcast(detect.anchors, src=0)

    # ---- loss gains for this model/data/size; precision; EMA (rank 0); DDP
    hyp = scale_loss_gains(hyp, detect.nl, nc, imgsz, float(opt["label_smoothing"]))
    model.nc, model.hyp, model.names = nc, hyp, names
    model.class_weights = torch.from_numpy(labels_to_class_weights(dataset.labels, nc)).to(device) * nc
    precision = Precision(device, bool(opt["amp"]), bool(opt["channels_last"]))
    model = precision.prepare_model(model)
    ema = ModelEMA(model) if ctx.is_main else None
    if ema is not None and resume_ckpt is not None:
        ema.load_state(resume_ckpt["ema"], resume_ckpt["updates"])
    resume_ckpt = None  # everything is loaded: free the memory
    if ctx.distributed:
        if opt["sync_bn"] and device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif opt["sync_bn"] and ctx.is_main:
            LOGGER.warning("WARNING: --sync-bn needs CUDA (as upstream); training with per-rank BatchNorm")
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    bare = de_parallel(model)
    compute_loss = ComputeLoss(bare, hyp)

    # ---- training
    nw = warmup_iterations(hyp["warmup_epochs"], nb)
    last_opt_step = -1
    maps = np.zeros(nc)
    results: tuple[float, ...] = (0.0,) * 7
    fi = 0.0
    scheduler.last_epoch = start_epoch - 1  # upstream's schedule: post-warmup epochs use lf(epoch - 1)
    stopper = EarlyStopping(patience=int(opt["patience"]))
    if ctx.is_main and (opt["resume"] or opt["attempt"]):  # rows a failed attempt wrote after its last save
        truncate_results(results_csv, start_epoch - 1)
    if ctx.is_main:
        LOGGER.info(f"Image sizes {imgsz} train, {imgsz} val; {nb} batches/epoch of {per_rank_batch} per rank x "
              f"{ctx.world_size}; {precision}; logging results to {save_dir}\nStarting training for {epochs} epochs...")
    t0 = time.time()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        model.train()
        if opt["image_weights"] and not ctx.distributed:
            cw = bare.class_weights.cpu().numpy() * (1 - maps) ** 2 / nc
            iw = labels_to_image_weights(dataset.labels, nc=nc, class_weights=cw)
            dataset.indices = random.choices(range(dataset.n), weights=iw, k=dataset.n)
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        mloss = torch.zeros(3, device=device)
        progress = EpochProgress(epoch, epochs, nb) if ctx.is_main else None
        optimizer.zero_grad()
        for i, (imgs_u8, targets, paths, _) in enumerate(train_loader):
            ni = i + nb * epoch
            imgs = imgs_u8.to(device, non_blocking=True).float() / 255
            if ni <= nw:
                accumulate = apply_warmup(optimizer, ni, nw, lf(epoch), hyp, batch_size)
            if opt["multi_scale"]:
                imgs = _random_rescale(imgs, imgsz, gs)
            imgs = precision.prepare_input(imgs)
            step_now = ni - last_opt_step >= accumulate
            # between optimizer steps DDP need not all-reduce: gradients just accumulate locally
            sync = model.no_sync() if ctx.distributed and not step_now else contextlib.nullcontext()
            with sync:
                with precision.autocast():
                    pred = model(imgs)
                loss, loss_items = compute_loss([p.float() for p in pred], targets.to(device))
                if ctx.distributed:
                    loss *= ctx.world_size  # DDP averages gradients over ranks; upstream keeps the sum
                precision.scaler.scale(loss).backward()
            if step_now:
                precision.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
                precision.scaler.step(optimizer)
                precision.scaler.update()
                optimizer.zero_grad()
                if ema is not None:
                    ema.update(bare)
                last_opt_step = ni
            mloss = (mloss * i + loss_items) / (i + 1)
            if progress is not None:
                progress.update(i, mloss, imgs.shape[0], targets.shape[0], imgs.shape[-1])
            if plots and ni < 3:
                from yolo_ray.data.plots import plot_images

                plot_images(imgs_u8, targets, paths, save_dir / f"train_batch{ni}.jpg", names=names)

        # ---- end of epoch: schedule, validate, log, save, report, maybe stop
        lr = [group["lr"] for group in optimizer.param_groups]
        scheduler.step()
        final_epoch = epoch + 1 == epochs or stopper.possible_stop
        validated = not noval or final_epoch or bool(opt["report_every_epoch"])
        if ctx.is_main:
            progress.close()
            ema.update_attr(bare, include=EMA_ATTRS)
            if validated:
                results, maps = _validate(ema.ema, val_loader, nc, compute_loss, single_cls, precision, not evolve)
            fi = float(fitness(np.array(results).reshape(1, -1))[0])
        fi = broadcast_from_main(fi, ctx)
        stop = stopper(epoch=epoch, fitness=fi)  # same inputs on every rank: all stop together
        best_fitness = max(best_fitness, fi)
        row = [*mloss.tolist(), *results, *lr]
        if ctx.is_main:
            append_results_row(results_csv, epoch, row)
            if trackers is not None:
                trackers.log_epoch(epoch, row)
            if not nosave or (final_epoch and not evolve):
                ckpt = build_checkpoint(epoch, best_fitness, bare, ema.ema, ema.updates, optimizer, opt,
                                        training_done=stop or epoch + 1 == epochs)
                save_checkpoint(ckpt, last)
                if best_fitness == fi:
                    save_checkpoint(ckpt, best)
                if opt["save_period"] > 0 and epoch % opt["save_period"] == 0:
                    save_checkpoint(ckpt, weights_dir / f"epoch{epoch}.pt")
            if uploader is not None:
                uploader.upload()
        if validated:
            report(ctx, {**dict(zip(RESULTS_CSV_KEYS[1:], row)), "fitness": fi, "epoch": epoch})
        if stop:
            break

    # ---- after training (rank 0): slim checkpoints, re-check best.pt, plots, final results
    if not ctx.is_main:
        return None
    LOGGER.info(f"\n{epoch - start_epoch + 1} epochs completed in {(time.time() - t0) / 3600:.3f} hours.")
    # Each step can be done again: until last.pt is stripped (with the results, the step before the
    # upload) a restart after a failure here comes back to this point, not to epoch 0.
    if best.exists():
        strip_optimizer(best)
    if best.exists() and not evolve:
        from yolo_ray.evaluation.val import final_validation  # matplotlib and val's writers only when needed

        results = final_validation(best, data, val_loader, single_cls, save_dir, plots, compute_loss, device)
    if plots:
        _plot_results(results_csv)
    final = {**dict(zip(RESULT_KEYS, results)), "fitness": float(fitness(np.array(results).reshape(1, -1))[0]),
             "epoch": epoch}
    if last.exists():
        strip_optimizer(last, final_results=final)
    if trackers is not None:
        trackers.finish(epoch)
    if uploader is not None:
        uploader.upload()
    LOGGER.info(f"Results saved to {opt['storage_uri'] or save_dir}")
    return final


def _random_rescale(imgs: torch.Tensor, imgsz: int, gs: int) -> torch.Tensor:
    """Multi-scale: a random size in [0.5, 1.5] x imgsz on the stride grid, bilinear."""
    size = random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + gs) // gs * gs
    sf = size / max(imgs.shape[2:])
    if sf == 1:
        return imgs
    new_shape = [math.ceil(x * sf / gs) * gs for x in imgs.shape[2:]]
    return nn.functional.interpolate(imgs, size=new_shape, mode="bilinear", align_corners=False)


def _validate(model: nn.Module, loader, nc: int, compute_loss: ComputeLoss, single_cls: bool,
              precision: Precision, show: bool) -> tuple[tuple[float, ...], np.ndarray]:
    # fp16 weights on CUDA as upstream (half=amp); fp32 on CPU, where bf16 boxes would cost mAP@.95 accuracy
    return validate(model, loader, nc, compute_loss, show, single_cls=single_cls,
                    half=precision.dtype == torch.float16, memory_format=precision.memory_format)


def _plot_results(results_csv: Path) -> None:
    from yolo_ray.training.plots import plot_results  # matplotlib only when a run plots

    plot_results(results_csv)

