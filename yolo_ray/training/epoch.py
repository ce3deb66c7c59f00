"""One epoch of training on one rank: forward, loss, backward and the optimizer steps (upstream train.py's
inner loop), over the RunState the loop set up."""

from __future__ import annotations

import contextlib
import math
import random

import torch
from torch import nn

from yolo_ray.console import EpochProgress
from yolo_ray.data import labels_to_image_weights
from yolo_ray.training.optim import apply_warmup
from yolo_ray.training.run_state import RunState


def train_one_epoch(run: RunState, epoch: int) -> torch.Tensor:
    """One pass over this rank's shard: forward, loss, backward, an optimizer step every `accumulate`
    batches (warmup first), EMA. Returns the epoch's mean (box, obj, cls) loss."""
    opt, ctx, model, optimizer, precision, nb = run.opt, run.ctx, run.model, run.optimizer, run.precision, run.nb
    model.train()
    if opt["image_weights"] and not ctx.distributed:
        cw = run.bare.class_weights.cpu().numpy() * (1 - run.maps) ** 2 / run.nc
        iw = labels_to_image_weights(run.dataset.labels, nc=run.nc, class_weights=cw)
        run.dataset.indices = random.choices(range(run.dataset.n), weights=iw, k=run.dataset.n)
    if hasattr(run.train_loader.sampler, "set_epoch"):
        run.train_loader.sampler.set_epoch(epoch)
    mloss = torch.zeros(3, device=run.device)
    progress = EpochProgress(epoch, run.epochs, nb) if ctx.is_main else None
    optimizer.zero_grad()
    for i, (imgs_u8, targets, paths, _) in enumerate(run.train_loader):
        ni = i + nb * epoch
        imgs = imgs_u8.to(run.device, non_blocking=True).float() / 255
        if ni <= run.nw:
            run.accumulate = apply_warmup(optimizer, ni, run.nw, run.lf(epoch), run.hyp, run.batch_size)
        if opt["multi_scale"]:
            imgs = random_rescale(imgs, run.imgsz, run.gs)
        imgs = precision.prepare_input(imgs)
        step_now = ni - run.last_opt_step >= run.accumulate
        # between optimizer steps DDP need not all-reduce: gradients just accumulate locally
        sync = model.no_sync() if ctx.distributed and not step_now else contextlib.nullcontext()
        with sync:
            with precision.autocast():
                pred = model(imgs)
            loss, loss_items = run.compute_loss([p.float() for p in pred], targets.to(run.device))
            if ctx.distributed:
                loss *= ctx.world_size  # DDP averages gradients over ranks; upstream keeps the sum
            precision.scaler.scale(loss).backward()
        if step_now:
            _optimizer_step(run)
            run.last_opt_step = ni
        mloss = (mloss * i + loss_items) / (i + 1)
        if progress is not None:
            progress.update(i, mloss, imgs.shape[0], targets.shape[0], imgs.shape[-1])
        if run.plots and ni < 3:
            from yolo_ray.data.plots import plot_images

            plot_images(imgs_u8, targets, paths, run.save_dir / f"train_batch{ni}.jpg", names=run.names)
    if progress is not None:
        progress.close()
    return mloss


def _optimizer_step(run: RunState) -> None:
    """Unscale, clip, step, zero the gradients, update the EMA."""
    scaler = run.precision.scaler
    scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm=10.0)
    scaler.step(run.optimizer)
    scaler.update()
    run.optimizer.zero_grad()
    if run.ema is not None:
        run.ema.update(run.bare)


def random_rescale(imgs: torch.Tensor, imgsz: int, gs: int) -> torch.Tensor:
    """Multi-scale: a random size in [0.5, 1.5] x imgsz on the stride grid, bilinear."""
    size = random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + gs) // gs * gs
    sf = size / max(imgs.shape[2:])
    if sf == 1:
        return imgs
    new_shape = [math.ceil(x * sf / gs) * gs for x in imgs.shape[2:]]
    return nn.functional.interpolate(imgs, size=new_shape, mode="bilinear", align_corners=False)
