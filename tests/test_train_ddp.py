"""Two Ray Train workers (CPU, gloo DDP) run train_loop_per_worker and end with identical weights."""

from __future__ import annotations

import pytest

from yolo_ray.config import DEFAULT_HYP, load_hyp
from yolo_ray.data.synthetic import make_dataset
from yolo_ray.scores import RESULT_KEYS

pytestmark = pytest.mark.slow


def train_and_fingerprint(config):
    """The loop, plus a digest of this rank's final parameters written to save_dir/rank{r}.sha256."""
    import hashlib
    from pathlib import Path

    import ray.train

    import yolo_ray.training.loop as loop

    trained = []
    unwrap = loop.de_parallel

    def capture(model):
        trained.append(unwrap(model))
        return trained[-1]

    loop.de_parallel = capture  # the loop unwraps its DDP model once: keep that bare model
    result = loop.train_loop_per_worker(config)
    # parameters only: BN running stats follow each rank's own last batch, as in any DDP run
    data = b"".join(p.detach().float().cpu().numpy().tobytes() for _, p in trained[-1].named_parameters())
    rank = ray.train.get_context().get_world_rank()
    Path(config["save_dir"], f"rank{rank}.sha256").write_text(hashlib.sha256(data).hexdigest())
    return result


@pytest.mark.timeout(240)
def test_two_workers_end_with_identical_weights(ray_cluster, tmp_path):
    import sys

    from ray import cloudpickle
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/ modules

    data = make_dataset(tmp_path / "data", seed=5, n_train=32, n_val=8, size=96)
    hyp = load_hyp(DEFAULT_HYP)
    save_dir = tmp_path / "run"
    config = {
        "cfg": "yolov5n.yaml",
        "data": str(data),
        "hyp": hyp,
        "epochs": 2,
        "batch_size": 8,
        "imgsz": 64,
        "workers": 0,
        "device": "cpu",
        "save_dir": str(save_dir),
        "noplots": True,
        "noautoanchor": False,
    }
    trainer = TorchTrainer(
        train_and_fingerprint,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=str(tmp_path / "ray"), name="ddp"),
    )
    result = trainer.fit()
    digests = [(save_dir / f"rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert set(result.return_value) == {*RESULT_KEYS, "fitness", "epoch"} and result.return_value["epoch"] == 1
    rows = (save_dir / "results.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per epoch, written by rank 0 only
    assert (save_dir / "weights" / "last.pt").is_file()
    # weights stay in the run directory only: nothing copied into Ray's storage per epoch
    assert result.checkpoint is None
    assert not [p for p in (tmp_path / "ray").rglob("*.pt")]
