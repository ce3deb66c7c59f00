"""The evolution driver under faults (killed trial, NaN trial, failure cap), the CLI's errors, and one real
end-to-end evolution through scripts/evolve.py. A driver killed then resumed: tests/test_strategy_runs.py."""

from __future__ import annotations

import math
import os
import signal
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_ray.evolution import EVOLVE_RESULT_KEYS, read_history
from yolo_ray.evolution.searcher import COMPLETE_KEY

REPO = Path(__file__).resolve().parents[1]
EVOLVE_CLI = REPO / "scripts" / "evolve.py"


def report_fitness_of(hyp: dict, loss: float = 0.1) -> None:
    from ray import tune

    f = 1.0 / (1.0 + abs(hyp["lr0"] - 0.02) * 10 + abs(hyp["momentum"] - 0.9))
    tune.report({**dict(zip(EVOLVE_RESULT_KEYS, [f, f, f, f, loss, loss, loss])), "fitness": f, COMPLETE_KEY: True})


def claim(path: Path) -> bool:
    """True for exactly one caller across all trial processes."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def faulty_trainable(marker_dir: Path):
    """The first trial kills its own process (Tune must retry it); the next one reports NaN losses."""

    def trainable(config: dict, train_config: dict) -> None:
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
        killed = marker_dir / "killed"
        if claim(killed):
            killed.write_text(trial_id)
            os.kill(os.getpid(), signal.SIGKILL)
        if killed.read_text() == trial_id:
            (marker_dir / "retried").write_text(trial_id)
        elif claim(marker_dir / "nan"):
            report_fitness_of(config["hyp"], loss=math.nan)
            return
        report_fitness_of(config["hyp"])

    return trainable


def failing_trainable(config: dict, train_config: dict) -> None:
    raise RuntimeError("this trial always fails")


def pickle_this_module_by_value() -> None:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_killed_trial_is_retried_and_nan_trial_replaced(ray_cluster, tmp_path, stub_data):
    from yolo_ray.evolution.driver import run_evolution

    pickle_this_module_by_value()
    markers = tmp_path / "markers"
    markers.mkdir()
    summary = run_evolution(
        {
            "generations": 5,
            "project": str(tmp_path / "runs"),
            "data": str(stub_data),
            "seed": 0,
            "concurrency": 2,
            "max_retries": 2,
        },
        trainable=faulty_trainable(markers),
    )
    assert summary.status == "finished"
    history = read_history(summary.save_dir / "evolve.csv")
    assert len(history) == 5
    assert history[list(EVOLVE_RESULT_KEYS)].notna().all().all()  # the NaN trial is not a row
    assert summary.failed == 1
    assert (markers / "retried").read_text() == (markers / "killed").read_text()  # same trial, run again


def scoreless_trainable(config: dict, train_config: dict) -> None:
    from ray import tune

    tune.report({**dict(zip(EVOLVE_RESULT_KEYS, [0, 0, 0, 0, 0.1, 0.1, 0.1])), "fitness": 0.0, COMPLETE_KEY: True})


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_an_evolution_whose_trials_all_score_0_warns_and_suggests_nothing(ray_cluster, tmp_path, stub_data, capsys):
    from yolo_ray.evolution.driver import run_evolution

    pickle_this_module_by_value()
    summary = run_evolution(
        {"generations": 3, "project": str(tmp_path / "runs"), "data": str(stub_data), "seed": 0, "concurrency": 2},
        trainable=scoreless_trainable,
    )
    assert summary.status == "finished" and summary.exit_code == 0 and not summary.ranked
    assert "WARNING: nothing was ranked: all 3 trials scored the same fitness (0)" in summary.message
    assert "Usage example" not in summary.message and "hyp_evolve.yaml" in summary.message
    assert sorted(p.name for p in summary.save_dir.glob("evolve.csv*")) == ["evolve.csv"]  # no lock left
    log = (summary.save_dir / "evolve.log").read_text()
    assert "evolve: 3/3 generations done" in log and "WARNING: nothing was ranked" in log
    assert "evolve: 3/3 generations done" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_failure_cap_ends_the_run_with_a_clear_message(ray_cluster, tmp_path, stub_data):
    from yolo_ray.evolution.driver import run_evolution

    pickle_this_module_by_value()
    summary = run_evolution(
        {
            "generations": 20,
            "project": str(tmp_path),
            "data": str(stub_data),
            "concurrency": 1,
            "max_retries": 0,
            "max_failed_trials": 2,
        },
        trainable=failing_trainable,
    )
    assert summary.status == "failure cap" and summary.exit_code == 1
    assert summary.rows == 0 and summary.failed == 2
    assert "2 trials failed (--max-failed-trials 2)" in summary.message


@pytest.mark.timeout(60)
def test_cli_usage_errors_are_one_line_and_exit_2(tmp_path, capsys):
    proc = subprocess.run(
        [sys.executable, str(EVOLVE_CLI), "--parent", "best"], capture_output=True, text=True, timeout=50
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "--parent" in proc.stderr

    sys.path.insert(0, str(EVOLVE_CLI.parent))
    try:
        import evolve as cli
    finally:
        sys.path.remove(str(EVOLVE_CLI.parent))
    for argv, expected in [
        (["--generations", "0"], "--generations 0"),
        (["--search-space", str(tmp_path / "nope.yaml")], "nope.yaml"),
        (["--resume", str(tmp_path / "missing")], "--resume directory not found"),
    ]:
        assert cli.main([*argv, "--project", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_cli_evolves_on_synthetic_data_end_to_end(ray_cluster, tmp_path):
    from yolo_ray.data import synthetic

    # The built-in dataset's cache, pre-filled with a 16-image version so the test stays short.
    home = tmp_path / "home"
    synthetic.make_dataset(home / "datasets" / synthetic.DATASET_VERSION, n_train=16, n_val=8, size=64)
    env = {**os.environ, "YOLO_RAY_HOME": str(home), "OMP_NUM_THREADS": "1"}
    address = ray_cluster.get_runtime_context().gcs_address
    cmd = [
        sys.executable,
        str(EVOLVE_CLI),
        "--imgsz",
        "64",
        "--epochs",
        "1",  # from the built-in weights
        "--generations",
        "2",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--address",
        address,
        "--project",
        str(tmp_path / "runs"),
        "--seed",
        "0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=230, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "exp"
    history = read_history(run / "evolve.csv")
    assert len(history) == 2
    assert history[list(EVOLVE_RESULT_KEYS)].notna().all().all()
    assert (run / "hyp_evolve.yaml").is_file() and (run / "evolve.log").is_file()
    assert not (run / "evolve.csv.lock").exists()
    console = proc.stdout + proc.stderr  # Ray's own lines stay out of it (they show with --verbose)
    assert not any(chatter in console for chatter in ("Token authentication", "Wrote the latest", "\x1b["))
    assert console.count("Results saved to") == 1
    usage = proc.stdout.strip().splitlines()[-1]
    assert usage.startswith("Usage example: $ ")
    train = shlex.split(usage.split("$ ", 1)[1])  # runnable as printed (one epoch here)
    assert train[2:] == ["--hyp", str(run / "hyp_evolve.yaml"), "--imgsz", "64", "--batch-size", "8"]
    done = subprocess.run(
        [*train, "--epochs", "1", "--workers", "0", "--noplots", "--project", str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=200,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
