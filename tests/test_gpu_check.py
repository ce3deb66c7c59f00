"""benchmarks/gpu_check.py's parts that run without a GPU: what it reads from logs and files, how it times."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trials_on_cpu_are_seen_in_the_ray_logs(gpu_check):
    logs = "(pid=11) Trial on Ray node 3f2a9c, cuda:0, pid 11\nnoise\n(pid=12) Trial on Ray node 3f2a9c, cpu, pid 12\n"
    devices = gpu_check.trial_devices(logs)
    assert devices == ["cuda:0", "cpu"]
    assert not all(d.startswith("cuda") for d in devices)  # what makes the evolution check fail
    assert gpu_check.trial_devices("nothing here") == []  # no trial line: the check fails too (not vacuous)


def test_rank0_pid_is_read_from_the_line_each_rank_prints(gpu_check):
    line = "(RayTrainWorker pid=77) DDP rank 0/1 on Ray node abc123, cuda:0, pid 77"
    assert gpu_check.RANK0_LINE.findall(line) == ["77"]
    assert gpu_check.RANK0_LINE.findall("DDP rank 1/2 on Ray node abc123, cuda:1, pid 78") == []


def test_speed_leaves_out_the_first_epoch(gpu_check):
    # epoch 0 pays for start-up and cuDNN autotuning: 512 images in 10 s; then 512 in 1 s twice
    assert gpu_check.speed_after_warmup([(512, 10.0), (512, 1.0), (512, 1.0)]) == pytest.approx(512.0)
    assert gpu_check.speed_after_warmup([(100, 2.0)]) == pytest.approx(50.0)


def test_results_rows_and_table(gpu_check, tmp_path):
    from yolo_ray.training.checkpoint import append_results_row

    csv = tmp_path / "results.csv"
    for epoch in (0, 1, 1, 2):
        append_results_row(csv, epoch, [0.1] * 13)
    assert gpu_check.epochs_in(csv) == [0, 1, 1, 2]  # a duplicated epoch is visible to the check
    table = gpu_check.markdown_table([("a", "1", True), ("b", "2", False)])
    assert table.splitlines() == ["| check | result | ok |", "|---|---|---|", "| a | 1 | yes |", "| b | 2 | NO |"]


def test_without_a_gpu_it_says_so_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the check would run")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.strip().startswith("error: no CUDA GPU")
