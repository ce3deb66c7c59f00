"""End-to-end runs of train_loop_per_worker on a tiny synthetic dataset: files, metrics, resume, evolve mode."""

from __future__ import annotations

import shutil

import pytest
import torch

from yolo_ray.config import DEFAULT_HYP, load_hyp
from yolo_ray.data.synthetic import make_dataset
from yolo_ray.models import load_checkpoint
from yolo_ray.training import train_loop_per_worker
from yolo_ray.scores import RESULT_KEYS, RESULTS_CSV_KEYS
from yolo_ray.training.checkpoint import results_header

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synthetic") / "data", seed=3, n_train=32, n_val=8, size=96)


def tiny_config(data, save_dir, **overrides):
    hyp = load_hyp(DEFAULT_HYP)
    hyp["mosaic"] = 0.0  # plain letterboxed images: a steadier signal in two short epochs
    config = {
        "cfg": "yolov5n.yaml",
        "weights": None,
        "data": str(data),
        "hyp": hyp,
        "epochs": 2,
        "batch_size": 8,
        "imgsz": 64,
        "workers": 0,
        "device": "cpu",
        "save_dir": str(save_dir),
        "noplots": True,
        "seed": 0,
    }
    return {**config, **overrides}


def read_rows(csv_path):
    lines = csv_path.read_text().splitlines()
    return lines[0], [[float(x) for x in line.split(",")] for line in lines[1:]]


@pytest.fixture(scope="module")
def two_epoch_run(tiny_data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("run")
    results = train_loop_per_worker(tiny_config(tiny_data, save_dir, save_period=1))
    return save_dir, results


@pytest.mark.timeout(150)
def test_two_epochs_write_results_and_checkpoints(two_epoch_run):
    save_dir, results = two_epoch_run
    header, rows = read_rows(save_dir / "results.csv")
    assert header == results_header()
    assert [r[0] for r in rows] == [0, 1]
    assert all(len(r) == len(RESULTS_CSV_KEYS) for r in rows)
    assert set(results) == {*RESULT_KEYS, "fitness", "epoch"} and results["epoch"] == 1

    # two epochs from scratch sit inside the 100-iteration warmup: mAP is still 0, the val loss falls
    val_loss = [sum(r[8:11]) for r in rows]
    assert val_loss[1] < val_loss[0]

    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(save_dir / "weights" / name, weights_only=True)
        assert ckpt["epoch"] == -1 and ckpt["optimizer"] is None  # stripped at the end, as upstream
        assert ckpt["yaml"]["nc"] == 4 and ckpt["names"] == {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
        assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
        loaded = load_checkpoint(save_dir / "weights" / name)
        assert loaded["state_dict"].keys() == ckpt["model"].keys()
    full = torch.load(save_dir / "weights" / "epoch1.pt", weights_only=True)
    assert full["epoch"] == 1 and full["optimizer"]["param_groups"][0]["lr"] > 0 and full["updates"] > 0


@pytest.mark.timeout(150)
def test_resume_continues_with_the_same_lr_and_ema_updates(two_epoch_run, tiny_data, tmp_path):
    save_dir, _ = two_epoch_run
    (tmp_path / "weights").mkdir()
    shutil.copy(save_dir / "weights" / "epoch0.pt", tmp_path / "weights" / "last.pt")
    header, rows = read_rows(save_dir / "results.csv")
    lines = (save_dir / "results.csv").read_text().splitlines()
    # the killed run had written epoch 1's row too, plus a torn line: both must go
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n          2,  0.1")

    config = tiny_config(tiny_data, tmp_path, save_period=1, resume=str(tmp_path / "weights" / "last.pt"))
    results = train_loop_per_worker(config)
    assert results["epoch"] == 1
    _, resumed = read_rows(tmp_path / "results.csv")
    assert [r[0] for r in resumed] == [0, 1]
    assert resumed[0] == rows[0]
    assert resumed[1][11:14] == pytest.approx(rows[1][11:14], rel=1e-4)  # x/lr0..2 as uninterrupted
    uninterrupted = torch.load(save_dir / "weights" / "epoch1.pt", weights_only=True)
    continued = torch.load(tmp_path / "weights" / "epoch1.pt", weights_only=True)
    assert continued["updates"] == uninterrupted["updates"]
    assert continued["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        uninterrupted["optimizer"]["param_groups"][0]["lr"]
    )


@pytest.mark.timeout(120)
def test_evolve_mode_writes_no_weights_and_returns_results(tiny_data, tmp_path):
    results = train_loop_per_worker(tiny_config(tiny_data, tmp_path, epochs=1, evolve=True, noplots=False))
    assert set(results) == {*RESULT_KEYS, "fitness", "epoch"}
    assert not (tmp_path / "weights").exists()
    assert not list(tmp_path.glob("*.jpg"))
    _, rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == 1
