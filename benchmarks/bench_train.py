"""Training throughput and start-up cost of train_loop_per_worker.

    python benchmarks/bench_train.py                        # img/s and s/epoch on coco128 (yolov5n, 320, bs 16)
    python benchmarks/bench_train.py --no-amp --no-channels-last   # the fp32 NCHW baseline
    python benchmarks/bench_train.py --startup   # process start -> first optimizer step, direct and TorchTrainer
    python benchmarks/bench_train.py --pieces --imgsz 128 --epochs 1 --workers 0   # an evolve trial's fixed costs

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

    import yolo_ray.training.epoch as epoch_module
    import yolo_ray.training.loop as loop

    timings = []

    class TimedProgress(epoch_module.EpochProgress):
        def close(self) -> None:
            super().close()
            timings.append((self.images, self.seconds))

    epoch_module.EpochProgress = TimedProgress
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


TRIAL_STAGES = (
    "_start",
    "_build_model",
    "_build_optimizer",
    "_build_loaders",
    "_check_anchors",
    "_prepare_model",
    "train_one_epoch",
    "end_epoch",
    "finish_training",
)


def pieces(args: argparse.Namespace, trials: int = 2) -> None:
    """Wall and CPU seconds of each stage of an evolve-mode trial (AutoAnchor on, validation at the end),
    run `trials` times in one process: the first pays the imports and caches as a new trial process does,
    the later ones show what a reused trial process pays."""
    t0, c0 = time.perf_counter(), time.process_time()
    import yolo_ray.training.loop as loop

    imports = (time.perf_counter() - t0, time.process_time() - c0)
    stages: list[dict[str, tuple[float, float]]] = []

    def timed(name: str, fn):
        def wrapper(*a, **k):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                w, p = stages[-1].get(name, (0.0, 0.0))
                stages[-1][name] = (w + time.perf_counter() - t, p + time.process_time() - c)

        return wrapper

    for name in TRIAL_STAGES:
        setattr(loop, name, timed(name, getattr(loop, name)))
    for _ in range(trials):
        stages.append({})
        with tempfile.TemporaryDirectory() as save_dir:
            config = {**train_config(args, save_dir), "evolve": True, "noautoanchor": False}
            t, c = time.perf_counter(), time.process_time()
            loop.train_loop_per_worker(config)
            stages[-1]["whole trial"] = (time.perf_counter() - t, time.process_time() - c)
    print(f"\n{args.cfg} {args.imgsz} px, batch {args.batch_size}, {args.epochs} epoch(s), {args.workers} workers")
    print(f"{'stage':18s}" + "".join(f" | trial {i + 1} wall, CPU s" for i in range(trials)))
    print(f"{'imports':18s} | {imports[0]:6.2f}, {imports[1]:6.2f}")
    for name in (*TRIAL_STAGES, "whole trial"):
        cells = (stage.get(name, (0.0, 0.0)) for stage in stages)
        print(f"{name:18s}" + "".join(f" | {wall:6.2f}, {cpu:6.2f}" for wall, cpu in cells))


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
    parser.add_argument("--pieces", action="store_true", help="seconds per stage of two evolve trials in one process")
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"error: {args.data}: data yaml not found")
    if args.pieces:
        pieces(args)
    else:
        startup(args) if args.startup else throughput(args)


if __name__ == "__main__":
    main()
