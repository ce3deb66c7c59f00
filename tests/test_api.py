"""yolo_ray.train() / yolo_ray.evolve(): the commands' options as keywords (or a config object), their
results as objects, and a bad value as the UserError whose line the command prints."""

from __future__ import annotations

import csv
import dataclasses

import pytest

import yolo_ray
from yolo_ray.commands import evolve as evolve_command
from yolo_ray.commands import train as train_command

TINY = dict(cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, noautoanchor=True, device="cpu")


def last_csv_row(path) -> dict[str, float]:
    with open(path) as f:
        rows = [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return rows[-1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_returns_the_runs_folder_metrics_and_best_weights(tmp_path, one_thread):
    from yolo_ray.data.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", seed=3, n_train=8, n_val=4, size=64)
    run = yolo_ray.train(data=str(data), epochs=1, project=str(tmp_path / "runs"), **TINY)

    assert run.save_dir == tmp_path / "runs" / "exp" and run.best == run.save_dir / "weights" / "best.pt"
    assert run.best.is_file()
    row = last_csv_row(run.save_dir / "results.csv")
    # the final metrics are best.pt's, validated again at the end: epoch 0's EMA weights, the last row's
    for key in ("metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95"):
        assert run.metrics[key] == pytest.approx(row[key], abs=1e-4), key
    assert run.metrics["epoch"] == 0 and "fitness" in run.metrics

    # the same run from a config object, options overriding it
    config = yolo_ray.TrainConfig(data=str(data), epochs=1, project=str(tmp_path / "runs"), **TINY)
    again = yolo_ray.train(config, name="again")
    assert again.save_dir == tmp_path / "runs" / "again" and again.best.is_file()


@pytest.mark.parametrize(
    "options, argv",
    [
        (dict(epochs=0), ["--epochs", "0"]),
        (dict(imgsz=-1), ["--imgsz", "-1"]),
        (dict(label_smoothing=1.5), ["--label-smoothing", "1.5"]),
        (dict(batch_size=6, ray_workers=4), ["--batch-size", "6", "--ray-workers", "4"]),
    ],
)
def test_a_bad_value_is_the_commands_error_and_creates_nothing(tmp_path, capsys, options, argv):
    project = tmp_path / "runs"
    with pytest.raises(yolo_ray.UserError) as raised:
        yolo_ray.train(cfg="yolov5n.yaml", project=str(project), **options)
    assert train_command.main(["--cfg", "yolov5n.yaml", "--project", str(project), *argv]) == 2
    assert capsys.readouterr().err == f"error: {raised.value}\n"
    assert not project.exists()


def test_unknown_options_and_wrong_types_are_user_errors(tmp_path):
    with pytest.raises(yolo_ray.UserError, match="unknown option bogus"):
        yolo_ray.train(bogus=1, project=str(tmp_path / "runs"))
    with pytest.raises(yolo_ray.UserError, match="--epochs: expected an integer, got 'many'"):
        yolo_ray.TrainConfig(epochs="many")
    with pytest.raises(yolo_ray.UserError, match="invalid choice: 'Lion'"):
        yolo_ray.TrainConfig(optimizer="Lion")
    assert yolo_ray.TrainConfig(epochs="3").epochs == 3  # a string that is a number, as argparse reads it
    assert not (tmp_path / "runs").exists()


def test_evolve_bad_values_raise_before_anything_exists(tmp_path, capsys):
    project = tmp_path / "runs"
    with pytest.raises(yolo_ray.UserError) as raised:
        yolo_ray.evolve(generations=0, project=str(project))
    assert evolve_command.main(["--generations", "0", "--project", str(project)]) == 2
    assert capsys.readouterr().err == f"error: {raised.value}\n"
    with pytest.raises(yolo_ray.UserError, match="unknown option"):
        yolo_ray.evolve(generation=2, project=str(project))
    assert not project.exists()


def test_configs_hold_one_default_per_option_and_round_trip_through_opt_yaml():
    train = yolo_ray.TrainConfig()
    assert (train.epochs, train.batch_size, train.imgsz, train.hyp, train.patience) == (
        100,
        16,
        640,
        "hyp.scratch-low.yaml",
        100,
    )  # upstream train.py's defaults
    assert yolo_ray.TrainConfig.from_options({**train.to_dict(), "an_old_key": 1}) == train
    evolve = yolo_ray.EvolveConfig(train=dataclasses.replace(train, epochs=3), generations=8)
    flat = evolve.to_dict()
    assert flat["epochs"] == 3 and flat["generations"] == 8 and "project" in flat
    assert yolo_ray.EvolveConfig.from_options(flat) == evolve
    assert "patience_rows" not in evolve.saved_options()  # taken from each command, even when resuming


def test_evolves_old_patience_spelling_works_and_says_it_is_old(capsys):
    config = yolo_ray.EvolveConfig.from_options({"patience": 5})
    assert config.patience_rows == 5
    assert "--patience-rows" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_evolve_returns_the_folder_and_its_best_row_and_hyps(ray_cluster, tmp_path, tiny_data, one_thread):
    from yolo_ray.evolution import best_row, read_history

    evo = yolo_ray.evolve(
        generations=2,
        epochs=1,
        data=str(tiny_data),
        concurrency=1,
        seed=0,
        project=str(tmp_path / "runs"),
        **{k: v for k, v in TINY.items() if k != "device"},
    )
    assert evo.status == "finished" and evo.rows == 2 and evo.save_dir == tmp_path / "runs" / "exp"
    best = best_row(read_history(evo.save_dir / "evolve.csv"))
    assert evo.best_row == best.results and evo.best_hyp == best.hyp
    assert set(evo.best_hyp) >= {"lr0", "mosaic"} and evo.best_row["metrics/mAP_0.5:0.95"] >= 0
