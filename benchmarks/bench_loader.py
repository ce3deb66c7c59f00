"""Images/s of the augmented training loader (mosaic on, default hyp), ours and upstream v7.0 side by side.

    python benchmarks/bench_loader.py                         # both loaders, every cache mode, best of 3 rounds
    python benchmarks/bench_loader.py --cache none --rounds 5 # one cache mode
    python benchmarks/bench_loader.py --profile               # milliseconds per stage of one of our items
    python benchmarks/bench_loader.py --check 64              # our first 64 items == upstream's, byte for byte?

Each measurement is a fresh process running one loader (same workers, same cores, same batch) for
--epochs epochs; the first epoch is warm-up (worker start, page cache) and the rest are timed. Rounds
alternate upstream and ours so both see the same load; the table keeps each side's best round and the
load average seen during it. Upstream runs from --upstream (a v7.0 checkout) in the environment that
--upstream-env exports. The data is copied to a temporary folder first, so --cache disk can write its
.npy files beside the images on both sides. The last line is `ratio_<cache>=<ours / upstream>`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COCO128 = REPO.parent / "shared" / "datasets" / "coco128" / "coco128.yaml"
CACHE_MODES = ("none", "ram", "disk")


def upstream_loader(train: str, opt: argparse.Namespace):
    """Upstream v7.0's create_dataloader, imported from the checkout with its hyp.scratch-low."""
    sys.path.insert(0, opt.upstream)
    import yaml
    from utils.dataloaders import create_dataloader

    with open(Path(opt.upstream) / "data" / "hyps" / "hyp.scratch-low.yaml") as f:
        hyp = yaml.safe_load(f)
    cache = None if opt.cache == "none" else opt.cache
    return create_dataloader(
        train, opt.imgsz, opt.batch_size, 32, hyp=hyp, augment=True, cache=cache, shuffle=True, workers=opt.workers
    )[0]


def our_loader(train: str, opt: argparse.Namespace):
    sys.path.insert(0, opt.ours)
    from yolo_ray.data import create_dataloader

    cache = None if opt.cache == "none" else opt.cache
    return create_dataloader(
        train, opt.imgsz, opt.batch_size, 32, hyp=None, augment=True, cache=cache, shuffle=True, workers=opt.workers
    )[0]


def dump_items(loader, path: str, items: int) -> None:
    """Items 0..items-1 of the loader's dataset, item k drawn after seeding `random` and numpy with k."""
    import numpy as np

    dataset, arrays = loader.dataset, {}
    for k in range(items):
        random.seed(k)
        np.random.seed(k)
        image, labels = dataset[k][:2]
        arrays[f"image{k}"], arrays[f"labels{k}"] = image.numpy(), labels.numpy()
    np.savez(path, **arrays)


def run_child(opt: argparse.Namespace) -> None:
    """One loader in this process: per-epoch lines, then `img_per_s=` over the epochs after the first
    (or, with --dump, its first items saved for the identity check)."""
    import numpy as np

    random.seed(0)
    np.random.seed(0)
    train = str(Path(opt.data).parent / "images" / "train2017")
    t0 = time.perf_counter()
    loader = (upstream_loader if opt.child == "upstream" else our_loader)(train, opt)
    if opt.dump:
        dump_items(loader, opt.dump, opt.check)
        return
    print(f"setup: {time.perf_counter() - t0:.2f} s")
    images, seconds = 0, 0.0
    for epoch in range(opt.epochs):
        t0 = time.perf_counter()
        n = sum(batch[0].shape[0] for batch in loader)
        dt = time.perf_counter() - t0
        print(f"epoch {epoch}: {n} images in {dt:.2f} s, {n / dt:.1f} img/s")
        if epoch:
            images, seconds = images + n, seconds + dt
    print(f"img_per_s={images / seconds:.1f}")


def upstream_environment(env_file: str) -> dict[str, str]:
    """The variables a `source`-able file of `export A=B C=D` lines sets, over this process's environment."""
    env = dict(os.environ)
    for line in Path(env_file).read_text().splitlines():
        if line.startswith("export "):
            for pair in line.split()[1:]:
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def run_side(side: str, cache: str, data: Path, opt: argparse.Namespace, *extra: str) -> str:
    """Run a child process for one side; its stdout."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        side,
        "--cache",
        cache,
        "--data",
        str(data),
        "--imgsz",
        str(opt.imgsz),
        "--batch-size",
        str(opt.batch_size),
        "--workers",
        str(opt.workers),
        "--epochs",
        str(opt.epochs),
        "--upstream",
        opt.upstream,
        "--ours",
        opt.ours,
        *extra,
    ]
    env = upstream_environment(opt.upstream_env) if side == "upstream" else {**os.environ, "PYTHONPATH": opt.ours}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run(
        cmd, env=env, cwd=opt.upstream if side == "upstream" else REPO, capture_output=True, text=True, check=False
    )
    if out.returncode:
        sys.exit(f"error: the {side} loader failed (--cache {cache}):\n{out.stderr[-3000:]}")
    return out.stdout


def measure(side: str, cache: str, data: Path, opt: argparse.Namespace) -> float:
    stdout = run_side(side, cache, data, opt)
    lines = [line for line in stdout.splitlines() if line.startswith("img_per_s=")]
    if not lines:
        sys.exit(f"error: the {side} loader printed no img_per_s (--cache {cache})")
    return float(lines[-1].split("=")[1])


def check_identity(opt: argparse.Namespace) -> None:
    """Whether our items equal upstream's, byte for byte, under the same seeds."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        files = {side: str(Path(tmp) / f"{side}.npz") for side in ("upstream", "ours")}
        for side, path in files.items():
            run_side(side, "none", Path(opt.data), opt, "--check", str(opt.check), "--dump", path)
        up, ours = np.load(files["upstream"]), np.load(files["ours"])
        same = sum(
            np.array_equal(up[f"image{k}"], ours[f"image{k}"]) and np.array_equal(up[f"labels{k}"], ours[f"labels{k}"])
            for k in range(opt.check)
        )
    print(f"identical items (image bytes and labels): {same}/{opt.check}")
    print(f"identical={same}/{opt.check}")


