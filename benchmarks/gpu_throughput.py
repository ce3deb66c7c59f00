"""Does the GPU wait on the loader? yolov5s at 640 with the loader at 2 and at 8 CPU cores per GPU.

Three speeds, each in images/s, on synthetic 640 px images written as JPEGs (decoded on every use, as
without --cache): the augmented loader alone, the GPU training step alone (one batch reused: fp16 AMP and
channels-last, as training runs), and real training epochs (loader and step together). Training at the
loader's speed and well below the step's means the GPU waits on the loader. Optionally the step again
under torch.compile, with its compile time and whether its losses match eager mode.

Used by gpu_check.py; `python benchmarks/gpu_throughput.py` runs it alone on a GPU machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

Row = tuple[str, str, bool]
IMGSZ, BATCH = 640, 32
DEVICE = "0"  # a smoke test on a CPU machine passes --device cpu


def synthetic_640(out: Path, n_train: int) -> tuple[str, dict[str, Any]]:
    from yolo_ray.data import load_data_config
    from yolo_ray.data.synthetic import make_dataset

    data_yaml = make_dataset(out / "s640", n_train=n_train, n_val=32, size=IMGSZ)
    return str(data_yaml), load_data_config(data_yaml)


def loader_speed(train_path: str, workers: int, passes: int = 3) -> float:
    """img/s of the augmented loader alone over the passes after the first (worker start-up excluded)."""
    from yolo_ray.config import load_hyp
    from yolo_ray.data import create_dataloader

    loader, dataset = create_dataloader(
        train_path,
        IMGSZ,
        BATCH,
        stride=32,
        hyp=load_hyp(None),
        augment=True,
        workers=workers,
        shuffle=True,
        pin_memory=True,
    )
    for _ in loader:
        pass
    t0 = time.perf_counter()
    for _ in range(passes - 1):
        for _ in loader:
            pass
    return (passes - 1) * len(dataset) / (time.perf_counter() - t0)


def one_batch(train_path: str) -> tuple[Any, Any]:
    from yolo_ray.config import load_hyp
    from yolo_ray.data import create_dataloader

    loader, _ = create_dataloader(train_path, IMGSZ, BATCH, stride=32, hyp=load_hyp(None), augment=True, workers=0)
    imgs, targets, _, _ = next(iter(loader))
    return imgs, targets


def step_speed(nc: int, batch: tuple[Any, Any], compile_model: bool, steps: int = 30) -> tuple[float, float, float]:
    """(img/s of forward+backward+optimizer steps on one reused batch, first-step seconds, first loss)."""
    import torch

    from yolo_ray.config import load_hyp
    from yolo_ray.loss import ComputeLoss
    from yolo_ray.training.model_setup import create_model
    from yolo_ray.training.optim import build_optimizer
    from yolo_ray.training.precision import Precision

    torch.manual_seed(0)
    hyp = load_hyp(None)
    device = torch.device("cpu" if DEVICE == "cpu" else f"cuda:{DEVICE}")
    precision = Precision(device)
    model = precision.prepare_model(create_model("yolov5s.yaml", None, None, nc, hyp).to(device))
    model.hyp = hyp
    loss_fn = ComputeLoss(model, hyp)
    optimizer = build_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
    forward = torch.compile(model) if compile_model else model
    imgs = precision.prepare_input(batch[0].to(device).float() / 255)
    targets = batch[1].to(device)

    def step() -> float:
        with precision.autocast():
            loss, _ = loss_fn(forward(imgs), targets)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    t0 = time.perf_counter()
    first_loss = step()
    first_seconds = time.perf_counter() - t0
    for _ in range(5):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * BATCH / (time.perf_counter() - t0), first_seconds, first_loss


def timed_training(config: dict[str, Any]) -> tuple[dict[str, float], list[tuple[int, float]]]:
    """The training loop in this process: its final results and each epoch's (images, seconds)."""
    import yolo_ray.training.epoch as epoch
    from yolo_ray.training.loop import train_loop_per_worker

    timings: list[tuple[int, float]] = []

    class TimedProgress(epoch.EpochProgress):
        def close(self) -> None:
            super().close()
            timings.append((self.images, self.seconds))

    plain = epoch.EpochProgress
    epoch.EpochProgress = TimedProgress
    try:
        results = train_loop_per_worker(config)
    finally:
        epoch.EpochProgress = plain
    return results, timings


