"""Where things go: run folders (project/name, never overwritten: exp, exp2, ...), the per-user cache,
and $YOLO_RAY_HOME, the one setting that moves both out of a Ray job's temporary working directory."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from yolo_ray.config import UserError

HOME_ENV = "YOLO_RAY_HOME"


def yolo_ray_home() -> Path | None:
    """$YOLO_RAY_HOME (absolute), or None when unset: read here only."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser().resolve() if env else None


def cache_home() -> Path:
    """The per-user cache: $YOLO_RAY_HOME, else ~/.cache/yolo_ray (downloads, built-in data, label caches)."""
    return yolo_ray_home() or Path.home() / ".cache" / "yolo_ray"


def increment_path(path: str | Path, exist_ok: bool = False, mkdir: bool = False) -> Path:
    """path, or path2, path3, ... (one past the highest existing suffix) when path exists.

    With mkdir the directory is claimed atomically, so two runs started at once never share one.
    """
    path = Path(path)
    while True:
        candidate = path
        if path.exists() and not exist_ok:
            pattern = re.compile(re.escape(path.name) + r"(\d+)$")
            taken = [int(m.group(1)) for p in path.parent.iterdir() if (m := pattern.match(p.name))]
            candidate = path.with_name(f"{path.name}{max(taken, default=1) + 1}")
        if not mkdir:
            return candidate
        try:
            candidate.mkdir(parents=True, exist_ok=exist_ok)
            return candidate
        except FileExistsError:
            continue  # another run claimed it between the scan and mkdir: scan again


def is_writable_dir(path: Path) -> bool:
    """True when we may create files in `path`; honours the mode bits even for root, so shared read-only
    datasets (mode r-x) are left untouched although root could write into them."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return os.access(path, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


# Set by Ray's job supervisor in every job driver's environment.
RAY_JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def in_ray_job() -> bool:
    """True inside a `ray job submit` driver, whose working directory is a temporary copy."""
    return RAY_JOB_ENV_VAR in os.environ or "runtime_resources" in Path.cwd().parts


def durable_root() -> Path:
    """Where relative output paths land when the working directory is temporary.

    $YOLO_RAY_HOME when set, else ~/yolo_ray: both outlive a Ray job's working-dir copy.
    """
    return yolo_ray_home() or Path.home() / "yolo_ray"


def resolve_project(project: str | Path) -> Path:
    """The absolute project dir: relative to the cwd, or to durable_root() inside a Ray job."""
    project = Path(project).expanduser()
    if project.is_absolute():
        return project
    base = durable_root() if in_ray_job() else Path.cwd()
    return (base / project).resolve()


def check_project(project: str | Path, name: str, option: str = "--project") -> Path:
    """The absolute project, once it is known able to hold project/name: one clear error otherwise.

    A project whose mode bits say read-only is refused even for root, who could write into it: a shared
    folder marked read-only is not ours to fill. option: how the error names the folder's option.
    """
    if not name or Path(name).is_absolute():
        raise UserError(f"--name {name!r}: expected a folder name inside {option}")
    project = resolve_project(project)
    existing = next((p for p in (project, *project.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{option} {project}: {existing} is not a folder")
    if existing is not None and not is_writable_dir(existing):
        raise UserError(f"{option} {project}: {existing} is not writable")
    return project


def create_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """Claim project/name (or name2, name3, ...) for a new run, with one clear error when project cannot hold it."""
    project = check_project(project, name)
    try:
        return increment_path(project / name, exist_ok=exist_ok, mkdir=True)
    except OSError as e:
        raise UserError(f"--project {project}: cannot create the run folder ({e.strerror or e})") from None
