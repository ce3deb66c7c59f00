"""The cluster-facing parts that need no cluster: rect batches per DDP rank, the built-in data on a node
without it, Ray's GPU ids to a torch device, restarting from a run's own last.pt, unreachable addresses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_ray.data.loader import RectBatchSampler, create_dataloader

REPO = Path(__file__).resolve().parents[1]


def mixed_aspect_dataset(root: Path, n: int = 14) -> Path:
    """Images of very different aspect ratios, so rect batches of consecutive images get different shapes."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        h, w = [(40, 120), (120, 40), (80, 80)][i % 3]
        cv2.imwrite(str(root / "images" / f"{i}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        (root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.3 0.3\n")
    return root / "images"


def test_rect_batch_sampler_gives_each_rank_whole_blocks_and_equal_counts():
    ranks = [list(RectBatchSampler(10, 3, world_size=2, rank=r)) for r in (0, 1)]
    assert ranks[0] == [[0, 1, 2], [6, 7, 8]]
    assert ranks[1] == [[3, 4, 5], [9]]
    assert [len(r) for r in [list(RectBatchSampler(5, 2, world_size=4, rank=k)) for k in range(4)]] == [1, 1, 1, 1]


def test_rect_ddp_loaders_batch_one_shape_per_batch(tmp_path):
    """Rank r's batches under --rect with 2 ranks: every batch stacks (one shape), and the two ranks
    together cover the dataset with the shapes the dataset assigned to each block."""
    images = mixed_aspect_dataset(tmp_path / "data")
    seen = []
    for rank in (0, 1):
        loader, dataset = create_dataloader(
            str(images), 128, 2, 32, rect=True, rank=rank, world_size=2, workers=0, pad=0.5
        )
        for imgs, _, paths, _ in loader:
            index = dataset.im_files.index(paths[0])
            expected = dataset.batch_shapes[dataset.batch[index]]
            assert tuple(imgs.shape[2:]) == tuple(int(x) for x in expected)
            seen += paths
    assert sorted(set(seen)) == sorted(dataset.im_files)


def test_builtin_data_path_from_another_node_is_regenerated_here(tmp_path, monkeypatch):
    from yolo_ray.data.config import load_data_config
    from yolo_ray.data.synthetic import DATASET_VERSION, locate_data_yaml

    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))
    drivers_copy = Path("/home/someone-else/.cache/yolo_ray/datasets") / DATASET_VERSION / "data.yaml"
    here = locate_data_yaml(drivers_copy)
    assert here == tmp_path / "home" / "datasets" / DATASET_VERSION / "data.yaml"
    assert load_data_config(here)["nc"] == 4
    assert locate_data_yaml(tmp_path / "missing" / "data.yaml") == tmp_path / "missing" / "data.yaml"


def test_ray_gpu_ids_map_to_the_torch_index_among_visible_devices(monkeypatch):
    import ray
    import torch

    from yolo_ray.cluster.session import ray_assigned_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [3])
    assert ray_assigned_device() == torch.device("cuda:1")
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])  # a CPU trial on a GPU host stays off the GPUs
    assert ray_assigned_device() == torch.device("cpu")


def test_restart_takes_only_this_runs_own_unstripped_last_pt(tmp_path):
    from copy import deepcopy

    from yolo_ray.models import build_model
    from yolo_ray.training.checkpoint import build_checkpoint, restart_checkpoint, save_checkpoint, strip_optimizer
    from yolo_ray.training.optim import build_optimizer

    model = build_model("yolov5n.yaml", nc=2)
    optimizer = build_optimizer(model, "SGD", 0.01, 0.9, 0.0)
    last = tmp_path / "weights" / "last.pt"
    last.parent.mkdir()
    save_checkpoint(build_checkpoint(2, 0.1, model, deepcopy(model), 5, optimizer, {"run_id": "run-a"}), last)
    assert restart_checkpoint(last, "run-a") == str(last)
    assert restart_checkpoint(last, "run-b") is None  # another run's last.pt (--exist-ok into an old folder)
    assert restart_checkpoint(tmp_path / "absent.pt", "run-a") is None
    strip_optimizer(last)
    assert restart_checkpoint(last, "run-a") is None  # finished: nothing to restart from


@pytest.mark.parametrize("via", ["--address", "RAY_ADDRESS"])
@pytest.mark.parametrize(
    "script, extra",
    [
        ("train.py", ["--cfg", "yolov5n.yaml", "--ray-workers", "2", "--batch-size", "2"]),
        ("evolve.py", ["--generations", "2"]),
    ],
)
def test_unreachable_address_is_one_error_line_within_seconds(tmp_path, script, extra, via):
    # A dead cluster named in the environment used to hang in Ray's reconnect loop: both ways get one check.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    address = ["--address", "127.0.0.1:1"] if via == "--address" else []
    if via == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = "127.0.0.1:1"
    t0 = time.time()
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *address, "--project", str(tmp_path / "runs"), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [line for line in lines if line.startswith("error:")]
    assert f"{via} 127.0.0.1:1" in done.stderr and "no Ray cluster answers" in done.stderr
    assert not (tmp_path / "runs").exists()
    assert time.time() - t0 < 60


def test_package_travels_to_workers_only_when_joining_another_cluster(monkeypatch):
    import yolo_ray
    from yolo_ray.cluster.nodes import package_runtime_env

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    env = package_runtime_env("10.0.0.1:6379")
    assert env["py_modules"] == [str(Path(yolo_ray.__file__).resolve().parent)]
    assert package_runtime_env("local") is None  # same machine, same install
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    assert package_runtime_env("10.0.0.1:6379") is None  # a Ray job ships its working_dir already
