"""TensorBoard, MLflow and W&B (offline) for a real training run and an evolution: read back with each
tool's own reader and compared with results.csv / evolve.csv."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest

from yolo_ray.evolution import read_history

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = [
    "--cfg",
    "yolov5n.yaml",
    "--imgsz",
    "64",
    "--batch-size",
    "4",
    "--workers",
    "0",
    "--noautoanchor",
    "--device",
    "cpu",
]
pytestmark = pytest.mark.slow
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed")


def read_results(csv_path: Path) -> list[dict[str, float]]:
    with open(csv_path) as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def load_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)  # results.csv keeps 5 significant digits


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_cli):
    from yolo_ray.data.synthetic import make_dataset

    root = tmp_path_factory.mktemp("tracked")
    data = make_dataset(root / "data", seed=3, n_train=8, n_val=4, size=64)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.setenv("WANDB_MODE", "offline")
    mp.chdir(root)
    cli = train_cli
    trackers = ["mlflow", "wandb"] if importlib.util.find_spec("wandb") else ["mlflow"]
    try:
        assert (
            cli.main(
                [
                    *TINY_RUN,
                    "--data",
                    str(data),
                    "--epochs",
                    "2",
                    "--project",
                    str(root / "runs"),
                    "--trackers",
                    *trackers,
                ]
            )
            == 0
        )
    finally:
        mp.undo()
    return root, root / "runs" / "exp"


def test_tensorboard_scalars_equal_results_csv_under_upstreams_tags(trained):
    _, run = trained
    rows = read_results(run / "results.csv")
    events = load_events(run)
    tags = set(events.Tags()["scalars"])
    expected_tags = set(rows[0]) - {"epoch"}
    assert tags == expected_tags  # train/box_loss ... metrics/mAP_0.5:0.95 ... x/lr2, as upstream
    for tag in expected_tags:
        points = events.Scalars(tag)
        assert [p.step for p in points] == [int(r["epoch"]) for r in rows]
        assert all(same(p.value, r[tag]) for p, r in zip(points, rows)), tag
    pictures = [f.stem for f in run.glob("*.png") if f.stem != "labels"] + [f.stem for f in run.glob("train_batch*")]
    assert {"results", "train_batch0", "confusion_matrix"} <= set(pictures)
    assert set(events.Tags()["images"]) == set(pictures)
    assert events.Images("results")[-1].encoded_image_string == (run / "results.png").read_bytes()


def test_mlflow_run_holds_the_hyps_and_every_epochs_metrics(trained):
    from mlflow import MlflowClient

    root, run = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(str(run.parent))
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_name for r in runs] == ["exp"] and runs[0].info.status == "FINISHED"
    params = runs[0].data.params
    assert float(params["lr0"]) == 0.01 and params["epochs"] == "2" and params["imgsz"] == "64"
    rows = read_results(run / "results.csv")
    for key in ("metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "train/box_loss", "x/lr0"):
        history = client.get_metric_history(runs[0].info.run_id, key)
        assert [m.step for m in history] == [0, 1]
        assert all(same(m.value, r[key]) for m, r in zip(history, rows)), key


@needs_wandb
def test_wandb_offline_run_folder_is_in_the_run_directory(trained):
    _, run = trained
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("run-*.wandb"))


def report_fitness_of(config: dict, train_config: dict) -> None:
    from ray import tune

    from yolo_ray.evolution import EVOLVE_RESULT_KEYS
    from yolo_ray.evolution.searcher import COMPLETE_KEY

    hyp = config["hyp"]
    f = 1.0 / (1.0 + abs(hyp["lr0"] - 0.02) * 10 + abs(hyp["momentum"] - 0.9))
    tune.report({**dict(zip(EVOLVE_RESULT_KEYS, [f, f, f, f, 0.1, 0.1, 0.1])), "fitness": f, COMPLETE_KEY: True})


@pytest.mark.timeout(300)
def test_evolution_is_one_tensorboard_view_and_one_mlflow_experiment_with_a_run_per_trial(
    ray_cluster, tmp_path, stub_data, monkeypatch
):
    import sys

    from ray import cloudpickle
    from mlflow import MlflowClient

    from yolo_ray.evolution.driver import run_evolution

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    summary = run_evolution(
        {
            "generations": 2,
            "project": str(tmp_path / "runs"),
            "data": str(stub_data),
            "seed": 0,
            "concurrency": 1,
            "trackers": ["mlflow"],
        },
        trainable=report_fitness_of,
    )
    assert summary.status == "finished"
    history = read_history(summary.save_dir / "evolve.csv")
    trial_dirs = sorted(summary.save_dir.glob("tune-*/trial_*"))
    assert len(trial_dirs) == 2
    fitness_in_tensorboard = []
    for trial in trial_dirs:
        events = load_events(trial)
        assert "ray/tune/fitness" in events.Tags()["scalars"]
        hparams = events.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in hparams
        fitness_in_tensorboard.append(events.Scalars("ray/tune/fitness")[-1].value)
    assert sorted(fitness_in_tensorboard) == pytest.approx(sorted(history["metrics/mAP_0.5"]), rel=1e-4)

    client = MlflowClient(tracking_uri=uri)
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    assert [e.name for e in experiments] == [str(summary.save_dir)]  # one experiment for the evolution
    runs = client.search_runs([experiments[0].experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    fitness = sorted(history["metrics/mAP_0.5"])
    assert sorted(float(r.data.params["hyp/lr0"]) for r in runs) == pytest.approx(sorted(history["lr0"]), rel=1e-4)
    assert sorted(r.data.metrics["fitness"] for r in runs) == pytest.approx(fitness, rel=1e-4)


def test_no_tensorboard_leaves_tunes_tensorboard_logger_out(monkeypatch, tmp_path):
    import os

    from ray.tune.logger import CSVLoggerCallback, TBXLoggerCallback

    from yolo_ray.evolution.trackers import tune_callbacks

    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    kinds = [type(c) for c in tune_callbacks({"save_dir": str(tmp_path), "tensorboard": False})]
    assert CSVLoggerCallback in kinds and TBXLoggerCallback not in kinds
    assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1"  # or Tune would add TensorBoard back itself
    assert TBXLoggerCallback in [type(c) for c in tune_callbacks({"save_dir": str(tmp_path)})]
