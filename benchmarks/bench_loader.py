"""Images/s of the augmented training loader (mosaic on, default hyp), after a warm-up epoch.

    python benchmarks/bench_loader.py --imgsz 640            # the loader as training uses it (cache="ram")
    python benchmarks/bench_loader.py --imgsz 640 --naive    # a straightforward baseline of the same pipeline
    python benchmarks/bench_loader.py --imgsz 640 --no-cache # optimised ops, images decoded on every use
    python benchmarks/bench_loader.py --profile              # milliseconds per stage, in this process

The baseline decodes every image on every use, does HSV in float arithmetic, materialises flips
and mixup as float/copied arrays, collates with torch.stack and restarts its workers each epoch:
what a first implementation of the same augmentations does. The last line is `img_per_s=<n>`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yolo_ray.boxes import xywhn2xyxy, xyxy2xywhn  # noqa: E402
from yolo_ray.config import load_hyp  # noqa: E402
from yolo_ray.data import create_dataloader, load_data_config  # noqa: E402
from yolo_ray.data.augment import augment_hsv, letterbox, random_perspective  # noqa: E402
from yolo_ray.data.dataset import LoadImagesAndLabels, decode_image  # noqa: E402
from yolo_ray.data.loader import collate_fn, seed_worker  # noqa: E402


def naive_hsv(im: np.ndarray, hgain: float, sgain: float, vgain: float) -> np.ndarray:
    r = np.random.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    hsv = cv2.cvtColor(im, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] * r[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * r[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * r[2], 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


class NaiveDataset(LoadImagesAndLabels):
    """The same augmentations written the obvious way (see the module docstring)."""

    def load_image(self, i):
        return decode_image(self.im_files[i], self.img_size, self.augment)

    def __getitem__(self, index):
        hyp = self.hyp
        if random.random() < hyp["mosaic"]:
            img, labels = self.load_mosaic(index)
            if random.random() < hyp["mixup"]:
                img2, labels2 = self.load_mosaic(random.randrange(self.n))
                r = np.random.beta(32.0, 32.0)
                img = (img.astype(np.float32) * r + img2.astype(np.float32) * (1 - r)).astype(np.uint8)
                labels = np.concatenate((labels, labels2), 0)
        else:
            img, _, (h, w) = self.load_image(index)
            img, ratio, pad = letterbox(img, self.img_size, auto=False)
            labels = self.labels[index].copy()
            if labels.size:
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, pad[0], pad[1])
            img, labels = random_perspective(img, labels, degrees=hyp["degrees"], translate=hyp["translate"],
                                             scale=hyp["scale"], shear=hyp["shear"], perspective=hyp["perspective"])
        if len(labels):
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
        img = naive_hsv(img, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"])
        if random.random() < hyp["flipud"]:
            img = np.flipud(img).copy()
            labels[:, 2] = 1 - labels[:, 2]
        if random.random() < hyp["fliplr"]:
            img = np.fliplr(img).copy()
            labels[:, 1] = 1 - labels[:, 1]
        out = torch.zeros((len(labels), 6))
        out[:, 1:] = torch.from_numpy(labels.astype(np.float32))
        rgb = img[:, :, ::-1].copy()
        return torch.from_numpy(rgb.transpose(2, 0, 1).copy()), out, self.im_files[index], None


def naive_loader(path, imgsz: int, batch_size: int, workers: int, hyp: dict) -> DataLoader:
    dataset = NaiveDataset(path, imgsz, batch_size, augment=True, hyp=hyp, verbose=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate_fn,
                      worker_init_fn=seed_worker)


def profile(path, imgsz: int, hyp: dict, n: int = 60) -> None:
    """Milliseconds per stage of one mosaic item, single-threaded like a loader worker."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ds = LoadImagesAndLabels(path, imgsz, 16, augment=True, hyp=hyp, cache_images="ram", verbose=False)
    idx = [random.randrange(ds.n) for _ in range(n)]

    def ms(fn) -> float:
        t0 = time.perf_counter()
        for i in idx:
            fn(i)
        return (time.perf_counter() - t0) / n * 1000

    canvas = np.full((2 * imgsz, 2 * imgsz, 3), 114, np.uint8)
    img = ds.load_mosaic(0)[0]
    batch = [ds[i] for i in idx[:16]]
    stages = {
        "decode+resize (one image, uncached)": ms(lambda i: decode_image(ds.im_files[i], imgsz, True)),
        "mosaic: 4 cached images + warp": ms(ds.load_mosaic),
        "warp only (random_perspective)": ms(lambda i: random_perspective(
            canvas, np.zeros((0, 5)), (), hyp["degrees"], hyp["translate"], hyp["scale"], hyp["shear"],
            hyp["perspective"], border=(-imgsz // 2, -imgsz // 2))),
        "hsv LUT (in place)": ms(lambda i: augment_hsv(img, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"])),
        "hsv float (naive)": ms(lambda i: naive_hsv(img, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"])),
        "HWC BGR -> CHW RGB copy": ms(lambda i: np.ascontiguousarray(img.transpose(2, 0, 1)[::-1])),
        "whole item (__getitem__)": ms(ds.__getitem__),
        "collate of 16 (per image)": ms(lambda i: collate_fn([(a, b.clone(), c, d) for a, b, c, d in batch])) / 16,
    }
    for name, value in stages.items():
        print(f"{name:40s} {value:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "coco128" / "coco128.yaml"))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--naive", action="store_true", help="measure the straightforward baseline instead")
    parser.add_argument("--no-cache", action="store_true", help="optimised loader without the decoded-image cache")
    parser.add_argument("--profile", action="store_true", help="print per-stage milliseconds and exit")
    opt = parser.parse_args()
    if opt.epochs < 2:
        parser.error("--epochs must be >= 2 (the first one is warm-up)")

    random.seed(0)
    np.random.seed(0)
    hyp = load_hyp()
    train = load_data_config(opt.data)["train"]
    if opt.profile:
        profile(train, opt.imgsz, hyp)
        return
    t0 = time.perf_counter()
    if opt.naive:
        loader = naive_loader(train, opt.imgsz, opt.batch_size, opt.workers, hyp)
    else:
        loader, _ = create_dataloader(train, opt.imgsz, opt.batch_size, 32, hyp=hyp, augment=True,
                                      cache=None if opt.no_cache else "ram", shuffle=True, workers=opt.workers)
    decoding = "" if opt.naive or opt.no_cache else " + decode into RAM"
    print(f"setup (label scan{decoding}): {time.perf_counter() - t0:.2f} s")
    images, seconds = 0, 0.0
    for epoch in range(opt.epochs):
        t0 = time.perf_counter()
        n = sum(imgs.shape[0] for imgs, _, _, _ in loader)
        dt = time.perf_counter() - t0
        print(f"epoch {epoch}{' (warm-up)' if epoch == 0 else ''}: {n} images in {dt:.2f} s, {n / dt:.1f} img/s")
        if epoch:
            images, seconds = images + n, seconds + dt
    print(f"img_per_s={images / seconds:.1f}")


if __name__ == "__main__":
    main()
