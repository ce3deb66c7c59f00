"""val.py --task study, as upstream: each model validated at image sizes 256 to 1536 (step 128); one
study_<data>_<weights>.txt per model (rows: P, R, mAP50, mAP50-95, 3 val losses, then pre-process,
inference and NMS ms per image) and study.png, mAP50-95 against inference time."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

STUDY_SIZES = tuple(range(256, 1536 + 128, 128))


def study_rows(
    validate: Callable[[int], tuple[tuple[float, ...], tuple[float, ...]]], sizes: tuple[int, ...] | None = None
) -> np.ndarray:
    """validate(imgsz) -> (7 results, 3 per-image times in ms), at each size (STUDY_SIZES by default):
    (len(sizes), 10)."""
    rows = []
    for imgsz in sizes or STUDY_SIZES:
        print(f"\nRunning --imgsz {imgsz}...")
        results, times = validate(imgsz)
        rows.append([*results, *times])
    return np.array(rows)


def save_study(rows: np.ndarray, file: Path) -> Path:
    np.savetxt(file, rows, fmt="%10.4g")
    return file


def plot_study(save_dir: Path) -> Path:
    """study.png: mAP50-95 (%) against inference ms per image, one line per study_*.txt in save_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 1, figsize=(8, 4), tight_layout=True)
    for f in sorted(save_dir.glob("study*.txt")):
        y = np.loadtxt(f, dtype=np.float32, usecols=[0, 1, 2, 3, 7, 8, 9], ndmin=2).T
        ax.plot(y[5], y[3] * 100, ".-", linewidth=2, markersize=8, label=f.stem.replace("study_", ""))
    ax.grid(alpha=0.2)
    ax.set_xlabel("Speed (ms/img)")
    ax.set_ylabel("mAP50-95 (%)")
    ax.legend(loc="lower right")
    file = save_dir / "study.png"
    print(f"Saving {file}...")
    fig.savefig(file, dpi=300)
    plt.close(fig)
    return file
