"""One command for a machine with a GPU: does yolo_ray train, evolve and run DDP there, and how fast?

    python benchmarks/gpu_check.py                  # about 5-8 minutes on one modern GPU
    python benchmarks/gpu_check.py --epochs 2 --generations 2

1. yolov5s at 640 on coco128 (../shared beside the checkout; else the built-in data at 160) with fp16
   AMP for a few epochs, in this process: img/s per epoch, peak GPU memory, finite losses, mAP in [0, 1].
2. scripts/evolve.py with two 0.5-GPU trials at once (fractional trials share the GPU, each capped at
   half its memory): rows written, all fitness values finite.
3. scripts/train.py --ray-workers 2 (NCCL DDP on two GPUs) when the machine has two or more.
Ends with a table (markdown) of every check; exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COCO128 = REPO.parent / "shared" / "datasets" / "coco128" / "coco128.yaml"
sys.path.insert(0, str(REPO))


def data_and_size() -> tuple[str, int]:
    if COCO128.is_file():
        return str(COCO128), 640
    from yolo_ray.data.synthetic import default_data_yaml

    return str(default_data_yaml()), 160


def single_gpu_training(args: argparse.Namespace, data: str, imgsz: int, out: Path) -> list[tuple[str, str, bool]]:
    import pandas as pd
    import torch

    import yolo_ray.train.loop as loop
    from yolo_ray.config import load_hyp

    timings: list[tuple[int, float]] = []

    class TimedProgress(loop.EpochProgress):
        def close(self) -> None:
            super().close()
            timings.append((self.images, self.seconds))

    loop.EpochProgress = TimedProgress
    torch.cuda.reset_peak_memory_stats()
    save_dir = out / "train"
    results = loop.train_loop_per_worker({
        "cfg": "yolov5s.yaml", "data": data, "hyp": load_hyp(None), "epochs": args.epochs, "batch_size": 16,
        "imgsz": imgsz, "device": "0", "save_dir": str(save_dir), "noplots": True, "workers": 8,
    })
    peak = torch.cuda.max_memory_reserved() / 2**30
    table = pd.read_csv(save_dir / "results.csv", skipinitialspace=True)
    losses = table.filter(like="train/").to_numpy().ravel()
    speeds = ", ".join(f"{images / seconds:.0f}" for images, seconds in timings)
    finite = bool(losses.size) and all(math.isfinite(x) for x in losses)
    sane = all(0.0 <= results[k] <= 1.0 for k in ("metrics/mAP_0.5", "metrics/mAP_0.5:0.95"))
    return [
        (f"train yolov5s {imgsz}px fp16 AMP, img/s per epoch", speeds, bool(timings)),
        ("peak GPU memory reserved", f"{peak:.2f} GiB", peak > 0),
        ("train losses finite", f"last {table.iloc[-1].filter(like='train/').round(4).tolist()}", finite),
        ("mAP@.5 / mAP@.5:.95 after the last epoch",
         f"{results['metrics/mAP_0.5']:.4f} / {results['metrics/mAP_0.5:0.95']:.4f}", sane),
    ]


def run_cli(args: list[str], timeout: int) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.time()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
    return done, time.time() - t0


def fractional_evolution(args: argparse.Namespace, data: str, out: Path) -> list[tuple[str, str, bool]]:
    from yolo_ray.evolve import read_history
    from yolo_ray.metrics import fitness

    done, seconds = run_cli(["scripts/evolve.py", "--data", data, "--cfg", "yolov5s.yaml", "--imgsz", "320",
                             "--epochs", "1", "--generations", str(args.generations), "--gpus-per-trial", "0.5",
                             "--concurrency", "2", "--project", str(out / "evolve"), "--seed", "0"], timeout=420)
    csv = out / "evolve" / "exp" / "evolve.csv"
    rows = read_history(csv) if csv.is_file() else None
    n = 0 if rows is None else len(rows)
    scores = [] if rows is None else fitness(rows.iloc[:, :7].to_numpy(dtype=float)).tolist()
    placed = next((line for line in done.stdout.splitlines() if "trials of" in line), "no placement line")
    ok = done.returncode == 0 and n == args.generations and all(math.isfinite(s) for s in scores)
    return [(f"evolve {args.generations} generations, two 0.5-GPU trials at once ({seconds:.0f} s)",
             f"{n} rows, fitness {min(scores, default=float('nan')):.4f}..{max(scores, default=float('nan')):.4f}; "
             f"{placed.split('trials of')[-1].strip()}", ok)]


def ddp_training(args: argparse.Namespace, data: str, imgsz: int, out: Path) -> list[tuple[str, str, bool]]:
    done, seconds = run_cli(["scripts/train.py", "--data", data, "--cfg", "yolov5s.yaml", "--imgsz", str(imgsz),
                             "--epochs", "2", "--batch-size", "32", "--ray-workers", "2", "--noplots",
                             "--project", str(out / "ddp")], timeout=420)
    # rank 0's epoch lines: '... 8/8 batches, 512.3 img/s, 4 s'
    speeds = [line.split(" img/s")[0].rsplit(" ", 1)[-1] for line in done.stdout.splitlines()
              if " batches, " in line and " img/s" in line]
    return [(f"2-worker NCCL DDP, 2 epochs ({seconds:.0f} s)", f"rank 0 img/s per epoch: {', '.join(speeds)}",
             done.returncode == 0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the single-GPU training")
    parser.add_argument("--generations", type=int, default=4, help="rows of the fractional-GPU evolution")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch; run this on a GPU machine", file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count()
    rows = [("machine", f"{gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
             f"CUDA {torch.version.cuda}", True)]
    data, imgsz = data_and_size()
    checks = [lambda out: single_gpu_training(args, data, imgsz, out), lambda out: fractional_evolution(args, data, out)]
    if gpus >= 2:
        checks.append(lambda out: ddp_training(args, data, imgsz, out))
    else:
        rows.append(("2-worker DDP", "skipped: one GPU", True))
    with tempfile.TemporaryDirectory() as tmp:
        for i, check in enumerate(checks):
            try:
                rows += check(Path(tmp) / str(i))
            except Exception as e:  # one broken check must not hide the others' results
                rows.append((f"check {i + 1}", f"{type(e).__name__}: {e}", False))
    print("\n| check | result | ok |\n|---|---|---|")
    for name, result, ok in rows:
        print(f"| {name} | {result} | {'yes' if ok else 'NO'} |")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
