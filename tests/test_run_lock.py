"""One driver per evolution folder: a second evolve.py on a folder another one is running is refused at
start, and a driver killed with kill -9 never leaves the folder locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from malformed_world import evolve_csv_text, snapshot, write

from yolo_ray.config import DEFAULT_HYP, UserError, load_hyp
from yolo_ray.paths import LOCK_NAME, one_driver

REPO = Path(__file__).resolve().parents[1]


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the folder as a driver does, until it is killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from yolo_ray.paths import one_driver
        with one_driver(Path({str(folder)!r}), "evolve.py"):
            print("held", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def kill_9(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


@pytest.mark.timeout(60)
def test_a_second_holder_is_refused_and_kill_9_frees_the_folder(tmp_path):
    proc = hold_lock(tmp_path)
    try:
        with pytest.raises(UserError, match=f"evolve.py, pid {proc.pid} on .* is running on this folder"):
            with one_driver(tmp_path, "evolve.py"):
                pass
    finally:
        kill_9(proc)
    assert (tmp_path / LOCK_NAME).exists()  # left behind by kill -9 ...
    with one_driver(tmp_path, "evolve.py"):  # ... and no obstacle: the kernel dropped the lock with the process
        assert str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.timeout(120)
def test_evolve_resume_of_a_folder_another_driver_runs_is_one_error_line(tmp_path, capfd):
    from yolo_ray.commands.evolve import main
    from yolo_ray.data.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    run = tmp_path / "runs" / "exp"
    write(run / "evolve.csv", evolve_csv_text(2, load_hyp(DEFAULT_HYP)))
    options = {"generations": 2, "search_space": "yolov5", "data": str(data), "cfg": "yolov5n.yaml", "imgsz": 64}
    write(run / "opt.yaml", yaml.safe_dump(options))
    proc = hold_lock(run)
    try:
        before = snapshot(run)
        code = main(["--resume", str(run), "--generations", "4"])
        err = capfd.readouterr().err
        assert snapshot(run) == before  # evolve.csv untouched: no rows were added by the refused driver
    finally:
        kill_9(proc)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: {run}: evolve.py, pid {proc.pid}"), err
    assert "Traceback" not in err
