"""What a failure at the worst moment leaves, without a cluster: where a restart starts, which errors are
retried, uploads that a kill or a storage hiccup cannot tear, loader workers from Ray's CPU share."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import pytest

from yolo_ray.config import UserError


@pytest.fixture(scope="module")
def tiny_training_state():
    from yolo_ray.models import build_model
    from yolo_ray.training.optim import build_optimizer

    model = build_model("yolov5n.yaml", nc=2)
    return model, build_optimizer(model, "SGD", 0.01, 0.9, 0.0)


def save_last(path: Path, state, epoch: int, run_id: str, epochs: int = 5, done: bool = False) -> None:
    from yolo_ray.training.checkpoint import build_checkpoint, save_checkpoint

    model, optimizer = state
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = build_checkpoint(
        epoch, 0.1, model, deepcopy(model), 5, optimizer, {"run_id": run_id, "epochs": epochs}, training_done=done
    )
    save_checkpoint(ckpt, path)


def test_restart_after_the_last_epoch_goes_to_the_end_steps_not_to_epoch_0(tmp_path, tiny_training_state):
    from yolo_ray.training.checkpoint import load_training_checkpoint, restart_checkpoint, strip_optimizer
    from yolo_ray.training.restart import epochs_to_train, finished_results

    last = tmp_path / "weights" / "last.pt"
    save_last(last, tiny_training_state, 4, "run-a", epochs=5, done=True)
    assert restart_checkpoint(last, "run-a") == str(last)
    assert epochs_to_train(load_training_checkpoint(last), 5) == (5, 5)  # no epoch left: only the end steps
    assert epochs_to_train(load_training_checkpoint(last), 8) == (5, 8)  # --resume --epochs 8 trains on

    save_last(last, tiny_training_state, 2, "run-a", epochs=10, done=True)  # early stopping at epoch 2
    assert epochs_to_train(load_training_checkpoint(last), 10) == (3, 3)
    save_last(last, tiny_training_state, 2, "run-a", epochs=10)  # mid-run
    assert epochs_to_train(load_training_checkpoint(last), 10) == (3, 10)

    strip_optimizer(last)  # stripped without results (another tool, or an old run): not this run's end
    assert restart_checkpoint(last, "run-a") is None
    save_last(last, tiny_training_state, 4, "run-a", done=True)
    final = {"metrics/mAP_0.5": 0.5, "fitness": 0.3, "epoch": 4}
    strip_optimizer(last, final_results=final)  # the end steps' last step before the upload
    assert restart_checkpoint(last, "run-a") == str(last)
    assert finished_results(load_training_checkpoint(last)) == final
    assert restart_checkpoint(last, "run-b") is None


def test_a_torn_last_pt_is_no_restart_point(tmp_path, tiny_training_state):
    from yolo_ray.training.checkpoint import restart_checkpoint

    last = tmp_path / "weights" / "last.pt"
    save_last(last, tiny_training_state, 1, "run-a")
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert restart_checkpoint(last, "run-a") is None


def test_only_errors_a_retry_can_fix_are_retried():
    import ray.exceptions
    import torch
    from ray.train import WorkerGroupError

    from yolo_ray.cluster.launch import deterministic_error

    def group(*errors: Exception) -> WorkerGroupError:
        return WorkerGroupError("boom", dict(enumerate(errors)))

    assert "bad labels" in str(deterministic_error(group(UserError("bad labels"), RuntimeError("peer gone"))))
    oom = deterministic_error(group(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")))
    assert "lower --batch-size" in str(oom)
    assert "KeyError" in str(deterministic_error(group(KeyError("anchors"))))
    assert deterministic_error(group(ray.exceptions.ActorDiedError(), RuntimeError("NCCL: peer closed"))) is None
    assert deterministic_error(group(OSError("connection reset by storage"))) is None
    assert deterministic_error(group(ValueError("collateral"), ray.exceptions.ActorDiedError())) is None
    from ray.train import NCCLHangError

    assert deterministic_error(NCCLHangError("rank 3 stuck", {3: RuntimeError("op count frozen")})) is None


def test_fit_with_retries_retries_lost_workers_and_stops_at_once_on_user_errors():
    from yolo_ray.cluster.launch import fit_with_retries

    class Trainer:
        def __init__(self, error: Exception | None):
            self.error = error

        def fit(self):
            if self.error:
                raise self.error
            return type("Result", (), {"return_value": {"fitness": 0.5}})()

    attempts: list[int] = []

    def flaky(attempt: int) -> Trainer:
        attempts.append(attempt)
        return Trainer(RuntimeError("worker died") if attempt < 2 else None)

    assert fit_with_retries(flaky, max_failures=3) == {"fitness": 0.5}
    assert attempts == [0, 1, 2]
    attempts.clear()
    with pytest.raises(RuntimeError, match="worker died"):
        fit_with_retries(flaky, max_failures=1)
    assert attempts == [0, 1]

    calls: list[int] = []

    def bad_input(attempt: int) -> Trainer:
        calls.append(attempt)
        return Trainer(UserError("data.yaml: no labels"))

    with pytest.raises(UserError, match="no labels"):
        fit_with_retries(bad_input, max_failures=3)
    assert calls == [0]


def test_upload_killed_mid_file_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    import pyarrow.fs as pafs

    from yolo_ray.cluster import storage

    local, store = tmp_path / "run", tmp_path / "store"
    (local / "weights").mkdir(parents=True)
    (local / "weights" / "last.pt").write_bytes(b"epoch 3 " * 1000)
    storage.RunUploader(local, f"file://{store}").upload()
    (local / "weights" / "last.pt").write_bytes(b"epoch 4 " * 2000)
    real_copy = pafs.copy_files

    def dies_halfway(source, destination, **kwargs):
        kwargs["destination_filesystem"].open_output_stream(destination).write(b"epoch 4 " * 10)  # torn
        raise OSError("killed")

    monkeypatch.setattr(pafs, "copy_files", dies_halfway)
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    with pytest.raises(OSError, match="killed"):
        storage.RunUploader(local, f"file://{store}").upload()
    assert (store / "weights" / "last.pt").read_bytes() == b"epoch 3 " * 1000

    failures = iter([OSError("503 slow down"), None])

    def fails_once(*args, **kwargs):
        error = next(failures)
        if error:
            raise error
        real_copy(*args, **kwargs)

    monkeypatch.setattr(pafs, "copy_files", fails_once)
    storage.RunUploader(local, f"file://{store}").upload()
    assert (store / "weights" / "last.pt").read_bytes() == b"epoch 4 " * 2000
    visible = [p.name for p in (store / "weights").iterdir() if not p.name.startswith(".")]
    assert visible == ["last.pt"]


@pytest.mark.parametrize("assigned, workers", [(0.99, 1), (1.99, 2), (2.0, 2), (0.5, 1), (0.01, 1), (7.99, 8)])
def test_loader_workers_follow_the_cpus_ray_assigned_rounded_never_zero(assigned, workers):
    from yolo_ray.cluster.session import loader_cpus

    assert loader_cpus(assigned) == workers


def test_ray_client_addresses_are_one_clear_error(monkeypatch):
    from yolo_ray.cluster.nodes import connect

    monkeypatch.setattr("ray.is_initialized", lambda: False)
    with pytest.raises(UserError, match="ray://head:10001: Ray Client .* `ray job submit`"):
        connect("ray://head:10001")


def test_nodes_find_the_shipped_weights_in_their_own_install_and_a_stored_run_themselves(tmp_path):
    from yolo_ray.data.synthetic import BUILTIN_WEIGHTS_NAME, builtin_weights
    from yolo_ray.cluster.nodes import files_every_node_needs, node_weights

    drivers_install = f"/opt/driver-venv/site-packages/yolo_ray/data/builtin/{BUILTIN_WEIGHTS_NAME}"
    assert node_weights(drivers_install) == str(builtin_weights())
    with pytest.raises(UserError, match="weights file not found on Ray node"):
        node_weights(str(tmp_path / "mine.pt"))
    data = tmp_path / "data.yaml"
    stored = {
        "weights": "/driver/staging/ab12/weights/last.pt",
        "resume": "/driver/staging/ab12/weights/last.pt",
        "storage_uri": "s3://bucket/exp",
        "data": str(data),
        "cfg": "yolov5n.yaml",
    }
    assert files_every_node_needs(stored) == [str(data)]  # each node downloads the run; yolov5n.yaml is shipped
    local = {**stored, "storage_uri": None, "cfg": str(tmp_path / "my.yaml"), "weights": drivers_install}
    assert files_every_node_needs(local) == [str(data), local["resume"], local["cfg"]]


def test_cache_ram_is_skipped_when_the_ranks_copies_would_not_fit(tmp_path, monkeypatch):
    from yolo_ray.data import dataset as ds
    from yolo_ray.data.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", n_train=8, n_val=2, size=64)
    shapes = [(64, 64)] * 8
    one_copy = 8 * 64 * 64 * 3
    monkeypatch.setattr(ds, "available_memory", lambda: (int(one_copy * 4.5), 10 * one_copy))
    assert ds.ram_cache_fits(shapes, 64, copies=4)
    assert not ds.ram_cache_fits(shapes, 64, copies=8)  # 8 ranks on a node: 8 copies do not fit
    cached = ds.LoadImagesAndLabels(str(data.parent / "images" / "train"), 64, cache_images="ram", ram_copies=1)
    skipped = ds.LoadImagesAndLabels(str(data.parent / "images" / "train"), 64, cache_images="ram", ram_copies=8)
    assert cached.decoded is not None and skipped.decoded is None


def test_shared_images_are_budgeted_by_the_smallest_trial_node_and_the_drivers_memory():
    from yolo_ray.evolution.shared_images import sharing_budget

    gb = 1e9
    assert sharing_budget([200 * gb, 8 * gb], 100 * gb) == 2 * gb  # every node keeps a copy: the small one decides
    assert sharing_budget([200 * gb], 10 * gb) == 5 * gb  # a modest CPU head decodes them all first
    assert sharing_budget([], 10 * gb) == 0


def _rank_starts(rank: int, port: int, lasts: list[str], out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from yolo_ray.training.restart import starting_checkpoint
    from yolo_ray.cluster.session import WorkerContext

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        ctx = WorkerContext(rank, 2, torch.device("cpu"), "train", local_rank=rank)
        path, ckpt = starting_checkpoint(ctx, None, Path(lasts[rank]), "run-a")
        Path(out_dir, f"start{rank}.txt").write_text(f"{ckpt['epoch']} {'ema' in ckpt} {path}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_rank_restarts_from_the_checkpoint_rank_0_sees(tmp_path, tiny_training_state):
    """Rank 1's copy of last.pt is older (NFS attribute caching, a failed download): it starts where rank 0 does."""
    import socket

    import torch.multiprocessing as mp

    lasts = [tmp_path / "node0" / "last.pt", tmp_path / "node1" / "last.pt"]
    save_last(lasts[0], tiny_training_state, 3, "run-a")
    save_last(lasts[1], tiny_training_state, 1, "run-a")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_starts, args=(port, [str(p) for p in lasts], str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "start0.txt").read_text() == f"3 True {lasts[0]}"
    assert (tmp_path / "start1.txt").read_text() == f"3 False {lasts[0]}"  # rank 0's epoch; the EMA stays on rank 0


def test_a_trials_deterministic_error_is_a_failed_row_with_its_line_not_a_retry():
    from yolo_ray.evolution.searcher import COMPLETE_KEY, ERROR_KEY, result_problem

    line = "CUDA out of memory in training: lower --batch-size (or --imgsz)"
    assert result_problem({ERROR_KEY: line, COMPLETE_KEY: True}) == line