def load_average() -> float:
    return os.getloadavg()[0]


def side_by_side(opt: argparse.Namespace) -> None:
    modes = CACHE_MODES if opt.cache == "all" else (opt.cache,)
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(Path(opt.data).parent, data)  # disk caches write .npy files beside the images
        data = data / Path(opt.data).name
        sides = ["upstream", "ours"]
        best: dict[tuple[str, str], tuple[float, float]] = {}
        for cache in modes:
            for round_ in range(opt.rounds):
                for side in sides if round_ % 2 == 0 else sides[::-1]:
                    load = load_average()
                    value = measure(side, cache, data, opt)
                    print(
                        f"round {round_}: --cache {cache:4s} {side:8s} {value:7.1f} img/s (load {load:.1f})", flush=True
                    )
                    if value > best.get((cache, side), (0.0, 0.0))[0]:
                        best[cache, side] = value, load
        print(
            f"\nbest of {opt.rounds}, imgsz {opt.imgsz}, batch {opt.batch_size}, {opt.workers} workers, "
            f"{os.cpu_count()} cores, epochs 2-{opt.epochs}:"
        )
        print("| --cache | upstream img/s | ours img/s | ratio |")
        for cache in modes:
            (up, up_load), (ours, ours_load) = best[cache, "upstream"], best[cache, "ours"]
            print(f"| {cache} | {up:.0f} (load {up_load:.1f}) | {ours:.0f} (load {ours_load:.1f}) | {ours / up:.2f}× |")
        if {"none", "ram"} <= set(modes):  # what --cache ram gives a user of upstream's default
            print(
                f"ours --cache ram vs upstream's default (no cache): "
                f"{best['ram', 'ours'][0] / best['none', 'upstream'][0]:.2f}×"
            )
        for cache in modes:
            print(f"ratio_{cache}={best[cache, 'ours'][0] / best[cache, 'upstream'][0]:.2f}")


def profile(opt: argparse.Namespace, n: int = 60) -> None:
    """Milliseconds per stage of one of our mosaic items, single-threaded like a loader worker."""
    sys.path.insert(0, str(REPO))
    import cv2
    import numpy as np
    import torch

    from yolo_ray.config import load_hyp
    from yolo_ray.data.augment import augment_hsv, random_perspective
    from yolo_ray.data.dataset import LoadImagesAndLabels, decode_image
    from yolo_ray.data.loader import collate_fn

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    hyp, imgsz = load_hyp(), opt.imgsz
    ds = LoadImagesAndLabels(
        str(Path(opt.data).parent / "images" / "train2017"),
        imgsz,
        16,
        augment=True,
        hyp=hyp,
        cache_images="ram",
        verbose=False,
    )
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
        "warp only (random_perspective)": ms(
            lambda i: random_perspective(
                canvas,
                np.zeros((0, 5)),
                (),
                hyp["degrees"],
                hyp["translate"],
                hyp["scale"],
                hyp["shear"],
                hyp["perspective"],
                border=(-imgsz // 2, -imgsz // 2),
            )
        ),
        "hsv (in place)": ms(lambda i: augment_hsv(img, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"])),
        "HWC BGR -> CHW RGB copy": ms(lambda i: np.ascontiguousarray(img.transpose(2, 0, 1)[::-1])),
        "whole item (__getitem__)": ms(ds.__getitem__),
        "collate of 16 (per image)": ms(lambda i: collate_fn([(a, b.clone(), c, d) for a, b, c, d in batch])) / 16,
    }
    for name, value in stages.items():
        print(f"{name:40s} {value:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(COCO128), help="a data yaml with images/train2017 beside it")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="measurements per side and cache mode (best kept)")
    parser.add_argument("--cache", choices=(*CACHE_MODES, "all"), default="all")
    parser.add_argument("--upstream", default="/tmp/up", help="an upstream YOLOv5 v7.0 checkout")
    parser.add_argument("--upstream-env", default="/tmp/upenv.sh", help="export lines for upstream's environment")
    parser.add_argument("--ours", default=str(REPO), help="the yolo_ray checkout to measure (e.g. an older commit's)")
    parser.add_argument("--profile", action="store_true", help="print our per-stage milliseconds and exit")
    parser.add_argument(
        "--check",
        type=int,
        default=0,
        metavar="N",
        help="compare our first N items with upstream's under the same seeds and exit",
    )
    parser.add_argument("--child", choices=("upstream", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    opt = parser.parse_args()
    if opt.epochs < 2:
        parser.error("--epochs must be >= 2 (the first one is warm-up)")
    if opt.child:
        run_child(opt)
    elif opt.check:
        check_identity(opt)
    elif opt.profile:
        profile(opt)
    else:
        side_by_side(opt)


if __name__ == "__main__":
    main()
