"""Detection metrics as YOLOv5 v7.0 computes them: IoU variants, AP per class, TP matching and
non-max suppression (fitness and the result keys: yolo_ray.scores)."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from yolo_ray.boxes import xywh2xyxy

__all__ = [
    "APResult",
    "PRCurves",
    "ConfusionMatrix",
    "box_iou",
    "bbox_iou",
    "ap_per_class",
    "compute_ap",
    "smooth",
    "match_predictions",
    "non_max_suppression",
]

LOGGER = logging.getLogger(__name__)

# Class offset that keeps boxes of different classes apart in class-aware NMS; larger than any image side.
MAX_WH = 7680
# Candidates beyond this many (by confidence) are dropped before NMS, bounding its cost.
MAX_NMS = 30000

# numpy 2 renamed trapz; keep both so older numpy still works.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


class PRCurves(NamedTuple):
    """The curves upstream plots (PR_curve.png, P/R/F1_curve.png), one row per class of APResult."""

    px: np.ndarray  # (1000,) the grid: confidence for p, r, f1; recall for pr
    pr: np.ndarray  # (nc, 1000) precision envelope over recall at IoU 0.5
    p: np.ndarray  # (nc, 1000) precision over confidence
    r: np.ndarray  # (nc, 1000) recall over confidence
    f1: np.ndarray  # (nc, 1000) F1 over confidence


class APResult(NamedTuple):
    """Per-class results for the classes present in the targets, in `classes` order."""

    p: np.ndarray  # (nc,) precision at the confidence of best mean F1
    r: np.ndarray  # (nc,) recall at that confidence
    ap: np.ndarray  # (nc, 10) AP at IoU 0.50:0.05:0.95
    f1: np.ndarray  # (nc,) F1 at that confidence
    classes: np.ndarray  # (nc,) int class ids
    curves: PRCurves | None = None


def box_iou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: (n, 4) x (m, 4) -> (n, m)."""
    a_min, a_max = box1[:, None, :2], box1[:, None, 2:]
    b_min, b_max = box2[None, :, :2], box2[None, :, 2:]
    inter = (torch.min(a_max, b_max) - torch.max(a_min, b_min)).clamp(0).prod(2)
    area1 = (a_max - a_min).prod(2)
    area2 = (b_max - b_min).prod(2)
    return inter / (area1 + area2 - inter + eps)


def bbox_iou(
    box1: torch.Tensor,
    box2: torch.Tensor,
    xywh: bool = True,
    GIoU: bool = False,
    DIoU: bool = False,
    CIoU: bool = False,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Element-wise (broadcast) IoU of boxes (..., 4) -> (..., 1), optionally the G/D/C-IoU variant."""
    if xywh:
        (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.chunk(4, -1), box2.chunk(4, -1)
        b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
        b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    else:
        b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
        b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
        # eps on the heights keeps the aspect-ratio term finite for degenerate boxes
        w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
        w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps

    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * (
        torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not (GIoU or DIoU or CIoU):
        return iou

    # smallest enclosing box
    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    if GIoU and not (DIoU or CIoU):
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area

    c2 = cw**2 + ch**2 + eps  # enclosing diagonal squared
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4  # centre distance squared
    if not CIoU:
        return iou - rho2 / c2
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():  # the trade-off weight is treated as a constant, as in the CIoU paper
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box-filter y with an odd window covering fraction f of its length, padding with the end values."""
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    padded = np.concatenate((pad * y[0], y, pad * y[-1]))
    return np.convolve(padded, np.ones(nf) / nf, mode="valid")


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AP from one recall/precision curve by COCO 101-point interpolation; also the padded curves."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # precision envelope: monotone non-increasing
    x = np.linspace(0, 1, 101)
    ap = float(_trapezoid(np.interp(x, mrec, mpre), x))
    return ap, mpre, mrec


def ap_per_class(
    tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, eps: float = 1e-16
) -> APResult:
    """AP at 10 IoU thresholds and P/R/F1 at the best-mean-F1 confidence, for each class in target_cls.

    tp (n, 10) bool: whether each detection is a true positive at each IoU threshold; conf, pred_cls (n,);
    target_cls (m,) the classes of all ground-truth boxes.
    """
    tp, conf, pred_cls = np.asarray(tp), np.asarray(conf), np.asarray(pred_cls)
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]

    classes, n_targets = np.unique(np.asarray(target_cls), return_counts=True)
    nc, n_iou = classes.shape[0], tp.shape[1]
    px = np.linspace(0, 1, 1000)  # confidence grid for the P, R, F1 curves
    ap, p, r = np.zeros((nc, n_iou)), np.zeros((nc, 1000)), np.zeros((nc, 1000))
    pr = np.zeros((nc, 1000))
    for ci, c in enumerate(classes):
        mask = pred_cls == c
        if not mask.any():
            continue
        tpc = tp[mask].cumsum(0)
        fpc = (1 - tp[mask]).cumsum(0)
        recall = tpc / (n_targets[ci] + eps)
        precision = tpc / (tpc + fpc)
        # conf is descending, so interpolate on -conf; above the highest conf nothing is detected
        r[ci] = np.interp(-px, -conf[mask], recall[:, 0], left=0)
        p[ci] = np.interp(-px, -conf[mask], precision[:, 0], left=1)
        for j in range(n_iou):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if j == 0:
                pr[ci] = np.interp(px, mrec, mpre)

    f1 = 2 * p * r / (p + r + eps)
    best = smooth(f1.mean(0), 0.1).argmax() if nc else 0
    curves = PRCurves(px, pr, p, r, f1)
    return APResult(p[:, best], r[:, best], ap, f1[:, best], classes.astype(int), curves)


