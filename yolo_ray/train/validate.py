"""Validation during training, as upstream's val.run does it for train.py: P, R, mAP and val losses."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from yolo_ray.boxes import scale_boxes, xywh2xyxy
from yolo_ray.metrics import ap_per_class, match_predictions, non_max_suppression

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # mAP@0.5:0.95


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: Iterable,
    nc: int,
    compute_loss: Callable | None = None,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    single_cls: bool = False,
    half: bool = False,
    autocast_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[tuple[float, ...], np.ndarray]:
    """((P, R, mAP@.5, mAP@.5:.95, val box, obj, cls loss), per-class mAP@.5:.95 of length nc).

    Boxes are matched in each image's original pixel space (labels and predictions both scaled back
    through the letterbox). half: fp16 weights on CUDA, as upstream; autocast_dtype: run the forward
    pass under autocast instead (e.g. bf16 on CPU); predictions are cast to fp32 before NMS either way.
    """
    device = next(model.parameters()).device
    half = half and device.type == "cuda"
    was_training = model.training
    model.half() if half else model.float()
    model.eval()
    iouv = IOU_THRESHOLDS.to(device)
    loss = torch.zeros(3, device=device)
    stats: list[tuple[torch.Tensor, ...]] = []
    batches = 0
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()

    for imgs, targets, _, shapes in loader:
        batches += 1
        imgs = imgs.to(device, non_blocking=True)
        imgs = ((imgs.half() if half else imgs.float()) / 255).contiguous(memory_format=memory_format)
        targets = targets.to(device, copy=True)  # scaled to pixels below: never touch the caller's tensor
        _, _, height, width = imgs.shape
        with amp:
            preds, train_out = model(imgs)
        if compute_loss is not None:
            loss += compute_loss([x.float() for x in train_out], targets)[1]
        targets[:, 2:] *= torch.tensor((width, height, width, height), device=device)
        preds = non_max_suppression(
            preds.float(), conf_thres, iou_thres, multi_label=True, agnostic=single_cls, max_det=max_det
        )
        for si, pred in enumerate(preds):
            labels = targets[targets[:, 0] == si, 1:]
            correct = torch.zeros(pred.shape[0], len(iouv), dtype=torch.bool, device=device)
            if pred.shape[0] == 0:
                if labels.shape[0]:
                    empty = torch.zeros(0, device=device)
                    stats.append((correct, empty, empty, labels[:, 0]))
                continue
            if single_cls:
                pred[:, 5] = 0
            original_shape, ratio_pad = shapes[si]
            predn = pred.clone()
            scale_boxes(imgs[si].shape[1:], predn[:, :4], original_shape, ratio_pad)
            if labels.shape[0]:
                tbox = xywh2xyxy(labels[:, 1:5])
                scale_boxes(imgs[si].shape[1:], tbox, original_shape, ratio_pad)
                correct = match_predictions(predn, torch.cat((labels[:, 0:1], tbox), 1), iouv)
            stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))

    model.float()
    model.train(was_training)
    arrays = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]
    mp = mr = map50 = map5095 = 0.0
    maps = np.zeros(nc)
    if arrays and arrays[0].any():
        result = ap_per_class(*arrays)
        ap50, ap = result.ap[:, 0], result.ap.mean(1)
        mp, mr, map50, map5095 = result.p.mean(), result.r.mean(), ap50.mean(), ap.mean()
        maps += map5095  # classes absent from the val set get the mean, as upstream
        for i, c in enumerate(result.classes):
            maps[c] = ap[i]
    val_losses = (loss.cpu() / max(batches, 1)).tolist()
    return (float(mp), float(mr), float(map50), float(map5095), *val_losses), maps
