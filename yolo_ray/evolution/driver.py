"""The evolution driver: options and run directory, then a Ray Tune run of EvolveSearcher's proposals.

The run directory's evolve.csv is the state: a resumed run (after Ctrl-C, SIGTERM or kill -9) starts
a fresh Tune experiment whose searcher reads the rows already there and proposes until the file
holds `generations` rows. Trials in flight when the driver died were not rows, so nothing is lost and
nothing is counted twice; an evolve.csv written by upstream YOLOv5 is continued the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from yolo_ray.cluster.launch import check_worker_split
from yolo_ray.cluster.nodes import cluster_nodes, connect, files_every_node_needs, verify_nodes_see, wait_for_resources
from yolo_ray.cluster.placement import Placement, plan_placement
from yolo_ray.cluster.storage import is_uri
from yolo_ray.console import EVOLVE_LOG, FILE_ONLY, LOGGER, log_file, shell_command
from yolo_ray.data.synthetic import default_data_yaml
from yolo_ray.evolution.dashboard import EvolveMetrics
from yolo_ray.evolution.evolve_csv import remove_lock
from yolo_ray.evolution.progress import EvolveProgress, TrialEvents, unranked_warning
from yolo_ray.evolution.run_options import resolve_options, write_saved_options
from yolo_ray.evolution.scheduling import trial_scheduler
from yolo_ray.evolution.searcher import EvolveSearcher
from yolo_ray.evolution.space import SearchSpace
from yolo_ray.evolution.stopping import parse_duration
from yolo_ray.evolution.stored import claim_stored_run, row_uploader
from yolo_ray.evolution.strategies import load_strategy_space
from yolo_ray.evolution.trackers import tune_callbacks
from yolo_ray.evolution.trial import evolve_trial, placement_config, trial_resources
from yolo_ray.options import TRAINING_KEYS, EvolveConfig
from yolo_ray.paths import create_run_dir, one_driver
from yolo_ray.training.inputs import default_model


@dataclass
class EvolveSummary:
    save_dir: Path
    rows: int
    generations: int
    failed: int
    stopped: int
    best_fitness: float
    status: str  # "finished", "stopped" (time budget, patience), "interrupted" or "failure cap"
    message: str
    ranked: bool = True  # False: every trial tied, or the starting hyps came out best (the message warns)

    @property
    def exit_code(self) -> int:
        return {"finished": 0, "stopped": 0, "interrupted": 130}.get(self.status, 1)


def run_evolution(opt: dict[str, Any] | EvolveConfig, trainable: Callable[..., None] | None = None) -> EvolveSummary:
    """Evolve hyperparameters as opt says: an EvolveConfig, or a mapping of its options (flat, as evolve.py's).

    trainable replaces the training trial for tests and benchmarks: a Tune function taking
    (config, train_config) whose last report holds the 7 results and searcher.COMPLETE_KEY.
    """
    opt = resolve_options(opt)
    space = load_strategy_space(opt["strategy"], opt["search_space"])
    with contextlib.ExitStack() as held:
        if opt["save_dir"]:  # a resume: refused now if another driver has the folder
            held.enter_context(one_driver(Path(opt["save_dir"]), "evolve.py"))
        # A resumed run's evolve.csv is checked before Ray starts (and prints its own lines)
        searcher = _make_searcher(opt, space) if opt["save_dir"] else None
        # Trials' training output would interleave unreadably here; it stays in the Ray logs.
        started_ray = connect(opt["address"], log_to_driver=False)
        in_main_thread = threading.current_thread() is threading.main_thread()  # signals can only be set there
        previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_sigint) if in_main_thread else None
        try:
            placement = _place_trials(opt, trainable)
            if searcher is None:
                opt["save_dir"] = str(_claim_run_dir(opt))
                held.enter_context(one_driver(Path(opt["save_dir"]), "evolve.py"))
                searcher = _make_searcher(opt, space)
            with log_file(Path(opt["save_dir"]) / EVOLVE_LOG):
                LOGGER.info(f"evolve: run directory {opt['save_dir']}")
                write_saved_options(Path(opt["save_dir"]), opt)  # after the searcher accepted the run's evolve.csv
                summary = _evolve(opt, searcher, placement, trainable)
                LOGGER.info(summary.message, extra=FILE_ONLY)  # evolve.py prints it (an error: on stderr)
                return summary
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous_sigterm)
            if started_ray:
                ray.shutdown()  # also frees this job's placement groups before the process goes


def _place_trials(opt: dict[str, Any], trainable: Callable[..., None] | None) -> Placement:
    """Where trials run, checked against the cluster: sizes, worker split, files every node reads, and
    (waited for, on an autoscaling cluster at zero GPU nodes) the first trial's resources."""
    nodes = cluster_nodes()
    placement = plan_placement(
        nodes,
        workers=int(opt["ray_workers"]),
        gpus=opt["gpus_per_trial"],
        cpus=opt["cpus_per_trial"],
        device=opt["device"],
        concurrency=opt["concurrency"],
        trial_process=True,
    )
    check_worker_split(opt["batch_size"], placement.workers, opt["image_weights"])  # --gpus-per-trial 2: 2 ranks
    if trainable is None:  # trials read data, weights and cfg on whichever node they land
        verify_nodes_see(None, files_every_node_needs({k: opt[k] for k in ("weights", "data", "cfg")}), placement)
    wait_for_resources(placement, nodes, float(opt["placement_timeout"]), "a trial")
    return placement


def _claim_run_dir(opt: dict[str, Any]) -> Path:
    """The new run's folder: project/name, or the staging folder of STORAGE/name for a storage URI."""
    if is_uri(opt["storage_path"]):
        opt["storage_uri"], local = claim_stored_run(opt["storage_path"], opt["name"], opt["exist_ok"])
        LOGGER.info(f"evolve: keeping the run at {opt['storage_uri']} (after every row)")
        return local
    return create_run_dir(opt["project"], opt["name"], opt["exist_ok"])


def _make_searcher(opt: dict[str, Any], space: SearchSpace) -> EvolveSearcher:
    """The run's searcher over its evolve.csv (read and checked here when the run is resumed)."""
    return EvolveSearcher(
        Path(opt["save_dir"]) / "evolve.csv",
        opt["hyp"],
        space,
        opt["generations"],
        strategy=opt["strategy"],
        parent=opt["parent"],
        population=opt["population"],
        seed=opt["seed"],
        noautoanchor=opt["noautoanchor"],
        max_failed_trials=opt["max_failed_trials"],
        time_budget_s=parse_duration(opt["time_budget"]) if opt["time_budget"] else None,
        patience=opt["patience_rows"],
    )


def train_command(opt: dict[str, Any], hyp_yaml: Path) -> str:
    """The scripts/train.py command that trains with the evolved hyps on the same setup, runnable as printed:
    shell-quoted, durable paths, and no --data/--weights where train.py's default (the same rule) gives them."""
    builtin = Path(opt["data"]) == default_data_yaml()
    parts: list[Any] = ["--hyp", hyp_yaml] + ([] if builtin else ["--data", Path(opt["data"])])
    if default_model(None if builtin else opt["data"], None, None)[:2] != (opt["cfg"], opt["weights"]):
        parts += ["--cfg", _shipped_or_path(opt["cfg"])] if opt["cfg"] else []
        parts += ["--weights", Path(opt["weights"])] if opt["weights"] else []
    parts += ["--imgsz", opt["imgsz"], "--batch-size", opt["batch_size"]]
    for flag in ("single_cls", "noautoanchor", "rect", "multi_scale", "cos_lr"):
        if opt[flag]:
            parts.append("--" + flag.replace("_", "-"))
    if opt["optimizer"] != "SGD":
        parts += ["--optimizer", opt["optimizer"]]
    return shell_command("train.py", *parts)


def _shipped_or_path(cfg: str) -> str | Path:
    return Path(cfg) if Path(cfg).is_absolute() else cfg


def _evolve(
    opt: dict[str, Any], searcher: EvolveSearcher, placement: Placement, trainable: Callable[..., None] | None
) -> EvolveSummary:
    progress = EvolveProgress(
        opt["save_dir"],
        opt["generations"],
        searcher.rows,
        detail=lambda: searcher.strategy.describe(),
        time_left=searcher.stop_rule.time_left,
        history=lambda: searcher.history,
    )
    uploader = row_uploader(opt["save_dir"], opt["storage_uri"])
    searcher.on_row = progress if uploader is None else _then(progress, uploader.upload)
    if uploader is not None:
        uploader.upload()
    if searcher.rows < opt["generations"]:
        progress.concurrency = placement.concurrency
        train_config = _train_config(opt, placement, real_training=trainable is None)
        detail = searcher.strategy.describe()
        LOGGER.info(
            f"evolve: {opt['strategy']} search, {searcher.rows}/{opt['generations']} generations in "
            f"evolve.csv{f' ({detail})' if detail else ''}; trials of {placement.describe()}"
        )
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's status tables
        trial = tune.with_parameters(trainable or evolve_trial, train_config=train_config)
        progress.start()
        try:
            _build_tuner(opt, searcher, trial, placement).fit()
        finally:
            progress.close()
    progress.refresh(plot=True)
    if uploader is not None:
        uploader.upload()
    remove_lock(Path(opt["save_dir"]) / "evolve.csv")
    return _summary(opt, searcher)


def _then(first: Callable[..., None], second: Callable[[], None]) -> Callable[..., None]:
    def both(*args: Any, **kwargs: Any) -> None:
        first(*args, **kwargs)
        second()

    return both


def _build_tuner(opt: dict[str, Any], searcher: EvolveSearcher, trial: Callable, placement: Placement) -> tune.Tuner:
    return tune.Tuner(
        tune.with_resources(trial, trial_resources(placement)),
        tune_config=tune.TuneConfig(
            # num_samples=-1: trials keep coming until the searcher says FINISHED
            search_alg=searcher,
            num_samples=-1,
            max_concurrent_trials=placement.concurrency,
            reuse_actors=True,
            scheduler=trial_scheduler(opt["early_stop"], opt["epochs"]),
            # the run's name leads, so trials (and the Train runs of DDP trials) of several evolutions on
            # one cluster stay apart in the dashboard; the id's suffix counts the trials of this invocation
            trial_name_creator=lambda trial: f"{Path(opt['save_dir']).name}_{_trial_name(trial)}",
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            # A fresh experiment per invocation: resuming restarts from evolve.csv, not Tune's state.
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=opt["storage_uri"] or opt["tune_storage"] or opt["save_dir"],
            failure_config=tune.FailureConfig(max_failures=int(opt["max_retries"])),
            callbacks=[TrialEvents(), EvolveMetrics(Path(opt["save_dir"]).name, searcher), *tune_callbacks(opt)],
            verbose=0,
        ),
    )


def _summary(opt: dict[str, Any], searcher: EvolveSearcher) -> EvolveSummary:
    save_dir = Path(opt["save_dir"])
    n, rows = opt["generations"], searcher.rows
    warning = ""
    if rows >= n or searcher.stop_reason:
        status = "finished" if rows >= n else "stopped"
        message = (
            f"Hyperparameter evolution finished {rows} generations"
            if rows >= n
            else f"evolution stopped at {rows}/{n} generations: {searcher.stop_reason}"
        )
        message += f" (best fitness {searcher.best_fitness:.5g})\nResults saved to {save_dir}\n"
        warning = unranked_warning(searcher.history, searcher.base_hyp)
        message += warning or f"Usage example: $ {train_command(opt, save_dir / 'hyp_evolve.yaml')}"
    elif searcher.failure_cap_reached:
        status = "failure cap"
        message = (
            f"evolution stopped at {rows}/{n} generations: {searcher.failed} trials failed "
            f"(--max-failed-trials {opt['max_failed_trials']}); last: {searcher.last_failure}"
        )
    else:
        status = "interrupted"
        message = (
            f"evolution interrupted at {rows}/{n} generations; continue with: "
            f"{shell_command('evolve.py', '--resume', opt['storage_uri'] or save_dir)}"
        )
    return EvolveSummary(
        save_dir, rows, n, searcher.failed, searcher.stopped, searcher.best_fitness, status, message, ranked=not warning
    )


def _train_config(opt: dict[str, Any], placement: Placement, real_training: bool) -> dict[str, Any]:
    config = {k: opt[k] for k in (*TRAINING_KEYS, "cwd")}
    config["seed"] = opt["seed"] or 0  # the training seed; the GA's own draws use opt["seed"] as given
    config.update(evolve=True, noval=True, nosave=True, noplots=True, report_every_epoch=bool(opt["early_stop"]))
    config.update(placement_config(placement))
    if real_training:
        from yolo_ray.evolution.shared_images import share_decoded_images

        if opt["share_images"]:
            config["decoded"] = share_decoded_images(config, config["imgsz"])  # on the stride grid already
    return config


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"  # the default name spells out all 29 hyps


def _sigterm_as_sigint(signum: int, frame: Any) -> None:
    # Tune stops gracefully on SIGINT (trials ended, state saved); a bare SIGTERM would leave
    # placement groups behind that hang the next run on the cluster.
    os.kill(os.getpid(), signal.SIGINT)
