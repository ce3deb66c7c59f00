"""Which waiting trial Tune starts next (yolo_ray/evolution/scheduling.py), and that short trials still
fill every slot of an evolution."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial

from yolo_ray.evolution import EVOLVE_RESULT_KEYS
from yolo_ray.evolution.scheduling import NewestFirstASHA, NewestFirstScheduler, trial_scheduler
from yolo_ray.evolution.searcher import COMPLETE_KEY


def controller_of(*statuses: str) -> SimpleNamespace:
    trials = [SimpleNamespace(name=f"t{i}", status=s) for i, s in enumerate(statuses)]
    return SimpleNamespace(get_trials=lambda: trials)


@pytest.mark.parametrize("scheduler", [NewestFirstScheduler(), trial_scheduler(True, 4)])
def test_the_newest_pending_trial_runs_first_then_the_newest_paused(scheduler):
    R, P, Z, T = Trial.RUNNING, Trial.PENDING, Trial.PAUSED, Trial.TERMINATED
    assert scheduler.choose_trial_to_run(controller_of(P, R, P, Z, T)).name == "t2"
    assert scheduler.choose_trial_to_run(controller_of(Z, R, Z, T)).name == "t2"
    assert scheduler.choose_trial_to_run(controller_of(R, T)) is None


def test_early_stopping_keeps_ashas_rungs():
    asha = trial_scheduler(True, 8)
    assert isinstance(asha, NewestFirstASHA)
    assert asha._max_t == 9 and asha._reduction_factor == 3  # one report past the epochs: the completion report
    assert (asha._metric, asha._mode, asha._time_attr) == ("fitness", "max", "training_iteration")
    assert type(trial_scheduler(False, 8)) is NewestFirstScheduler


def pid_recording_trainable(marker_dir: Path):
    """A trial of a fraction of a second, far shorter than a trial process's start, that notes its process."""

    def trainable(config: dict, train_config: dict) -> None:
        from ray import tune

        (marker_dir / f"{tune.get_context().get_trial_id()}.{os.getpid()}").touch()
        time.sleep(0.2)
        f = 1.0 / (1.0 + abs(config["hyp"]["lr0"] - 0.02) * 10)
        tune.report({**dict(zip(EVOLVE_RESULT_KEYS, [f, f, f, f, 0.1, 0.1, 0.1])), "fitness": f, COMPLETE_KEY: True})

    return trainable


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_short_trials_still_run_in_every_slot(ray_cluster, tmp_path, stub_data):
    """With Tune's oldest-first order, a finished trial's process went to a trial whose own process was
    still starting, which Tune then killed: trials shorter than a process start ran one at a time, in one
    process, however many slots the evolution had."""
    from ray import cloudpickle

    from yolo_ray.evolution.driver import run_evolution

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    markers = tmp_path / "markers"
    markers.mkdir()
    summary = run_evolution(
        {"generations": 24, "concurrency": 4, "seed": 0, "project": str(tmp_path / "runs"), "data": str(stub_data)},
        trainable=pid_recording_trainable(markers),
    )
    assert summary.status == "finished" and summary.rows == 24
    trial_pids = {}
    for marker in markers.iterdir():
        trial_id, pid = marker.name.split(".")
        trial_pids[trial_id] = pid
    assert len(trial_pids) == 24
    assert len(set(trial_pids.values())) == 4  # every slot ran trials, each in one reused process