def match_predictions(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor) -> torch.Tensor:
    """Which detections are true positives at each IoU threshold (validation's TP matching).

    detections (n, 6) [x1, y1, x2, y2, conf, cls]; labels (m, 5) [cls, x1, y1, x2, y2]; iouv (t,) thresholds.
    Returns a (n, t) bool tensor. Each label matches at most one detection and vice versa.
    """
    correct = np.zeros((detections.shape[0], iouv.shape[0]), dtype=bool)
    iou = box_iou(labels[:, 1:], detections[:, :4])
    same_class = labels[:, 0:1] == detections[:, 5]
    for ti, threshold in enumerate(iouv):
        label_idx, det_idx = torch.where((iou >= threshold) & same_class)
        if not label_idx.shape[0]:
            continue
        pairs = (label_idx.to(iou.dtype), det_idx.to(iou.dtype), iou[label_idx, det_idx])
        matches = torch.stack(pairs, 1).cpu().numpy()  # [label, detection, iou]
        if matches.shape[0] > 1:
            # Best IoU first, one label per detection, then one detection per label. The second pass sees
            # the rows in detection order (np.unique sorts), as upstream v7.0 does.
            matches = matches[matches[:, 2].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        correct[matches[:, 1].astype(int), ti] = True
    return torch.tensor(correct, dtype=torch.bool, device=iouv.device)


class ConfusionMatrix:
    """Upstream's detection confusion matrix: (nc + 1) x (nc + 1) counts, rows predicted, columns true,
    the last row/column being background (a missed object / a detection of nothing)."""

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45):
        self.matrix = np.zeros((nc + 1, nc + 1))
        self.nc, self.conf, self.iou_thres = nc, conf, iou_thres

    def process_batch(self, detections: torch.Tensor | None, labels: torch.Tensor) -> None:
        """detections (n, 6) [x1, y1, x2, y2, conf, cls] or None (no detections: labels are classes only);
        labels (m, 5) [cls, x1, y1, x2, y2], both in the same pixel space."""
        if detections is None:
            for gc in labels.int().tolist():
                self.matrix[self.nc, gc] += 1
            return
        detections = detections[detections[:, 4] > self.conf]
        gt_classes = labels[:, 0].int().cpu().numpy()
        det_classes = detections[:, 5].int().cpu().numpy()
        iou = box_iou(labels[:, 1:], detections[:, :4])
        label_idx, det_idx = torch.where(iou > self.iou_thres)
        if label_idx.shape[0]:
            matches = torch.stack((label_idx.float(), det_idx.float(), iou[label_idx, det_idx]), 1).cpu().numpy()
            if matches.shape[0] > 1:  # best IoU first, then one detection per label and one label per detection
                matches = matches[matches[:, 2].argsort()[::-1]]
                matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
                matches = matches[matches[:, 2].argsort()[::-1]]
                matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        else:
            matches = np.zeros((0, 3))
        matched_labels, matched_dets = matches[:, 0].astype(int), matches[:, 1].astype(int)
        for i, gc in enumerate(gt_classes):
            j = matched_labels == i
            if j.any():
                self.matrix[det_classes[matched_dets[j][0]], gc] += 1
            else:
                self.matrix[self.nc, gc] += 1  # the object was missed: predicted background
        if len(matches):  # upstream v7.0 counts unmatched detections only in images with some match
            for i, dc in enumerate(det_classes):
                if not (matched_dets == i).any():
                    self.matrix[dc, self.nc] += 1  # a detection of no object

    def tp_fp(self) -> tuple[np.ndarray, np.ndarray]:
        """True and false positives per class (background excluded)."""
        tp = self.matrix.diagonal()
        fp = self.matrix.sum(1) - tp
        return tp[:-1], fp[:-1]


