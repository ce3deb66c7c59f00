"""AutoAnchor: check that the anchors fit the dataset's boxes, re-fit them (k-means + evolution) if not.

Anchors live in the Detect layer in grid units (pixels / stride); every fit here works in pixels of
an image whose long side is imgsz.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from yolo_ray.console import LOGGER
from yolo_ray.models import check_anchor_order

BPR_THRESHOLD = 0.98  # best possible recall below this triggers a re-fit


def label_wh(shapes: np.ndarray, labels: list[np.ndarray], imgsz: int, scale: np.ndarray | None = None) -> np.ndarray:
    """Box widths/heights in pixels after letterboxing each image to long side imgsz (optionally rescaled)."""
    sizes = imgsz * shapes / shapes.max(1, keepdims=True)
    if scale is not None:
        sizes = sizes * scale
    return np.concatenate([lb[:, 3:5] * s for s, lb in zip(sizes, labels)]).astype(np.float32)


def anchor_ratio_metric(anchors: torch.Tensor, wh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per box and anchor, the worse of the w and h ratios (<= 1); and each box's best anchor ratio."""
    r = wh[:, None] / anchors[None]
    x = torch.min(r, 1 / r).min(2)[0]
    return x, x.max(1)[0]


def best_possible_recall(anchors: torch.Tensor, wh: torch.Tensor, thr: float) -> tuple[float, float]:
    """(fraction of boxes some anchor can match within ratio thr, mean anchors per box above threshold)."""
    x, best = anchor_ratio_metric(anchors, wh)
    bpr = (best > 1 / thr).float().mean()
    aat = (x > 1 / thr).float().sum(1).mean()
    return float(bpr), float(aat)


def kmeans(data: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 30, thresh: float = 1e-5) -> np.ndarray:
    """Lloyd's k-means restarted from `restarts` random picks of k points; the lowest mean distance wins.

    Same criterion as scipy.cluster.vq.kmeans (mean Euclidean distance, stop when it improves by less
    than thresh); empty clusters keep their previous centre so k centres always come back.
    """
    best, best_distortion = None, np.inf
    for _ in range(restarts):
        centres = data[rng.choice(len(data), k, replace=False)].copy()
        previous = np.inf
        for _ in range(300):
            dist = np.sqrt(((data[:, None, :] - centres[None]) ** 2).sum(-1))
            assign = dist.argmin(1)
            distortion = dist[np.arange(len(data)), assign].mean()
            counts = np.bincount(assign, minlength=k)
            filled = counts > 0
            for dim in range(data.shape[1]):
                sums = np.bincount(assign, weights=data[:, dim], minlength=k)
                centres[filled, dim] = sums[filled] / counts[filled]
            if previous - distortion <= thresh:
                break
            previous = distortion
        if distortion < best_distortion:
            best, best_distortion = centres, distortion
    return best


def kmean_anchors(
    wh0: np.ndarray,
    n: int,
    imgsz: int,
    thr: float,
    generations: int = 1000,
    rng: np.random.Generator | None = None,
    verbose: bool = True,
) -> np.ndarray:
    """n anchors (n, 2) in pixels, sorted by area: k-means on whitened wh, then a genetic refinement.

    Fitness of an anchor set = mean over boxes of the best anchor ratio, counting only ratios above 1/thr.
    """
    rng = rng or np.random.default_rng()
    small = int((wh0 < 3.0).any(1).sum())
    if small and verbose:
        LOGGER.warning(
            f"AutoAnchor: WARNING: extremely small objects found: {small} of {len(wh0)} labels are < 3 pixels in size"
        )
    wh = wh0[(wh0 >= 2.0).any(1)].astype(np.float32)  # boxes under 2 px both ways carry no shape information

    if len(wh) >= n:
        std = wh.std(0)
        std[std == 0] = 1.0
        k = kmeans(wh / std, n, rng) * std
    else:
        if verbose:
            LOGGER.warning(
                f"AutoAnchor: WARNING: only {len(wh)} usable labels for {n} anchors, starting from random anchors"
            )
        k = np.sort(rng.random(n * 2)).reshape(n, 2) * imgsz
    wh_t = torch.tensor(wh if len(wh) else wh0)

    def fitness(anchors: np.ndarray) -> float:
        _, best = anchor_ratio_metric(torch.tensor(anchors, dtype=torch.float32), wh_t)
        return float((best * (best > 1 / thr).float()).mean())

    f, mutation_prob, sigma = fitness(k), 0.9, 0.1
    for _ in range(generations):
        v = np.ones(k.shape)
        while (v == 1).all():  # a generation must change something
            mutate = (rng.random(k.shape) < mutation_prob) * rng.random() * rng.standard_normal(k.shape)
            v = (mutate * sigma + 1).clip(0.3, 3.0)
        candidate = (k * v).clip(min=2.0)
        fg = fitness(candidate)
        if fg > f:
            f, k = fg, candidate
    k = k[np.argsort(k.prod(1))]
    if verbose:
        bpr, aat = best_possible_recall(torch.tensor(k, dtype=torch.float32), wh_t, thr)
        LOGGER.info(f"AutoAnchor: thr={1 / thr:.2f}: {bpr:.4f} best possible recall, {aat:.2f} anchors past thr")
    return k.astype(np.float32)


@torch.no_grad()
def check_anchors(
    detect: nn.Module,
    shapes: np.ndarray,
    labels: list[np.ndarray],
    thr: float = 4.0,
    imgsz: int = 640,
    rng: np.random.Generator | None = None,
) -> bool:
    """Re-fit detect.anchors in place when their best possible recall is < 0.98; True if replaced.

    shapes: (n, 2) original image sizes [w, h]; labels: per image (k, 5) [cls, xc, yc, w, h] normalised.
    Boxes are jittered by a random 0.9-1.1 scale per image, as upstream does, to test robustness.
    """
    rng = rng or np.random.default_rng()
    scale = rng.uniform(0.9, 1.1, size=(shapes.shape[0], 1))
    wh = torch.tensor(label_wh(shapes, labels, imgsz, scale))
    if not len(wh):
        LOGGER.info("AutoAnchor: no labels to fit anchors to, keeping the model's anchors")
        return False
    stride = detect.stride.to(detect.anchors.device).view(-1, 1, 1)
    anchors_px = detect.anchors.clone() * stride
    bpr, aat = best_possible_recall(anchors_px.cpu().view(-1, 2).float(), wh, thr)
    prefix = f"AutoAnchor: {aat:.2f} anchors/target, {bpr:.3f} Best Possible Recall (BPR). "
    if bpr > BPR_THRESHOLD:
        LOGGER.info(prefix + "Current anchors are a good fit to dataset")
        return False
    LOGGER.info(prefix + "Anchors are a poor fit to dataset, attempting to improve...")
    na = detect.anchors.numel() // 2
    new = kmean_anchors(label_wh(shapes, labels, imgsz), na, imgsz, thr, rng=rng)
    new_bpr, _ = best_possible_recall(torch.tensor(new), wh, thr)
    if not new_bpr > bpr:  # also keeps the anchors when either BPR is NaN (upstream compares the same way)
        LOGGER.info("AutoAnchor: Original anchors better than new anchors, proceeding with original anchors")
        return False
    detect.anchors[:] = torch.tensor(new, device=detect.anchors.device).type_as(detect.anchors).view_as(detect.anchors)
    check_anchor_order(detect)  # compares pixel-space sizes, so before dividing by stride
    detect.anchors /= stride
    LOGGER.info("AutoAnchor: Done (optional: update model *.yaml to use these anchors in the future)")
    return True
