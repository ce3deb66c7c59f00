"""An evolution's options before it starts: defaults (options.EvolveConfig), a resumed run's saved ones
restored, everything validated and every path absolute; and the run folder a --resume continues.

Tune runs each trial in its own working directory, so every path leaves here absolute. A new run has
no save_dir yet: the driver claims it once the cluster has been checked too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from yolo_ray.cluster.launch import check_worker_split
from yolo_ray.cluster.placement import check_device_spelling
from yolo_ray.cluster.storage import check_storage, is_uri
from yolo_ray.config import UserError, load_yaml, save_yaml
from yolo_ray.console import LOGGER
from yolo_ray.evolution.evolve_csv import count_rows
from yolo_ray.evolution.space import resolve_search_space
from yolo_ray.evolution.stored import fetch_stored_evolution, storage_option
from yolo_ray.evolution.strategies import check_strategy_options
from yolo_ray.options import DEFAULT_GENERATIONS, EvolveConfig
from yolo_ray.paths import check_project, check_writable_folder, is_writable_dir, resolve_project
from yolo_ray.training.inputs import resolve_inputs


# Not an option, yet taken from the current command: where this invocation keeps a stored run.
RUNTIME_EXTRAS = ("storage_uri",)


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
            raise UserError(
                f"{path}: --resume folder is not an evolution (no evolve.csv); start a new one without --resume"
            )
        return path
    project = resolve_project(project)
    runs = [p for p in project.glob("*") if count_rows(p / "evolve.csv") > 0]
    if not runs:
        raise UserError(f"{project}: no evolution to resume (no run folder whose evolve.csv holds a row)")
    return max(runs, key=lambda p: (p / "evolve.csv").stat().st_mtime)


def resolve_options(opt: dict[str, Any] | EvolveConfig) -> dict[str, Any]:
    """Defaults filled, a resumed run's saved options restored, everything validated, paths absolute:
    one flat dict of EvolveConfig's options (its TrainConfig's training options among them), cwd, save_dir
    and storage_uri."""
    opt = _given_options(opt)
    save_dir = None
    if is_uri(opt["resume"]):  # a stored evolution: continued from this machine's copy, uploaded as it goes
        opt["storage_uri"] = str(opt["resume"]).rstrip("/")
        check_storage(opt["storage_uri"], "--resume")
        opt["resume"] = str(fetch_stored_evolution(opt["storage_uri"]))
    if opt["resume"]:
        save_dir = find_resume_dir(opt["resume"], opt["project"])
        if not is_writable_dir(save_dir):
            raise UserError(f"{save_dir}: --resume folder is not writable")
        opt = _restore_saved_options(opt, _read_saved_options(save_dir))
    opt["generations"] = DEFAULT_GENERATIONS if opt["generations"] is None else int(opt["generations"])
    check_worker_split(opt["batch_size"], int(opt["ray_workers"]), opt["image_weights"])
    _check_trial_device(opt["device"], opt["address"])
    check_strategy_options(opt)
    opt["search_space"] = str(resolve_search_space(opt["search_space"]))
    resolve_inputs(opt, note_prefix="evolve: ")
    if opt["tune_storage"]:
        tune_storage = Path(opt["tune_storage"]).expanduser().resolve()
        opt["tune_storage"] = str(check_writable_folder(tune_storage, f"--tune-storage {tune_storage}"))
    if is_uri(opt["storage_path"]) and save_dir is None:
        check_storage(opt["storage_path"])
    if opt["max_failed_trials"] is None:
        opt["max_failed_trials"] = max(10, opt["generations"] // 10)
    if save_dir is None:
        check_project(opt["project"], opt["name"])
    opt["save_dir"] = str(save_dir) if save_dir else None
    return opt


def _given_options(opt: dict[str, Any] | EvolveConfig) -> dict[str, Any]:
    """The options as given (a config, or a mapping checked by making one), with the storage options settled."""
    extras = {k: None if isinstance(opt, EvolveConfig) else opt.get(k) for k in ("cwd", *RUNTIME_EXTRAS)}
    config = opt if isinstance(opt, EvolveConfig) else EvolveConfig.from_options(opt)
    given = {**config.to_dict(), **extras}
    given["storage_path"] = storage_option(given["storage_path"], given["bucket"])
    if given["storage_path"] and not is_uri(given["storage_path"]):
        LOGGER.warning(
            "WARNING: evolve's --storage-path with a folder is now --tune-storage (Ray Tune's state); "
            "--storage-path takes a storage URI, as train.py's. The old spelling still works"
        )
        given["tune_storage"], given["storage_path"] = given["storage_path"], None
    return given


def _restore_saved_options(opt: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """A resumed run keeps its own options (opt.yaml), all but this command's runtime ones; --generations
    given now raises (or lowers) its target."""
    runtime = {k: opt[k] for k in _runtime_keys()}
    # --project (and --name) find the run a bare --resume continues: used, not ignored
    _warn_ignored_on_resume(opt, saved, set(runtime) | {"generations", "project", "name"})
    generations = saved.get("generations") if opt["generations"] is None else opt["generations"]
    restored = {**opt, **saved, **runtime, "generations": generations}
    return {**restored, **EvolveConfig.from_options(restored).to_dict()}  # an older opt.yaml: newer defaults fill in


def _warn_ignored_on_resume(given: dict[str, Any], saved: dict[str, Any], taken_now: set[str]) -> None:
    """One warning naming every option given with --resume that the run's own opt.yaml overrides."""
    defaults = EvolveConfig().to_dict()
    ignored = [
        f"--{key.replace('_', '-')} {value} (the run's: {saved[key]})"
        for key, value in given.items()
        if key in saved
        and key in defaults
        and key not in taken_now
        and value != defaults[key]
        and not _same_value(value, saved[key])
    ]
    if ignored:
        LOGGER.warning(
            f"WARNING: --resume continues with the run's own options (its opt.yaml); ignored: {', '.join(ignored)}"
        )


def _same_value(given: Any, saved: Any) -> bool:
    """Equal, or two spellings of one path (relative given now, absolute in opt.yaml)."""
    if given == saved:
        return True
    if isinstance(given, str) and isinstance(saved, str):
        return Path(given).expanduser().resolve() == Path(saved).expanduser().resolve()
    return False


def _runtime_keys() -> tuple[str, ...]:
    fields = dataclasses.fields(EvolveConfig)
    return (*(f.name for f in fields if f.metadata.get("runtime")), *RUNTIME_EXTRAS)


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


def write_saved_options(save_dir: Path, opt: dict[str, Any]) -> None:
    """opt.yaml: what a resumed run takes over (every option but the runtime ones, resolved)."""
    runtime = _runtime_keys()
    plain = {k: v for k, v in opt.items() if k not in runtime}
    save_yaml(save_dir / "opt.yaml", plain)


def _check_trial_device(device: str, address: str | None) -> None:
    """--device for trials: on a new local cluster (no address) they run on this machine, so the GPUs it
    names must exist; on a cluster joined by address only the spelling can be checked here."""
    if check_device_spelling(device) in ("", "cpu") or address:
        return
    from yolo_ray.cluster.session import select_device  # torch, only when a local GPU is named

    select_device(device)
