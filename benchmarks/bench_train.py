"""Training throughput and start-up cost of train_loop_per_worker.

    python benchmarks/bench_train.py                        # img/s and s/epoch on coco128 (yolov5n, 320, bs 16)
    python benchmarks/bench_train.py --no-amp --no-channels-last   # the fp32 NCHW baseline
    python benchmarks/bench_train.py --startup   # process start -> first optimizer step, direct and TorchTrainer

Throughput counts the training part of each epoch (data loading included, validation excluded); the
first epoch also pays for worker start-up, so run --epochs 2 or more and read the last line. On a
shared, oversubscribed CPU set OMP_NUM_THREADS=1: two OpenMP threads there were 15x slower (1.2 vs 21 img/s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COCO128 = REPO.parent / "shared" / "datasets" / "coco128" / "coco128.yaml"


def train_config(args: argparse.Namespace, save_dir: str) -> dict:
    from yolo_ray.config import load_hyp

    return {
        "cfg": args.cfg,
        "weights": None,
        "data": str(Path(args.data).resolve()),
        "hyp": load_hyp(None),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "imgsz": args.imgsz,
        "workers": args.workers,
        "device": args.device,
        "save_dir": save_dir,
        "noplots": True,
        "noval": True,
        "nosave": True,
        "noautoanchor": True,
        "amp": not args.no_amp,
        "channels_last": not args.no_channels_last,
    }


def throughput(args: argparse.Namespace) -> None:
    import torch

    import yolo_ray.training.loop as loop

    timings = []

    class TimedProgress(loop.EpochProgress):
        def close(self) -> None:
            super().close()
            timings.append((self.images, self.seconds))

    loop.EpochProgress = TimedProgress
    with tempfile.TemporaryDirectory() as save_dir:
        loop.train_loop_per_worker(train_config(args, save_dir))
    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, amp={not args.no_amp}, "
        f"channels_last={not args.no_channels_last}, {args.cfg} imgsz {args.imgsz} batch {args.batch_size}"
    )
    for epoch, (images, seconds) in enumerate(timings):
        print(f"epoch {epoch}: {seconds:.1f} s/epoch, {images / seconds:.1f} img/s ({images} images)")


STARTUP_CHILD = r"""
import json, os, sys, time
import torch
config, path, mode = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]

def stamp_first_step(config):
    for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        step = cls.step
        def timed(self, *a, _step=step, **k):
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(repr(time.time()))
            return _step(self, *a, **k)
        cls.step = timed
    from yolo_ray.training.loop import train_loop_per_worker
    return train_loop_per_worker(config)

if mode == "direct":
    stamp_first_step(config)
else:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    TorchTrainer(stamp_first_step, train_loop_config=config, scaling_config=ScalingConfig(num_workers=1),
                 run_config=RunConfig(storage_path=config["save_dir"], name="bench")).fit()
    ray.shutdown()
"""


def startup(args: argparse.Namespace) -> None:
    """Seconds from launching a fresh python process to its first optimizer step, for both paths."""
    for mode in ("direct", "trainer"):
        with tempfile.TemporaryDirectory() as save_dir:
            config = {**train_config(args, save_dir), "epochs": 1}
            stamp = Path(save_dir) / "first_step"
            t0 = time.time()
            subprocess.run(
                [sys.executable, "-c", STARTUP_CHILD, json.dumps(config), str(stamp), mode],
                check=True,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "RAY_DEDUP_LOGS": "0"},
            )
            total = time.time() - t0
            first = float(stamp.read_text()) - t0
            print(f"{mode:8s}: {first:.1f} s to the first optimizer step ({total:.1f} s for the whole 1-epoch run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(COCO128))
    parser.add_argument("--cfg", default="yolov5n.yaml")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast (CPU) / fp16 AMP (CUDA)")
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW tensors")
    parser.add_argument("--startup", action="store_true", help="measure process start -> first optimizer step")
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"error: {args.data}: data yaml not found")
    startup(args) if args.startup else throughput(args)


if __name__ == "__main__":
    main()
