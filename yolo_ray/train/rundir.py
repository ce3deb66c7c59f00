"""Run directories: where a training run writes, how it is found again to resume it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


from yolo_ray.config import UserError, load_yaml, save_yaml
from yolo_ray.paths import increment_path  # noqa: F401  (run dirs are made through rundir too)

# Set by Ray's job supervisor in every job driver's environment.
RAY_JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def in_ray_job() -> bool:
    """True inside a `ray job submit` driver, whose working directory is a temporary copy."""
    return RAY_JOB_ENV_VAR in os.environ or "runtime_resources" in Path.cwd().parts


def durable_root() -> Path:
    """Where relative output paths land when the working directory is temporary.

    $YOLO_RAY_HOME when set, else ~/yolo_ray: both outlive a Ray job's working-dir copy.
    """
    home = os.environ.get("YOLO_RAY_HOME")
    return Path(home).expanduser().resolve() if home else Path.home() / "yolo_ray"


def resolve_project(project: str | Path) -> Path:
    """The absolute project dir: relative to the cwd, or to durable_root() inside a Ray job."""
    project = Path(project).expanduser()
    if project.is_absolute():
        return project
    base = durable_root() if in_ray_job() else Path.cwd()
    return (base / project).resolve()


def check_project(project: str | Path, name: str) -> Path:
    """The absolute project, once it is known able to hold project/name: one clear error otherwise.

    A project whose mode bits say read-only is refused even for root, who could write into it: a shared
    folder marked read-only is not ours to fill.
    """
    from yolo_ray.data.labels import is_writable_dir  # lazy: the data package imports torch and OpenCV

    if not name or Path(name).is_absolute():
        raise UserError(f"--name {name!r}: expected a folder name inside --project")
    project = resolve_project(project)
    existing = next((p for p in (project, *project.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"--project {project}: {existing} is not a folder")
    if existing is not None and not is_writable_dir(existing):
        raise UserError(f"--project {project}: {existing} is not writable")
    return project


def create_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """Claim project/name (or name2, name3, ...) for a new run, with one clear error when project cannot hold it."""
    project = check_project(project, name)
    try:
        return increment_path(project / name, exist_ok=exist_ok, mkdir=True)
    except OSError as e:
        raise UserError(f"--project {project}: cannot create the run folder ({e.strerror or e})") from None


def find_last_checkpoint(search_dir: str | Path) -> Path:
    """The most recently written last*.pt under search_dir (what a bare --resume continues)."""
    search_dir = Path(search_dir)
    candidates = list(search_dir.rglob("last*.pt")) if search_dir.is_dir() else []
    if not candidates:
        raise UserError(f"{search_dir}: no last.pt found to resume; pass --resume path/to/last.pt")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run directory holding <run>/weights/last.pt."""
    return Path(checkpoint).resolve().parent.parent


def save_run_files(save_dir: str | Path, opt: dict[str, Any], hyp: dict[str, float]) -> None:
    """opt.yaml (every option, enough to resume) and hyp.yaml (the unscaled hyperparameters)."""
    save_dir = Path(save_dir)
    save_yaml(save_dir / "hyp.yaml", hyp)
    save_yaml(save_dir / "opt.yaml", opt)


def load_resume_state(checkpoint: str | Path) -> tuple[dict[str, Any], int]:
    """(the run's options, the last finished epoch) for resuming from a last.pt.

    Options come from the opt.yaml beside the weights folder, else from the checkpoint itself (as
    upstream v7.0 falls back to ckpt['opt']).
    """
    from yolo_ray.train.checkpoint import load_training_checkpoint

    try:
        ckpt = load_training_checkpoint(checkpoint)
    except Exception as e:  # torch raises several types for foreign or torn files
        raise UserError(f"{checkpoint}: not a readable yolo_ray training checkpoint ({type(e).__name__})") from None
    opt_yaml = run_dir_of(checkpoint) / "opt.yaml"
    if opt_yaml.is_file():
        opt = load_yaml(opt_yaml)
    else:
        opt = ckpt.get("opt")
    if not isinstance(opt, dict):
        raise UserError(f"{opt_yaml}: missing or not a mapping, and {checkpoint} holds no options to resume with")
    return opt, int(ckpt.get("epoch", -1))