def speed_after_warmup(timings: list[tuple[int, float]]) -> float:
    """img/s over the epochs after the first (the first pays for loader start-up and cuDNN autotuning)."""
    steady = timings[1:] or timings
    seconds = sum(s for _, s in steady)
    return sum(n for n, _ in steady) / seconds if seconds > 0 else 0.0


def training_speed(data_yaml: str, workers: int, out: Path, epochs: int = 3) -> float:
    """img/s of real training epochs after the first (yolov5s from its yaml, 640, batch 32)."""
    from yolo_ray.config import load_hyp

    _, timings = timed_training(
        {
            "cfg": "yolov5s.yaml",
            "weights": None,
            "data": data_yaml,
            "hyp": load_hyp(None),
            "epochs": epochs,
            "batch_size": BATCH,
            "imgsz": IMGSZ,
            "device": DEVICE,
            "save_dir": str(out / f"train-w{workers}"),
            "noplots": True,
            "noval": True,
            "workers": workers,
        }
    )
    return speed_after_warmup(timings)


def loader_vs_step(out: Path, n_train: int = 512) -> list[Row]:
    data_yaml, data = synthetic_640(out, n_train)
    step, _, _ = step_speed(len(data["names"]), one_batch(data["train"]), compile_model=False)
    rows: list[Row] = [
        (f"yolov5s {IMGSZ}px batch {BATCH}: GPU step alone (fp16 AMP, channels-last)", f"{step:.0f} img/s", step > 0)
    ]
    for workers in (2, 8):
        feed = loader_speed(data["train"], workers)
        train = training_speed(data_yaml, workers, out)
        waits = "the GPU waits on the loader" if train < 0.8 * step and feed < 1.2 * step else "the GPU is the limit"
        rows.append(
            (
                f"yolov5s {IMGSZ}px, loader at {workers} cores per GPU",
                f"loader alone {feed:.0f} img/s, training {train:.0f} img/s: {waits}",
                feed > 0 and train > 0,
            )
        )
    return rows


def compiled_step(out: Path) -> list[Row]:
    """The step under torch.compile against eager mode: speed, compile time, and the same first loss."""
    _, data = synthetic_640(out, n_train=BATCH)
    batch = one_batch(data["train"])
    eager, _, eager_loss = step_speed(len(data["names"]), batch, compile_model=False)
    compiled, compile_s, compiled_loss = step_speed(len(data["names"]), batch, compile_model=True)
    same = abs(compiled_loss - eager_loss) <= 1e-2 * abs(eager_loss)
    return [
        (
            "torch.compile GPU step (option under study)",
            f"{compiled:.0f} img/s vs eager {eager:.0f} ({compiled / eager:.2f}x), first step {compile_s:.0f} s, "
            f"first loss {compiled_loss:.4f} vs eager {eager_loss:.4f}",
            same,
        )
    ]


def main() -> int:
    import tempfile

    global DEVICE, IMGSZ

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compile", action="store_true", help="only time the step under torch.compile vs eager")
    parser.add_argument("--device", default=DEVICE, help="CUDA device index, or cpu for a smoke test")
    parser.add_argument("--imgsz", type=int, default=IMGSZ)
    parser.add_argument("--n-train", type=int, default=512, help="synthetic training images")
    args = parser.parse_args()
    DEVICE, IMGSZ = args.device, args.imgsz
    with tempfile.TemporaryDirectory() as tmp:
        rows = compiled_step(Path(tmp)) if args.compile else loader_vs_step(Path(tmp), args.n_train)
    for name, result, ok in rows:
        print(f"| {name} | {result} | {'yes' if ok else 'NO'} |")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
