"""The mosaic's warp two ways: upstream's (paste 4 tiles on a grey 2s canvas, warp it down to s) and a
direct one (warp each tile straight into its footprint on the s output), milliseconds per mosaic.

    python benchmarks/bench_mosaic_warp.py                  # default hyps (scale + translate only)
    python benchmarks/bench_mosaic_warp.py --rotate         # also degrees 10, shear 5, perspective 5e-4

Issue 20 asked whether the direct warp, which is only statistically equal to upstream (tile edges are
sampled from the tile alone instead of blending the neighbour or the grey fill), is fast enough to
offer as an option. The direct warp lives here, not in the package: it was not fast enough (see
benchmarks/README.md). Both ways draw the same random matrix from the same seed; the last lines give
the share of output pixels that differ at all and by more than 10 grey levels.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import cv2
import numpy as np

from yolo_ray.config import load_hyp
from yolo_ray.data.augment import FILL, random_perspective
from yolo_ray.data.dataset import LoadImagesAndLabels

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "coco128" / "images" / "train2017"
WARP_KEYS = ("degrees", "translate", "scale", "shear", "perspective")
WARPS = (cv2.warpAffine, cv2.warpPerspective)  # put back after capturing a matrix


def mosaic_tiles(images: list[np.ndarray], s: int, rng: random.Random) -> list[tuple[np.ndarray, int, int]]:
    """Four images around a random centre of a 2s canvas, each cropped to the canvas: (tile, x, y)."""
    xc, yc = (int(rng.uniform(s // 2, 3 * s // 2)) for _ in range(2))
    tiles = []
    for (left, top), img in zip(((1, 1), (0, 1), (1, 0), (0, 0)), images):
        h, w = img.shape[:2]
        x, y = xc - w * left, yc - h * top  # the image's corner that touches the centre sits on it
        x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, 2 * s), min(y + h, 2 * s)
        tiles.append((img[y1 - y : y2 - y, x1 - x : x2 - x], x1, y1))
    return tiles


def canvas_warp(tiles: list[tuple[np.ndarray, int, int]], s: int, hyp: dict) -> np.ndarray:
    canvas = np.full((2 * s, 2 * s, 3), FILL, dtype=np.uint8)
    for tile, x, y in tiles:
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    empty = np.zeros((0, 5), dtype=np.float32)
    return random_perspective(canvas, empty, [], **{k: hyp[k] for k in WARP_KEYS}, border=(-s // 2, -s // 2))[0]


def direct_warp(tiles: list[tuple[np.ndarray, int, int]], s: int, hyp: dict) -> np.ndarray:
    """The same random matrix (captured from random_perspective), applied tile by tile."""
    captured = {}
    real = cv2.warpAffine if not hyp["perspective"] else cv2.warpPerspective

    def capture(im, m, dsize, **kwargs):
        captured["m"] = np.vstack((m, [0, 0, 1])) if m.shape[0] == 2 else m
        return im

    cv2.warpAffine = cv2.warpPerspective = capture  # the matrix without the canvas warp
    try:
        random_perspective(
            np.empty((2 * s, 2 * s, 3), np.uint8), (), (), **{k: hyp[k] for k in WARP_KEYS}, border=(-s // 2, -s // 2)
        )
    finally:
        cv2.warpAffine, cv2.warpPerspective = WARPS
    out = np.full((s, s, 3), FILL, dtype=np.uint8)
    for tile, x, y in tiles:
        warp_tile_into(out, tile, captured["m"] @ translation(x, y), bool(hyp["perspective"]), real)
    return out


def translation(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def warp_tile_into(out: np.ndarray, tile: np.ndarray, m: np.ndarray, perspective: bool, warp) -> None:
    th, tw = tile.shape[:2]
    corners = np.array([[-0.5, -0.5], [tw - 0.5, -0.5], [tw - 0.5, th - 0.5], [-0.5, th - 0.5]])
    footprint = corners @ m[:2, :2].T + m[:2, 2]
    if perspective:
        footprint /= (corners @ m[2, :2] + m[2, 2])[:, None]
    limit = (out.shape[1], out.shape[0])
    x0, y0 = np.ceil(footprint.min(0)).astype(int).clip(0, limit)
    x1, y1 = np.ceil(footprint.max(0)).astype(int).clip(0, limit)
    if x1 <= x0 or y1 <= y0:
        return
    m = translation(-x0, -y0) @ m
    warped = warp(tile, m if perspective else m[:2], (int(x1 - x0), int(y1 - y0)), borderMode=cv2.BORDER_REPLICATE)
    roi = out[y0:y1, x0:x1]
    if perspective or m[0, 1] or m[1, 0]:  # the footprint is not its bounding box
        mask = np.zeros(warped.shape[:2], dtype=np.uint8)
        cv2.fillConvexPoly(mask, np.round((footprint - (x0, y0)) * 16).astype(np.int32), 1, shift=4)
        cv2.copyTo(warped, mask, roi)
    else:
        roi[:] = warped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(COCO128), help="a folder of training images with labels beside")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--mosaics", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rotate", action="store_true", help="degrees 10, shear 5, perspective 5e-4")
    opt = parser.parse_args()
    cv2.setNumThreads(0)  # as in a loader worker
    hyp = load_hyp("hyp.scratch-low.yaml")
    if opt.rotate:
        hyp.update(degrees=10.0, shear=5.0, perspective=0.0005)
    ds = LoadImagesAndLabels(opt.images, opt.imgsz, augment=True, hyp=hyp, cache_images="ram", verbose=False)
    rng = random.Random(0)
    mosaics = [
        mosaic_tiles([ds.load_image(rng.randrange(ds.n))[0] for _ in range(4)], opt.imgsz, rng)
        for _ in range(opt.mosaics)
    ]

    def ms(warp) -> float:
        random.seed(0)
        start = time.process_time()
        for tiles in mosaics:
            warp(tiles, opt.imgsz, hyp)
        return (time.process_time() - start) / len(mosaics) * 1000

    for _ in range(opt.rounds):
        print(f"canvas {ms(canvas_warp):6.2f} ms   direct {ms(direct_warp):6.2f} ms  per mosaic")
    differing, far = [], []
    for k, tiles in enumerate(mosaics):
        random.seed(k)
        a = canvas_warp(tiles, opt.imgsz, hyp)
        random.seed(k)
        b = direct_warp(tiles, opt.imgsz, hyp)
        d = np.abs(a.astype(int) - b.astype(int)).max(2)
        differing.append((d > 0).mean())
        far.append((d > 10).mean())
    print(
        f"pixels differing: {np.mean(differing):.2%} (max {np.max(differing):.2%}); "
        f"by > 10: {np.mean(far):.2%} (max {np.max(far):.2%})"
    )


if __name__ == "__main__":
    main()
