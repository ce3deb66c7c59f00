"""scripts/train.py: option errors, run directories, resume discovery, and kill -9 + --resume."""

from __future__ import annotations

import csv
import os
import signal
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from yolo_ray.config import UserError
from yolo_ray.paths import increment_path, resolve_project
from yolo_ray.training.rundir import find_last_checkpoint

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "scripts" / "train.py"
TINY_RUN = ["--cfg", "yolov5n.yaml", "--imgsz", "64", "--batch-size", "4", "--workers", "0", "--noautoanchor"]


@pytest.fixture
def cli(train_cli):
    return train_cli


def read_results(csv_path: Path) -> list[dict[str, float]]:
    with open(csv_path) as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--cfg", "yolov5n.yaml", "--data", "{tmp}/missing.yaml"], "missing.yaml: file not found"),
        (["--cfg", "yolov5n.yaml", "--batch-size", "6", "--ray-workers", "4"], "must be a multiple of --ray-workers 4"),
        (["--cfg", "no_such_model.yaml"], "no_such_model"),
        (["--weights", "{tmp}/yolov5s.pt"], "yolov5s.pt: weights file not found"),
        (["--data", "{tmp}/missing.yaml"], "missing.yaml: file not found"),  # the default model, then the data
        (["--resume"], "no last.pt found to resume"),
        (["--resume", "{tmp}/weights/last.pt"], "--resume checkpoint not found"),
        (["--cfg", "yolov5n.yaml", "--epochs", "0"], "--epochs 0 is out of range (valid: [1, inf))"),
        (["--cache", "gpu"], "invalid choice: 'gpu'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_print_one_error_line_and_exit_2(cli, tmp_path, capsys, args, expected):
    args = [a.format(tmp=tmp_path) for a in args] + ["--project", str(tmp_path / "runs")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "runs").exists()  # nothing is created for a run that cannot start


@pytest.mark.timeout(60)
def test_real_process_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), "--batch-size", "5", "--ray-workers", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: --batch-size 5 must be a multiple of --ray-workers 2\n"


@pytest.mark.timeout(10)
def test_increment_path_counts_past_the_highest_suffix(tmp_path):
    exp = tmp_path / "exp"
    assert increment_path(exp) == exp  # free: used as is
    assert increment_path(exp, mkdir=True) == exp and exp.is_dir()
    assert increment_path(exp) == tmp_path / "exp2"
    (tmp_path / "exp2").mkdir()
    (tmp_path / "exp9").mkdir()
    (tmp_path / "exp_old").mkdir()  # not a numbered sibling
    (tmp_path / "experiment12").mkdir()  # another name that merely starts with "exp"
    assert increment_path(exp) == tmp_path / "exp10"
    assert increment_path(exp, exist_ok=True) == exp
    claimed = {increment_path(exp, mkdir=True) for _ in range(3)}  # each call claims a new dir
    assert claimed == {tmp_path / "exp10", tmp_path / "exp11", tmp_path / "exp12"}


@pytest.mark.timeout(10)
def test_relative_project_lands_in_durable_root_inside_a_ray_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert resolve_project("runs/train") == tmp_path / "runs" / "train"
    assert resolve_project("/abs/project") == Path("/abs/project")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))
    assert resolve_project("runs/train") == tmp_path / "home" / "runs" / "train"
    monkeypatch.delenv("YOLO_RAY_HOME")
    assert resolve_project("runs/train") == Path.home() / "yolo_ray" / "runs" / "train"


@pytest.mark.timeout(10)
def test_find_last_checkpoint_picks_the_newest(tmp_path):
    with pytest.raises(UserError, match="no last.pt"):
        find_last_checkpoint(tmp_path)
    for i, run in enumerate(["exp", "exp2", "exp3"]):
        f = tmp_path / run / "weights" / "last.pt"
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x")
        os.utime(f, (1000 + i, [1000, 3000, 2000][i]))
    assert find_last_checkpoint(tmp_path) == tmp_path / "exp2" / "weights" / "last.pt"


@pytest.mark.timeout(30)
def test_results_png_and_its_smoothing(tmp_path):
    from yolo_ray.scores import RESULTS_CSV_KEYS
    from yolo_ray.training.checkpoint import append_results_row
    from yolo_ray.training.plots import plot_results, smooth

    ramp = np.arange(40.0)
    assert np.allclose(smooth(ramp)[12:-12], ramp[12:-12])  # a symmetric kernel keeps a line's interior
    assert np.allclose(smooth(np.full(5, 3.0)), 3.0)  # edge padding: no sag at the ends
    results_csv = tmp_path / "results.csv"
    for epoch in range(3):
        append_results_row(results_csv, epoch, [0.1 * epoch] * (len(RESULTS_CSV_KEYS) - 1))
    png = plot_results(results_csv)
    assert png == tmp_path / "results.png" and png.stat().st_size > 10_000
    results_csv.write_text("epoch,train/box_loss\n0,1\n")
    with pytest.raises(UserError, match="missing columns"):
        plot_results(results_csv)


def fake_run(run_dir: Path, epoch: int, epochs: int) -> Path:
    """A run dir with opt.yaml and a last.pt holding just what resume reads."""
    last = run_dir / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    (run_dir / "opt.yaml").write_text(
        yaml.safe_dump(
            {
                "epochs": epochs,
                "cfg": "yolov5n.yaml",
                "batch_size": 4,
                "project": str(run_dir.parent),
                "name": run_dir.name,
            }
        )
    )
    torch.save({"epoch": epoch, "opt": {}}, last)
    return last


