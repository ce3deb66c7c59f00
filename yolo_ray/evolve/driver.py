"""The evolution driver: options and run directory, then a Ray Tune run of EvolveSearcher's proposals.

The run directory's evolve.csv is the state: a resumed run (after Ctrl-C, SIGTERM or kill -9) starts
a fresh Tune experiment whose searcher reads the rows already there and proposes until the file
holds `generations` rows. Trials in flight when the driver died were not rows, so nothing is lost and
nothing is counted twice; an evolve.csv written by upstream YOLOv5 is continued the same way.
"""

from __future__ import annotations

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

from yolo_ray.cli import check_range, check_training_numbers, default_model
from yolo_ray.config import UserError, load_hyp, load_yaml, save_yaml
from yolo_ray.console import EVOLVE_LOG, FILE_ONLY, LOGGER, log_file, shell_command
from yolo_ray.data.labels import is_writable_dir
from yolo_ray.data.synthetic import default_data_yaml
from yolo_ray.evolve.dashboard import EvolveMetrics
from yolo_ray.evolve.evolve_csv import count_rows, remove_lock
from yolo_ray.evolve.progress import EvolveProgress, TrialEvents, unranked_warning
from yolo_ray.evolve.searcher import EvolveSearcher
from yolo_ray.evolve.space import SearchSpace, resolve_search_space
from yolo_ray.evolve.stopping import parse_duration
from yolo_ray.evolve.stored import claim_stored_run, fetch_stored_evolution, row_uploader, storage_option
from yolo_ray.evolve.strategies import check_strategy_options, load_strategy_space
from yolo_ray.evolve.trackers import tune_callbacks
from yolo_ray.evolve.trial import evolve_trial, placement_config, trial_resources
from yolo_ray.official import weights_option
from yolo_ray.train.cluster import (
    cluster_nodes, connect, files_every_node_needs, verify_nodes_see, wait_for_resources,
)
from yolo_ray.train.launch import check_worker_split
from yolo_ray.train.model_setup import train_image_size
from yolo_ray.train.placement import Placement, plan_placement
from yolo_ray.train.rundir import check_project, create_run_dir, resolve_project
from yolo_ray.train.storage import is_uri
from yolo_ray.train.trackers import tracker_settings

DEFAULT_GENERATIONS = 300
# TRAIN CONFIG keys an evolution passes on to every trial (resume/nosave/noval/plots are evolve's own).
TRAIN_OPTION_KEYS = (
    "weights", "cfg", "data", "hyp", "epochs", "batch_size", "imgsz", "rect", "noautoanchor", "cache",
    "image_weights", "multi_scale", "single_cls", "sync_bn", "cos_lr", "device", "optimizer", "workers",
    "label_smoothing", "freeze", "seed", "amp", "channels_last", "deterministic", "cwd",
)
# Where and how this invocation runs: taken from the current command even when resuming.
RUNTIME_KEYS = (
    "address", "concurrency", "cpus_per_trial", "gpus_per_trial", "storage_path", "max_retries",
    "max_failed_trials", "resume", "exist_ok", "share_images", "time_budget", "patience", "bucket", "storage_uri",
    "placement_timeout",
)

DEFAULTS: dict[str, Any] = {
    "weights": None, "cfg": None, "data": None, "hyp": None, "epochs": 100, "batch_size": 16, "imgsz": 640,
    "rect": False, "noautoanchor": False, "cache": None, "image_weights": False, "multi_scale": False,
    "single_cls": False, "sync_bn": False, "cos_lr": False, "device": "", "optimizer": "SGD", "workers": 8,
    "label_smoothing": 0.0, "freeze": [0], "seed": None, "amp": True, "channels_last": True, "deterministic": False,
    "generations": None, "search_space": None, "parent": "single", "early_stop": False,
    "strategy": "classic", "population": 50, "time_budget": None, "patience": None,
    "ray_workers": 1, "concurrency": None, "cpus_per_trial": None, "gpus_per_trial": None, "address": None,
    "storage_path": None, "bucket": None, "storage_uri": None, "placement_timeout": 900.0, "max_retries": 2,
    "max_failed_trials": None,
    "resume": False,
    "project": "runs/evolve", "name": "exp", "exist_ok": False,
    "share_images": True,  # decode once in the driver for all trials (off: each trial decodes its own)
    "cwd": None,  # where a relative data `path:` may be relative to (trials run in their own folders)
    "tensorboard": True, "trackers": None,
}


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


