"""Shared fixtures: the one Ray cluster of the session, the shared real datasets, tiny synthetic ones, and
the train command's functions (scripts/train.py is a thin wrapper: no test needs to load it by path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
COCO128 = SHARED / "datasets" / "coco128"


@pytest.fixture(scope="session")
def coco128() -> Path:
    """The coco128 data yaml beside the checkout; tests that need real images skip without it."""
    yaml_path = COCO128 / "coco128.yaml"
    if not yaml_path.is_file():
        pytest.skip(f"real dataset not found at {COCO128} (CI places ../shared beside the checkout)")
    return yaml_path


@pytest.fixture(scope="session", autouse=True)
def _package_logging():
    """The package's records reach the console as in the scripts (tests read them with capsys)."""
    from yolo_ray.console import setup_logging

    setup_logging("info")


@pytest.fixture(scope="session")
def _ray_session():
    """Leaves Ray down at the end of the session, whichever cluster the last test joined."""
    import ray

    yield
    ray.shutdown()


@pytest.fixture
def ray_cluster(_ray_session):
    """The local Ray cluster, started once (ray.init costs ~10 s here) and again only after a test module
    that needed a multi-node cluster of its own (tests/test_multinode.py) took the connection."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        # "local" always starts a fresh cluster, never joins one a developer left running.
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    return ray


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: small tensors on a 2-core box shared with data workers and
    Ray stall under OpenMP oversubscription (measured up to 15x slower with two threads)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def stub_data(tmp_path) -> Path:
    """The smallest dataset that passes the scripts' checks (real images and labels); stub trials never read it."""
    from yolo_ray.data.synthetic import make_dataset

    return make_dataset(tmp_path / "data", n_train=2, n_val=1, size=32)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """16 training and 8 validation images of 64 px: a few epochs at --imgsz 64 in seconds."""
    from yolo_ray.data.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("tiny") / "data", seed=3, n_train=16, n_val=8, size=64)


@pytest.fixture(scope="session")
def train_cli():
    """The train command (build_parser, fresh_run_options, claim_run_dir, resume_options, main)."""
    from yolo_ray.commands import train

    return train