@functools.cache
def nms_kernel() -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """torchvision's compiled NMS, the op upstream's torchvision.ops.nms calls, loaded without importing
    torchvision's Python package when nobody has: that import pulls in torch._dynamo through its model zoo,
    about 2.3 s CPU at the start of every val, detect and export process (training imports it anyway)."""
    spec = None if "torchvision" in sys.modules else importlib.util.find_spec("torchvision")
    folder = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    names = ("_C_stable", "_C") if folder else ()  # the extension's name in newer torchvision, and in older
    libraries = [folder / f"{name}{suffix}" for name in names for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    for library in filter(Path.is_file, libraries):
        try:
            torch.ops.load_library(str(library))
            return torch.ops.torchvision.nms
        except (OSError, RuntimeError, AttributeError):  # e.g. DLL folders only torchvision's own loader adds
            break
    import torchvision

    return torchvision.ops.nms


def non_max_suppression(
    prediction: torch.Tensor | list | tuple,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    labels: list[torch.Tensor] | tuple = (),
    max_det: int = 300,
) -> list[torch.Tensor]:
    """Per-image detections (k, 6) [x1, y1, x2, y2, conf, cls] from the model's eval output.

    prediction (bs, N, 5 + nc): xywh pixels, objectness, class probabilities (a (pred, maps) tuple is
    accepted too). conf = obj * cls prob. `labels` optionally adds ground truth per image, (k, 5)
    [cls, x, y, w, h] pixels, as confident detections (autolabelling). NMS is class-aware unless agnostic.
    """
    if not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
        raise ValueError(f"conf_thres {conf_thres} and iou_thres {iou_thres} must lie in [0, 1]")
    if isinstance(prediction, (list, tuple)):
        prediction = prediction[0]
    bs, nc = prediction.shape[0], prediction.shape[2] - 5
    multi_label &= nc > 1
    time_limit = 0.5 + 0.05 * bs
    start = time.time()
    candidates = prediction[..., 4] > conf_thres
    output = [torch.zeros((0, 6), device=prediction.device)] * bs
    for xi, x in enumerate(prediction):
        x = x[candidates[xi]]
        if len(labels) and len(labels[xi]):
            lb = labels[xi]
            prior = torch.zeros((len(lb), nc + 5), device=x.device)
            prior[:, :4] = lb[:, 1:5]
            prior[:, 4] = 1.0
            prior[range(len(lb)), lb[:, 0].long() + 5] = 1.0
            x = torch.cat((x, prior), 0)
        if not x.shape[0]:
            continue

        scores = x[:, 5:] * x[:, 4:5]
        box = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=False).T
            x = torch.cat((box[i], scores[i, j, None], j[:, None].float()), 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            x = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > conf_thres]
        if classes is not None:
            x = x[(x[:, 5:6] == torch.tensor(classes, device=x.device)).any(1)]
        if not x.shape[0]:
            continue
        x = x[x[:, 4].argsort(descending=True)[:MAX_NMS]]

        offsets = x[:, 5:6] * (0 if agnostic else MAX_WH)
        keep = nms_kernel()(x[:, :4] + offsets, x[:, 4], iou_thres)[:max_det]
        output[xi] = x[keep]
        if time.time() - start > time_limit:
            LOGGER.warning(f"WARNING: NMS time limit {time_limit:.3f}s exceeded")
            break
    return output


def nms_input(preds: torch.Tensor) -> torch.Tensor:
    """fp16 predictions go to NMS as they are (scores and corners computed in fp16, as upstream's); others
    (bf16 from CPU autocast) as fp32."""
    return preds if preds.dtype == torch.float16 else preds.float()
