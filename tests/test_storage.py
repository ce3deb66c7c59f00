"""--storage-path URI: the run lives at STORAGE/name (uploaded as it goes) and resumes from there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_ray.data.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_run_is_uploaded_to_a_storage_uri_and_resumed_from_it(tmp_path):
    data = make_dataset(tmp_path / "data", seed=2, n_train=16, n_val=8, size=96)
    store = tmp_path / "store"
    env = {**os.environ, "YOLO_RAY_HOME": str(tmp_path / "home")}

    def train(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "scripts" / "train.py"), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=tmp_path,
        )

    args = [
        "--cfg",
        "yolov5n.yaml",
        "--data",
        str(data),
        "--epochs",
        "2",
        "--imgsz",
        "64",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--noautoanchor",
        "--storage-path",
        f"file://{store}",
    ]
    first = train(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    run = store / "exp"
    assert len((run / "results.csv").read_text().splitlines()) == 3
    for name in ("opt.yaml", "hyp.yaml", "weights/last.pt", "weights/best.pt", "results.png"):
        assert (run / name).is_file(), name
    assert f"Results saved to file://{run}" in first.stdout
    assert not (tmp_path / "runs").exists()  # nothing written where --project would have put it

    from yolo_ray.cluster.storage import next_run_uri

    assert next_run_uri(f"file://{store}/", "exp", exist_ok=False) == f"file://{store}/exp2"  # as on disk
    assert next_run_uri(f"file://{store}", "exp", exist_ok=True) == f"file://{store}/exp"

    resumed = train("--resume", f"file://{run}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "training to 2 epochs is finished" in resumed.stdout