def find_resume_dir(resume: str | bool, project: str | Path) -> Path:
    """The run directory to continue: the given one (an evolve.csv means its folder), or the newest
    folder under project whose evolve.csv holds at least one row.

    A given folder must be an evolution: it holds an evolve.csv, or the opt.yaml an evolution wrote.
    """
    if resume is not True:
        path = Path(resume).expanduser().resolve()
        if path.is_file():
            path = path.parent
        if not path.is_dir():
            raise UserError(f"{path}: --resume directory not found")
        if not _is_evolution(path):
            raise UserError(f"{path}: --resume folder is not an evolution (no evolve.csv); "
                            "start a new one without --resume")
        return path
    project = resolve_project(project)
    runs = [p for p in project.glob("*") if count_rows(p / "evolve.csv") > 0]
    if not runs:
        raise UserError(f"{project}: no evolution to resume (no run folder whose evolve.csv holds a row)")
    return max(runs, key=lambda p: (p / "evolve.csv").stat().st_mtime)


def resolve_options(opt: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled, a resumed run's saved options restored, everything validated, paths absolute.

    Tune runs each trial in its own working directory, so every path leaves here absolute. A new run
    has no save_dir yet: claim_run_dir makes it once the cluster has been checked too.
    """
    opt = {**DEFAULTS, **opt}
    opt["storage_path"] = storage_option(opt["storage_path"], opt["bucket"])
    save_dir = None
    if is_uri(opt["resume"]):  # a stored evolution: continued from this machine's copy, uploaded as it goes
        opt["storage_uri"] = str(opt["resume"]).rstrip("/")
        opt["resume"] = str(fetch_stored_evolution(opt["storage_uri"]))
    if opt["resume"]:
        save_dir = find_resume_dir(opt["resume"], opt["project"])
        if not is_writable_dir(save_dir):
            raise UserError(f"{save_dir}: --resume folder is not writable")
        saved = _read_saved_options(save_dir)
        runtime = {k: opt[k] for k in RUNTIME_KEYS}
        generations = saved.get("generations") if opt["generations"] is None else opt["generations"]
        opt = {**opt, **saved, **runtime, "generations": generations}
    opt["generations"] = DEFAULT_GENERATIONS if opt["generations"] is None else int(opt["generations"])
    _check_numbers(opt)
    check_strategy_options(opt)
    opt["hyp"] = load_hyp(opt["hyp"])
    opt["trackers"] = tracker_settings(opt["trackers"])
    opt["search_space"] = str(resolve_search_space(opt["search_space"]))
    opt["cfg"], opt["weights"], chosen = default_model(opt["data"], opt["cfg"], opt["weights"])
    if chosen:
        LOGGER.info(f"evolve: {chosen}")
    opt["weights"] = weights_option(opt["weights"])
    opt["cfg"] = _model_cfg(opt["cfg"])
    opt["imgsz"] = train_image_size(opt["cfg"], opt["weights"], opt["imgsz"])
    opt["cwd"] = opt["cwd"] or str(Path.cwd())
    opt["data"] = _data_yaml(opt["data"], opt["hyp"], opt["single_cls"], opt["cwd"])
    if opt["storage_path"] and "://" not in opt["storage_path"]:
        opt["storage_path"] = str(Path(opt["storage_path"]).expanduser().resolve())
    if opt["max_failed_trials"] is None:
        opt["max_failed_trials"] = max(10, opt["generations"] // 10)
    if save_dir is None:
        check_project(opt["project"], opt["name"])
    opt["save_dir"] = str(save_dir) if save_dir else None
    return opt


def run_evolution(opt: dict[str, Any], trainable: Callable[..., None] | None = None) -> EvolveSummary:
    """Evolve hyperparameters as opt says (DEFAULTS keys).

    trainable replaces the training trial for tests and benchmarks: a Tune function taking
    (config, train_config) whose last report holds the 7 results and searcher.COMPLETE_KEY.
    """
    opt = resolve_options(opt)
    space = load_strategy_space(opt["strategy"], opt["search_space"])
    # A resumed run's evolve.csv is checked before Ray starts (and prints its own lines)
    searcher = _make_searcher(opt, space) if opt["save_dir"] else None
    # Trials' training output would interleave unreadably here; it stays in the Ray logs.
    started_ray = connect(opt["address"], log_to_driver=False)
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals can only be set there
    previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_sigint) if in_main_thread else None
    try:
        nodes = cluster_nodes()
        placement = plan_placement(nodes, workers=int(opt["ray_workers"]), gpus=opt["gpus_per_trial"],
                                   cpus=opt["cpus_per_trial"], device=opt["device"], concurrency=opt["concurrency"],
                                   trial_process=True)
        check_worker_split(opt["batch_size"], placement.workers, opt["image_weights"])  # --gpus-per-trial 2: 2 ranks
        if trainable is None:  # trials read data, weights and cfg on whichever node they land
            verify_nodes_see(None, files_every_node_needs({k: opt[k] for k in ("weights", "data", "cfg")}), placement)
        # the first trial's resources: an autoscaling cluster may be at zero GPU nodes
        wait_for_resources(placement, nodes, float(opt["placement_timeout"]), "a trial")
        if searcher is None:
            opt["save_dir"] = str(_claim_run_dir(opt))
            searcher = _make_searcher(opt, space)
        with log_file(Path(opt["save_dir"]) / EVOLVE_LOG):
            LOGGER.info(f"evolve: run directory {opt['save_dir']}")
            _write_saved_options(Path(opt["save_dir"]), opt)  # after the searcher accepted the run's evolve.csv
            summary = _evolve(opt, searcher, placement, trainable)
            LOGGER.info(summary.message, extra=FILE_ONLY)  # evolve.py prints it (an error: on stderr)
            return summary
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if started_ray:
            ray.shutdown()  # also frees this job's placement groups before the process goes


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
        Path(opt["save_dir"]) / "evolve.csv", opt["hyp"], space, opt["generations"], strategy=opt["strategy"],
        parent=opt["parent"], population=opt["population"], seed=opt["seed"], noautoanchor=opt["noautoanchor"],
        max_failed_trials=opt["max_failed_trials"],
        time_budget_s=parse_duration(opt["time_budget"]) if opt["time_budget"] else None, patience=opt["patience"],
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


def _evolve(opt: dict[str, Any], searcher: EvolveSearcher, placement: Placement,
            trainable: Callable[..., None] | None) -> EvolveSummary:
    progress = EvolveProgress(opt["save_dir"], opt["generations"], searcher.rows,
                              detail=lambda: searcher.strategy.describe(), time_left=searcher.stop_rule.time_left,
                              history=lambda: searcher.history)
    uploader = row_uploader(opt["save_dir"], opt["storage_uri"])
    searcher.on_row = progress if uploader is None else _then(progress, uploader.upload)
    if uploader is not None:
        uploader.upload()
    if searcher.rows < opt["generations"]:
        progress.concurrency = placement.concurrency
        train_config = _train_config(opt, placement, real_training=trainable is None)
        detail = searcher.strategy.describe()
        LOGGER.info(f"evolve: {opt['strategy']} search, {searcher.rows}/{opt['generations']} generations in "
                    f"evolve.csv{f' ({detail})' if detail else ''}; trials of {placement.describe()}")
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
            search_alg=searcher, num_samples=-1, max_concurrent_trials=placement.concurrency, reuse_actors=True,
            scheduler=_early_stopper(opt["epochs"]) if opt["early_stop"] else None,
            # the run's name leads, so trials (and the Train runs of DDP trials) of several evolutions on
            # one cluster stay apart in the dashboard; the id's suffix counts the trials of this invocation
            trial_name_creator=lambda trial: f"{Path(opt['save_dir']).name}_{_trial_name(trial)}",
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            # A fresh experiment per invocation: resuming restarts from evolve.csv, not Tune's state.
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=opt["storage_uri"] or opt["storage_path"] or opt["save_dir"],
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
        message = (f"Hyperparameter evolution finished {rows} generations" if rows >= n else
                   f"evolution stopped at {rows}/{n} generations: {searcher.stop_reason}")
        message += f" (best fitness {searcher.best_fitness:.5g})\nResults saved to {save_dir}\n"
        warning = unranked_warning(searcher.history, searcher.base_hyp)
        message += warning or f"Usage example: $ {train_command(opt, save_dir / 'hyp_evolve.yaml')}"
    elif searcher.failure_cap_reached:
        status = "failure cap"
        message = (f"evolution stopped at {rows}/{n} generations: {searcher.failed} trials failed "
                   f"(--max-failed-trials {opt['max_failed_trials']}); last: {searcher.last_failure}")
    else:
        status = "interrupted"
        message = (f"evolution interrupted at {rows}/{n} generations; continue with: "
                   f"{shell_command('evolve.py', '--resume', opt['storage_uri'] or save_dir)}")
    return EvolveSummary(save_dir, rows, n, searcher.failed, searcher.stopped, searcher.best_fitness, status, message,
                         ranked=not warning)


def _train_config(opt: dict[str, Any], placement: Placement, real_training: bool) -> dict[str, Any]:
    config = {k: opt[k] for k in TRAIN_OPTION_KEYS}
    config["seed"] = opt["seed"] or 0  # the training seed; the GA's own draws use opt["seed"] as given
    config.update(evolve=True, noval=True, nosave=True, noplots=True, report_every_epoch=bool(opt["early_stop"]))
    config.update(placement_config(placement))
    if real_training:
        from yolo_ray.evolve.shared_images import share_decoded_images

        if opt["share_images"]:
            config["decoded"] = share_decoded_images(config, config["imgsz"])  # on the stride grid already
    return config


def _early_stopper(epochs: int) -> tune.schedulers.TrialScheduler:
    """ASHA on per-epoch fitness: trials in the bottom two thirds at a rung stop; a quarter of the epochs first.

    One report per epoch, then the completion report: max_t = epochs + 1, or ASHA would stop every
    trial at its last epoch, before the report that makes it a row.
    """
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", metric="fitness", mode="max", max_t=epochs + 1,
                         grace_period=max(1, epochs // 4), reduction_factor=3)


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"  # the default name spells out all 29 hyps


def _sigterm_as_sigint(signum: int, frame: Any) -> None:
    # Tune stops gracefully on SIGINT (trials ended, state saved); a bare SIGTERM would leave
    # placement groups behind that hang the next run on the cluster.
    os.kill(os.getpid(), signal.SIGINT)


def _check_numbers(opt: dict[str, Any]) -> None:
    check_training_numbers(opt)
    check_worker_split(opt["batch_size"], int(opt["ray_workers"]), opt["image_weights"])
    check_range("generations", opt["generations"], 1)
    if opt["cpus_per_trial"] is not None:
        check_range("cpus-per-trial", opt["cpus_per_trial"], 0, low_open=True)
    if opt["gpus_per_trial"] is not None:
        check_range("gpus-per-trial", opt["gpus_per_trial"], 0)
    if opt["concurrency"] is not None:
        check_range("concurrency", opt["concurrency"], 1)
    if opt["max_failed_trials"] is not None:
        check_range("max-failed-trials", opt["max_failed_trials"], 1)
    check_range("max-retries", opt["max_retries"], 0)
    check_range("placement-timeout", opt["placement_timeout"], 0, low_open=True)
    if opt["parent"] not in ("single", "weighted"):
        raise UserError(f"--parent must be single or weighted, got {opt['parent']!r}")


def _model_cfg(cfg: str | None) -> str | None:
    if not cfg:
        return None
    path = Path(cfg).expanduser()
    return str(path.resolve()) if path.is_file() else cfg  # otherwise a shipped name like yolov5s.yaml


def _data_yaml(data: str | None, hyp: dict[str, float], single_cls: bool, cwd: str) -> str:
    if not data:
        from yolo_ray.data.synthetic import default_data_yaml

        return str(default_data_yaml())  # generated and known to be good
    from yolo_ray.data import check_training_data, load_data_config
    from yolo_ray.data.fetch import data_option

    data = data_option(data)  # a shipped name (coco128.yaml) stays a name: each node finds its own copy
    check_training_data(load_data_config(data, cwd), hyp, single_cls)  # fail here, naming the file, not in every trial
    return data


def _is_evolution(path: Path) -> bool:
    """An evolve.csv (ours or upstream's), or the opt.yaml of an evolution that has no row yet."""
    if (path / "evolve.csv").is_file():
        return True
    opt_yaml = path / "opt.yaml"
    if not opt_yaml.is_file():
        return False
    return {"generations", "search_space"} <= set(load_yaml(opt_yaml))


def _read_saved_options(save_dir: Path) -> dict[str, Any]:
    """The options a run was started with (opt.yaml); none for a directory upstream YOLOv5 wrote."""
    path = save_dir / "opt.yaml"
    if not path.is_file():
        return {}
    return load_yaml(path)


def _write_saved_options(save_dir: Path, opt: dict[str, Any]) -> None:
    plain = {k: v for k, v in opt.items() if k not in RUNTIME_KEYS}
    save_yaml(save_dir / "opt.yaml", plain)
