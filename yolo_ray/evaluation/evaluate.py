"""The one evaluation path of training's validation and of val.py: inference over a loader, NMS, TP
matching in original pixel space, AP per class, optional confusion matrix and per-batch outputs."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from yolo_ray.boxes import scale_boxes, xywh2xyxy
from yolo_ray.metrics import nms_input
from yolo_ray.metrics import APResult, ConfusionMatrix, ap_per_class, match_predictions, non_max_suppression

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # mAP@0.5:0.95


@dataclass
class BatchOutput:
    """What val.py writes per batch: images, normalised targets [img, cls, xywh], letterboxed and native predictions."""

    index: int
    imgs: torch.Tensor  # (B, 3, H, W) as the loader gave them (uint8)
    targets: torch.Tensor  # (n, 6) normalised
    paths: tuple[str, ...]
    shapes: tuple
    preds: list[torch.Tensor]  # per image (k, 6) [x1, y1, x2, y2, conf, cls] in letterboxed pixels
    native: list[torch.Tensor]  # the same boxes in each image's original pixels


@dataclass
class Evaluation:
    results: tuple[float, ...]  # P, R, mAP@.5, mAP@.5:.95, val box, obj, cls loss
    maps: np.ndarray  # (nc,) per-class mAP@.5:.95 (absent classes get the mean)
    seen: int  # images
    nt: np.ndarray  # (nc,) ground-truth instances per class
    ap: APResult | None  # per-class results of the classes present, None without labels
    confusion: ConfusionMatrix | None
    times: tuple[float, float, float]  # seconds: pre-process, inference, NMS (all images)
    shape: tuple[int, ...] = field(default=())  # the last batch's input shape


class _Timer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.total = 0.0

    def __enter__(self) -> _Timer:
        if self.cuda:
            torch.cuda.synchronize()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.total += time.perf_counter() - self.start


def _device(model: nn.Module) -> torch.device:
    """A Backend knows its device (an ONNX one has no parameters); a torch model's is its parameters'."""
    return model.device if isinstance(getattr(model, "device", None), torch.device) else next(model.parameters()).device


@torch.no_grad()
def evaluate(
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
    confusion: bool = False,
    on_batch: Callable[[BatchOutput], None] | None = None,
    augment: bool = False,
    hybrid: bool = False,
) -> Evaluation:
    """Score `model` on `loader` batches (imgs uint8, targets, paths, shapes) as upstream's val.run.

    Boxes are matched in each image's original pixel space (labels and predictions both scaled back
    through the letterbox). model: a DetectionModel (or Ensemble) giving (predictions, maps), or a
    Backend giving predictions. half: fp16 weights and inputs (on any device, as upstream's val.py);
    autocast_dtype: run the forward pass under autocast instead (e.g. bf16 on CPU). augment: test-time
    augmentation (a Backend of PyTorch weights);
    hybrid: the labels join the predictions before NMS (upstream's --save-hybrid autolabelling).
    The model is left in float32, in the train/eval mode it came in.
    """
    device = _device(model)
    was_training = model.training
    model.half() if half else model.float()
    model.eval()
    iouv = IOU_THRESHOLDS.to(device)
    loss = torch.zeros(3, device=device)
    matrix = ConfusionMatrix(nc) if confusion else None
    stats: list[tuple[torch.Tensor, ...]] = []
    batches = seen = 0
    timers = _Timer(device), _Timer(device), _Timer(device)
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    shape: tuple[int, ...] = ()

    for batch_i, (imgs_in, targets_in, paths, shapes) in enumerate(loader):
        batches += 1
        with timers[0]:
            imgs = imgs_in.to(device, non_blocking=True)
            imgs = ((imgs.half() if half else imgs.float()) / 255).contiguous(memory_format=memory_format)
            targets = targets_in.to(device, copy=True)  # scaled to pixels below: never touch the caller's tensor
        shape = tuple(imgs.shape)
        _, _, height, width = imgs.shape
        with timers[1], amp:
            out = model(imgs, augment=True) if augment else model(imgs)
        preds, train_out = out if isinstance(out, tuple) else (out, None)
        if compute_loss is not None:
            loss += compute_loss([x.float() for x in train_out], targets)[1]
        targets[:, 2:] *= torch.tensor((width, height, width, height), device=device)
        hybrid_labels = [targets[targets[:, 0] == i, 1:] for i in range(len(imgs))] if hybrid else ()
        with timers[2]:
            preds = non_max_suppression(
                nms_input(preds),
                conf_thres,
                iou_thres,
                labels=hybrid_labels,
                multi_label=True,
                agnostic=single_cls,
                max_det=max_det,
            )
        native = []
        for si, pred in enumerate(preds):
            seen += 1
            labels = targets[targets[:, 0] == si, 1:]
            if single_cls:
                pred[:, 5] = 0
            original_shape, ratio_pad = shapes[si]
            predn = scale_boxes(imgs[si].shape[1:], pred.clone(), original_shape, ratio_pad)
            native.append(predn)
            tbox = scale_boxes(imgs[si].shape[1:], xywh2xyxy(labels[:, 1:5]), original_shape, ratio_pad)
            labelsn = torch.cat((labels[:, 0:1], tbox), 1)
            if pred.shape[0] == 0:
                if labels.shape[0]:
                    empty = torch.zeros(0, device=device)
                    stats.append(
                        (torch.zeros(0, len(iouv), dtype=torch.bool, device=device), empty, empty, labels[:, 0])
                    )
                    if matrix is not None:
                        matrix.process_batch(None, labels[:, 0])
                continue
            correct = torch.zeros(pred.shape[0], len(iouv), dtype=torch.bool, device=device)
            if labels.shape[0]:
                correct = match_predictions(predn, labelsn, iouv)
                if matrix is not None:
                    matrix.process_batch(predn, labelsn)
            stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))
        if on_batch is not None:
            on_batch(BatchOutput(batch_i, imgs_in, targets_in, tuple(paths), tuple(shapes), preds, native))

    model.float()
    model.train(was_training)
    arrays = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]
    nt = np.bincount(arrays[3].astype(int), minlength=nc) if arrays else np.zeros(nc, dtype=int)
    mp = mr = map50 = map5095 = 0.0
    maps = np.zeros(nc)
    result = None
    if arrays and arrays[0].any():
        result = ap_per_class(*arrays)
        ap50, ap = result.ap[:, 0], result.ap.mean(1)
        mp, mr, map50, map5095 = result.p.mean(), result.r.mean(), ap50.mean(), ap.mean()
        maps += map5095  # classes absent from the val set get the mean, as upstream
        for i, c in enumerate(result.classes):
            maps[c] = ap[i]
    val_losses = (loss.cpu() / max(batches, 1)).tolist()
    results = (float(mp), float(mr), float(map50), float(map5095), *val_losses)
    times = tuple(t.total for t in timers)
    return Evaluation(results, maps, seen, nt, result, matrix, times, shape)
