"""The Tune function trainable of one evolution trial: train one proposed hyp, report to Tune.

One Train worker per trial: the loop runs right here in the trial process (its reports go to Tune
directly). Several: the trial builds and fits a TorchTrainer (Train V2 cannot be wrapped by a Tuner)
whose workers' reports reach Tune through TuneReportCallback; the trial itself then holds only a
sliver of a CPU, since a whole one would starve its own workers on a small node.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from yolo_ray.evolve.searcher import COMPLETE_KEY
from yolo_ray.train.launch import make_torch_trainer
from yolo_ray.train.loop import train_loop_per_worker

# Options that place a trial on the cluster; the training loop never sees them.
PLACEMENT_KEYS = ("ray_workers", "cpus_per_worker", "gpus_per_worker")
TRIAL_CPU_SLIVER = 0.01


def trial_resources(cpus_per_trial: float, gpus_per_trial: float, ray_workers: int) -> dict[str, float]:
    """What Tune reserves for the trial process itself (Train workers reserve their own share)."""
    if ray_workers > 1:
        return {"cpu": TRIAL_CPU_SLIVER}
    return {"cpu": float(cpus_per_trial), "gpu": float(gpus_per_trial)}


def placement(cpus_per_trial: float, gpus_per_trial: float, ray_workers: int) -> dict[str, float | int]:
    """The PLACEMENT_KEYS entries of a trial's train config: the trial's resources split over its workers.

    With several workers the trial process's sliver comes out of cpus_per_trial, so a trial never
    needs more than it asked for (on a node with exactly that many CPUs its workers would wait forever).
    """
    cpus = float(cpus_per_trial) - (TRIAL_CPU_SLIVER if ray_workers > 1 else 0.0)
    return {
        "ray_workers": int(ray_workers),
        "cpus_per_worker": cpus / ray_workers,
        "gpus_per_worker": float(gpus_per_trial) / ray_workers,
    }


def evolve_trial(config: dict[str, Any], train_config: dict[str, Any]) -> None:
    """Train config["hyp"] with train_config (a TRAIN CONFIG plus PLACEMENT_KEYS) in evolve mode.

    The loop reports every validated epoch to Tune (what early stopping sees); once training has run
    to the end, the trial reports the final results again marked COMPLETE_KEY, which is what makes
    the searcher write a row. A NaN/inf loss is not raised: the trial ends normally with its
    non-finite results and the searcher counts it failed, because FailureConfig would otherwise
    retrain the same doomed hyp max_failures times.
    """
    train = {k: v for k, v in train_config.items() if k not in PLACEMENT_KEYS}
    train.update(hyp=dict(config["hyp"]), evolve=True, save_dir=tune.get_context().get_trial_dir())
    workers = int(train_config.get("ray_workers", 1))
    if workers == 1:
        results = train_loop_per_worker(train)  # the loop fetches shared decoded images itself
    else:
        trainer = make_torch_trainer(train, workers, train_config["cpus_per_worker"],
                                     train_config["gpus_per_worker"], callbacks=(TuneReportCallback(),))
        results = trainer.fit().return_value  # Train V2 hands back rank 0's return value
    tune.report({**(results or {}), COMPLETE_KEY: True})
