"""The built-in synthetic dataset: coloured shapes on textured grey backgrounds, in YOLO format.

It is the default data of the whole product, so it is designed to give a real fitness signal after a
few epochs of a small model at imgsz 160: images are already 160 px (no resize cost), objects are
16-64 px (matched to strides 8-32), 1-4 per image, saturated colours on low-saturation textures, and
classes told apart by shape only (colour is random per object).

Usage: python -m yolo_ray.data.synthetic --out DIR [--seed 0 --n-train 512 --n-val 128 --size 160]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from filelock import FileLock

from yolo_ray.config import UserError
from yolo_ray.paths import cache_home

CLASS_NAMES = ("circle", "square", "triangle", "cross")
# Bump when the generator's output changes, so cached copies of the old data are not reused.
DATASET_VERSION = "synthetic-v1"
JPEG_QUALITY = 95
MAX_BOX_IOU = 0.3  # some overlap between objects, never enough to hide one
_SPLIT_IDS = {"train": 0, "val": 1}
BUILTIN_WEIGHTS_NAME = "yolov5n-synthetic.pt"  # regenerate when DATASET_VERSION changes


@dataclass
class SceneObject:
    cls: int
    xyxy: tuple[int, int, int, int]  # tight pixel box, x2/y2 exclusive
    color: tuple[int, int, int]  # BGR


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A low-saturation texture: a gradient, stripes or blurred blobs, plus pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(70, 180)
    amplitude = rng.uniform(15, 45)
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(0, 2 * np.pi)
        field = (np.cos(angle) * xx + np.sin(angle) * yy) * 2 - 1
    elif kind == 1:
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(0.05, 0.25)
        field = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
    else:
        coarse = rng.standard_normal((8, 8)).astype(np.float32)
        field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        field /= max(float(np.abs(field).max()), 1e-6)
    gray = base + amplitude * field + rng.normal(0, 6, (size, size))
    tint = rng.uniform(-12, 12, 3)  # a faint colour cast, far below the objects' saturation
    image = gray[..., None] + tint
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(cls: int, cx: int, cy: int, s: int, size: int) -> np.ndarray:
    """A binary mask of one shape of side s centred at (cx, cy); aliased so mask == drawn pixels."""
    mask = np.zeros((size, size), np.uint8)
    half = s // 2
    name = CLASS_NAMES[cls]
    if name == "circle":
        cv2.circle(mask, (cx, cy), half, 255, -1, cv2.LINE_8)
    elif name == "square":
        cv2.rectangle(mask, (cx - half, cy - half), (cx - half + s - 1, cy - half + s - 1), 255, -1)
    elif name == "triangle":
        top = (cx, cy - half)
        points = np.array([top, (cx - half, cy + half), (cx + half, cy + half)], np.int32)
        cv2.fillPoly(mask, [points], 255, cv2.LINE_8)
    else:  # cross: a plus sign with arms a third of the side thick
        arm = max(s // 3, 2)
        x0, y0 = cx - half, cy - half
        cv2.rectangle(mask, (x0, cy - arm // 2), (x0 + s - 1, cy - arm // 2 + arm - 1), 255, -1)
        cv2.rectangle(mask, (cx - arm // 2, y0), (cx - arm // 2 + arm - 1, y0 + s - 1), 255, -1)
    return mask


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _box_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _object_color(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(170, 256), rng.integers(140, 256)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def render_scene(rng: np.random.Generator, size: int = 160) -> tuple[np.ndarray, list[SceneObject]]:
    """One BGR image with 1-4 shapes fully inside it, and their classes, tight boxes and colours.

    Objects are drawn in list order, so the last one is never occluded.
    """
    image = _background(rng, size)
    objects: list[SceneObject] = []
    min_side, max_side = max(size // 10, 6), max(size * 2 // 5, 8)
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            # Log-uniform sizes give each detection level (stride 8/16/32) a fair share of objects.
            s = int(round(np.exp(rng.uniform(np.log(min_side), np.log(max_side)))))
            cx = int(rng.integers(s // 2 + 1, size - s // 2 - 1))
            cy = int(rng.integers(s // 2 + 1, size - s // 2 - 1))
            cls = int(rng.integers(len(CLASS_NAMES)))
            mask = _shape_mask(cls, cx, cy, s, size)
            box = _mask_box(mask)
            if all(_box_iou(box, o.xyxy) <= MAX_BOX_IOU for o in objects):
                break
        else:
            continue  # the image is too crowded for another object
        color = _object_color(rng)
        shade = rng.normal(0, 8, (size, size, 1))  # mild texture so objects are not flat stickers
        painted = np.clip(np.array(color, np.float32) + shade, 0, 255).astype(np.uint8)
        np.copyto(image, painted, where=mask[..., None] > 0)
        objects.append(SceneObject(cls, box, color))
    return image, objects


def label_lines(objects: list[SceneObject], size: int) -> str:
    """YOLO label text: one 'cls xc yc w h' row per object, normalised to the image size."""
    rows = []
    for o in objects:
        x1, y1, x2, y2 = o.xyxy
        xc, yc, w, h = (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size
        rows.append(f"{o.cls} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}\n")
    return "".join(rows)


def _write_split(root: Path, split: str, n: int, seed: int, size: int) -> None:
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(n):
        # One generator per image: output depends only on (seed, split, index), not on write order.
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], i])
        image, objects = render_scene(rng, size)
        stem = f"{split}_{i:05d}"
        if not cv2.imwrite(str(images / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{images / stem}.jpg: could not write image")
        (labels / f"{stem}.txt").write_text(label_lines(objects, size))


def make_dataset(out_dir: str | Path, seed: int = 0, n_train: int = 512, n_val: int = 128, size: int = 160) -> Path:
    """Write the synthetic dataset into out_dir (new or empty) and return its data yaml path.

    Layout: images/{train,val}/*.jpg, labels/{train,val}/*.txt, data.yaml with `path: .` so the
    folder can be moved. The same arguments give byte-identical files.
    """
    out_dir = Path(out_dir)
    if n_train < 1 or n_val < 1:
        raise UserError(f"{out_dir}: need at least one train and one val image, got {n_train} and {n_val}")
    if size < 32:
        raise UserError(f"{out_dir}: image size must be at least 32 px, got {size}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir}: exists and is not an empty folder; choose a new output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_split(out_dir, "train", n_train, seed, size)
    _write_split(out_dir, "val", n_val, seed, size)
    data = {
        "path": ".",
        "train": "images/train",
        "val": "images/val",
        "nc": len(CLASS_NAMES),
        "names": dict(enumerate(CLASS_NAMES)),
    }
    yaml_path = out_dir / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return yaml_path


def default_data_yaml() -> Path:
    """The built-in dataset's yaml, generated on first use and reused after.

    Safe under concurrency (Ray trials on one node starting together): a file lock serialises
    generation and the data is written to a temporary folder then renamed into place, so a reader
    only ever sees a complete dataset.
    """
    datasets = cache_home() / "datasets"
    final = datasets / DATASET_VERSION
    yaml_path = final / "data.yaml"
    if yaml_path.is_file():
        return yaml_path
    datasets.mkdir(parents=True, exist_ok=True)
    with FileLock(str(datasets / f"{DATASET_VERSION}.lock")):
        if yaml_path.is_file():  # another process finished while we waited for the lock
            return yaml_path
        if final.exists():  # left by something other than this function; never trust it
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{DATASET_VERSION}-", dir=datasets))
        try:
            make_dataset(tmp)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return yaml_path


def builtin_weights() -> Path:
    """yolov5n already trained on the built-in dataset at imgsz 160 (benchmarks/make_builtin_weights.py).

    Evolutions on the built-in data start their trials from it: a few epochs from scratch learn
    nothing there, so hyps would be ranked on noise.
    """
    return Path(__file__).with_name("builtin") / BUILTIN_WEIGHTS_NAME


def locate_data_yaml(data: str | Path) -> Path:
    """data as given, or this node's own copy of the built-in dataset when data names the built-in one.

    The driver hands workers its own cache path; a node of the cluster that never made the built-in
    data (or whose home differs) generates the identical, deterministic copy under its own cache.
    """
    path = Path(data)
    if not path.is_file() and path.name == "data.yaml" and path.parent.name == DATASET_VERSION:
        return default_data_yaml()
    return path


def data_every_node_needs(data: str | Path | None) -> str | None:
    """The data yaml that must exist on every node, or None for the built-in data (a node makes its own)."""
    return str(data) if data and locate_data_yaml(data) == Path(data) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the built-in synthetic shapes dataset (YOLO format).")
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--n-val", type=int, default=128)
    parser.add_argument("--size", type=int, default=160, help="image side in pixels")
    args = parser.parse_args(argv)
    try:
        path = make_dataset(args.out, seed=args.seed, n_train=args.n_train, n_val=args.n_val, size=args.size)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
