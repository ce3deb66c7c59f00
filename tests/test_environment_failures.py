"""The machine says no: a disk that fills up mid-training, a read-only home folder. Real filesystems (a small
tmpfs, a read-only tmpfs) mounted for the test; skipped where this process may not mount."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def mount_tmpfs(where: Path, options: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    return where


@pytest.fixture
def small_disk(tmp_path):
    disk = mount_tmpfs(tmp_path / "disk", "size=3m")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.fixture
def read_only_home(tmp_path):
    home = mount_tmpfs(tmp_path / "home", "ro,size=1m")
    yield home
    subprocess.run(["umount", str(home)], check=True)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.timeout(180)
def test_a_full_disk_mid_training_is_one_error_line_and_no_temp_file(small_disk, tiny_data, train_cli, capfd):
    """opt.yaml, plots and results.csv fit on the 3 MB disk; the first last.pt (~4 MB) does not."""
    args = ["--data", str(tiny_data), "--cfg", "yolov5n.yaml", "--imgsz", "64", "--batch-size", "8", "--workers", "0"]
    code = train_cli.main([*args, "--epochs", "2", "--project", str(small_disk / "runs")])
    err = capfd.readouterr().err
    last = small_disk / "runs" / "exp" / "weights" / "last.pt"
    assert code == 2
    assert err == f"error: {last}: cannot write it (No space left on device)\n"
    assert not [f for f in files_under(small_disk) if ".tmp" in f or f.endswith(".lock")], files_under(small_disk)


@pytest.mark.timeout(240)
def test_a_read_only_home_trains_with_the_cache_in_tmp(read_only_home, tmp_path):
    """Train on the built-in data (generated into the cache) and start a local Ray cluster (whose auth token
    Ray would write to ~/.ray): both work, with one warning naming where the cache went."""
    code = textwrap.dedent(
        f"""
        import ray
        from yolo_ray.cluster.nodes import connect
        from yolo_ray.commands.train import main
        assert main(["--epochs", "1", "--imgsz", "64", "--project", {str(tmp_path / "runs")!r}]) == 0
        assert connect(None, log_to_driver=False)
        assert ray.cluster_resources()["CPU"] >= 1
        ray.shutdown()
        """
    )
    env = {**os.environ, "HOME": str(read_only_home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for var in ("YOLO_RAY_HOME", "RAY_ADDRESS", "RAY_AUTH_TOKEN", "MPLCONFIGDIR"):
        env.pop(var, None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=220)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Matplotlib created a temporary" not in output
    warnings = [line for line in output.splitlines() if "WARNING: " in line and "cannot be created" in line]
    assert warnings == [
        f"WARNING: {read_only_home}/.cache/yolo_ray cannot be created (read-only home?); caching in "
        f"/tmp/yolo_ray-{os.getuid()} instead (set $YOLO_RAY_HOME to choose)"
    ]
    assert (tmp_path / "runs" / "exp" / "weights" / "best.pt").is_file()