@pytest.mark.timeout(20)
def test_resume_discovers_the_latest_run_and_restores_its_options(cli, tmp_path):
    fake_run(tmp_path / "exp", epoch=4, epochs=10)
    time.sleep(0.01)
    last = fake_run(tmp_path / "exp2", epoch=1, epochs=3)
    opt = cli.resume_options(True, str(tmp_path))
    assert opt["weights"] == opt["resume"] == str(last)
    assert opt["save_dir"] == str(tmp_path / "exp2")
    assert opt["cfg"] is None and opt["epochs"] == 3 and opt["batch_size"] == 4
    finished = fake_run(tmp_path / "exp3", epoch=-1, epochs=3)  # stripped at the end of training
    assert cli.resume_options(str(finished), str(tmp_path)) is None  # nothing to do (tests/test_fidelity.py)


def train_env(**extra: str) -> dict[str, str]:
    # One OpenMP thread: on a shared, oversubscribed CPU spinning thread pools make tiny runs ~20x slower.
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_data_omitted_trains_on_builtin_synthetic_data(tmp_path):
    from yolo_ray.data import synthetic

    # The built-in dataset's cache, pre-filled with a 16-image version so the test stays short.
    home = tmp_path / "home"
    builtin = synthetic.make_dataset(home / "datasets" / synthetic.DATASET_VERSION, n_train=16, n_val=8, size=64)
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), *TINY_RUN, "--epochs", "1", "--project", "runs"],
        cwd=tmp_path,
        env=train_env(YOLO_RAY_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "runs" / "exp"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    assert opt["data"] == str(builtin) and opt["save_dir"] == str(run)
    assert yaml.safe_load((run / "hyp.yaml").read_text())["lr0"] == 0.01  # hyp.scratch-low
    assert [r["epoch"] for r in read_results(run / "results.csv")] == [0]
    assert (run / "weights" / "best.pt").is_file() and (run / "results.png").is_file()
    assert proc.stdout.count("Results saved to") == 1 and f"Results saved to {run}\n" in proc.stdout
    last_line = proc.stdout.strip().splitlines()[-1]  # the built-in data needs no --data
    python, *args = shlex.split(last_line.removeprefix("Train on: "))
    assert args == [str(TRAIN_PY), "--weights", f"{run}/weights/best.pt", "--imgsz", "64"]
    assert Path(shutil.which(python) or python).absolute() == Path(sys.executable).absolute()


def start_training(project: Path, data: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        str(TRAIN_PY),
        *TINY_RUN,
        "--data",
        str(data),
        "--project",
        str(project),
        "--noplots",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=train_env())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_mid_training_then_resume_matches_an_uninterrupted_run(tiny_data, tmp_path):
    epochs = ["--epochs", "4"]
    reference = start_training(tmp_path / "ref", tiny_data, *epochs)
    victim = start_training(tmp_path / "runs", tiny_data, *epochs)
    run = tmp_path / "runs" / "exp"
    last = run / "weights" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, victim.communicate()[0]  # still training: killed mid-run
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    saved_epoch = torch.load(last, weights_only=True)["epoch"]
    rows_before = read_results(run / "results.csv")[: saved_epoch + 1]
    assert 0 <= saved_epoch < 3

    resumed = subprocess.run(
        [sys.executable, str(TRAIN_PY), "--resume", "--project", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=150,
        env=train_env(),
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at epoch {saved_epoch + 1}" in resumed.stdout
    assert reference.wait(timeout=150) == 0, reference.communicate()[0]

    rows = read_results(run / "results.csv")
    ref_rows = read_results(tmp_path / "ref" / "exp" / "results.csv")
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]  # one row per epoch, none repeated
    assert rows[: saved_epoch + 1] == rows_before  # finished epochs were kept, not trained again
    for row, ref in zip(rows, ref_rows):  # the LR schedule continued exactly where it stopped
        assert [row[f"x/lr{i}"] for i in range(3)] == [ref[f"x/lr{i}"] for i in range(3)]
    assert torch.load(last, weights_only=True)["epoch"] == -1  # finished and stripped


@pytest.mark.timeout(180)
def test_a_run_from_an_older_version_resumes_with_the_newer_options_defaults(cli, tiny_data, tmp_path, capsys):
    """opt.yaml written before the Ray, storage and tracker options existed: --resume --epochs 2 fine-tunes
    the finished run (it used to stop on KeyError: 'cpus_per_worker')."""
    project = tmp_path / "runs"
    assert cli.main([*TINY_RUN, "--data", str(tiny_data), "--epochs", "1", "--project", str(project)]) == 0
    opt_yaml = project / "exp" / "opt.yaml"
    newer = ("cpus_per_worker", "gpus_per_worker", "max_failures", "placement_timeout", "trackers", "storage_path")
    old = {k: v for k, v in yaml.safe_load(opt_yaml.read_text()).items() if k not in newer}
    opt_yaml.write_text(yaml.safe_dump(old))
    assert cli.main(["--resume", str(project / "exp" / "weights" / "last.pt"), "--epochs", "2"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert len(read_results(project / "exp2" / "results.csv")) == 1  # the one extra epoch, in a new run
