"""The Tune function trainable of one evolution trial: train one proposed hyp, report to Tune.

One Train worker per trial: the loop runs right here in the trial process (its reports go to Tune
directly). Several: the trial builds and fits a TorchTrainer (Train V2 cannot be wrapped by a Tuner)
whose workers' reports reach Tune through TuneReportCallback; the trial itself then holds only a
sliver of a CPU, since a whole one would starve its own workers on a small node.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from yolo_ray.evolution.searcher import COMPLETE_KEY, ERROR_KEY
from yolo_ray.cluster.launch import deterministic_error, make_torch_trainer
from yolo_ray.cluster.placement import TRIAL_CPU_SLIVER, Placement


def trial_resources(placement: Placement) -> dict[str, float]:
    """What Tune reserves for the trial process itself (Train workers reserve their own share)."""
    if placement.workers > 1:
        return {"cpu": TRIAL_CPU_SLIVER}
    return {"cpu": placement.cpus_per_worker, "gpu": placement.gpus_per_worker}


def placement_config(placement: Placement) -> dict[str, Any]:
    """The train-config entries that carry a trial's placement to the trial process."""
    return {"placement": asdict(placement), "gpu_memory_fraction": placement.gpu_memory_fraction}


def evolve_trial(config: dict[str, Any], train_config: dict[str, Any]) -> None:
    """Train config["hyp"] with train_config (a TRAIN CONFIG plus "placement") in evolve mode.

    The loop reports every validated epoch to Tune (what early stopping sees); once training has run
    to the end, the trial reports the final results again marked COMPLETE_KEY, which is what makes
    the searcher write a row. A NaN/inf loss is not raised: the trial ends normally with its
    non-finite results and the searcher counts it failed, because FailureConfig would otherwise
    retrain the same doomed hyp max_failures times. An error a retry would only repeat (bad input, CUDA
    out of memory at this batch size) is reported the same way, with its one line, rather than raised.
    """
    # imported here, in the trial process: the driver, which only names this function, needs no torch
    from yolo_ray.training.loop import train_loop_per_worker

    context = tune.get_context()
    train = {k: v for k, v in train_config.items() if k != "placement"}
    train.update(hyp=dict(config["hyp"]), evolve=True, save_dir=context.get_trial_dir())
    placement = Placement(**train_config["placement"])
    try:
        if placement.workers == 1:
            results = train_loop_per_worker(train)  # the loop fetches shared decoded images itself
        else:
            trainer = make_torch_trainer(
                train_loop_per_worker,
                train,
                placement,
                callbacks=(TuneReportCallback(),),
                name=context.get_trial_name(),
            )
            results = trainer.fit().return_value  # Train V2 hands back rank 0's return value
    except Exception as e:  # Tune would retry it --max-retries times: only what a retry can fix is raised
        final = deterministic_error(e)
        if final is None:
            raise
        tune.report({ERROR_KEY: str(final), COMPLETE_KEY: True})
        return
    tune.report({**(results or {}), COMPLETE_KEY: True})
