"""Regenerate the shipped starting checkpoint for the built-in data: yolo_ray/data/builtin/yolov5n-synthetic.pt.

    OMP_NUM_THREADS=1 python benchmarks/make_builtin_weights.py        # ~6 min on 2 CPU cores

yolov5n from scratch on the built-in synthetic dataset, imgsz 160, hyp.scratch-low.yaml, batch 16,
60 epochs (mAP@.5 0.648 on its val split), seed 0 (scripts/train.py's defaults otherwise). The final
epoch's EMA weights are kept, stripped (fp16 state dict, no optimizer) like every finished run's
last.pt, with the run's options cut to the ones that made it, so the file holds no paths of the
machine that trained it.
OMP_NUM_THREADS=1 matters on a busy CPU box: more threads than free cores made epochs ~25x slower.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.data.synthetic import builtin_weights  # noqa: E402
from yolo_ray.training.checkpoint import load_training_checkpoint, save_checkpoint  # noqa: E402

SETTINGS = {
    "cfg": "yolov5n.yaml",
    "hyp": "hyp.scratch-low.yaml",
    "epochs": 60,
    "imgsz": 160,
    "batch_size": 16,
    "seed": 0,
}
# Options kept in the shipped file's "opt": what the model was trained with, nothing machine-specific.
KEPT_OPTIONS = (*SETTINGS, "optimizer", "data")


def train_args(settings: dict, project: Path, workers: int) -> list[str]:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    return [*args, f"--workers={workers}", f"--project={project}", "--name=exp", "--noplots"]


def ship(last: Path, out: Path, epochs: int) -> None:
    """last.pt of the finished run, its options cut to KEPT_OPTIONS, written to out."""
    ckpt = load_training_checkpoint(last)
    ckpt["opt"] = {k: ckpt["opt"][k] for k in KEPT_OPTIONS if k in ckpt["opt"]}
    ckpt["opt"].update(data="built-in synthetic dataset", epochs=epochs)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=builtin_weights(), help="where the checkpoint goes")
    p.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    p.add_argument("--workers", type=int, default=1, help="dataloader workers")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import train  # scripts/train.py

    with tempfile.TemporaryDirectory(prefix="builtin-weights-") as tmp:
        settings = {**SETTINGS, "epochs": args.epochs}
        if train.main(train_args(settings, Path(tmp), args.workers)) != 0:
            return 1
        ship(Path(tmp) / "exp" / "weights" / "last.pt", args.out, settings["epochs"])  # stripped by train.py
    return 0


if __name__ == "__main__":
    sys.exit(main())
