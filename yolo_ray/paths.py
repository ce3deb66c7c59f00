"""Where things go: run folders (project/name, never overwritten: exp, exp2, ...), the per-user cache,
and $YOLO_RAY_HOME, the one setting that moves both out of a Ray job's temporary working directory."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from yolo_ray.config import UserError

HOME_ENV = "YOLO_RAY_HOME"


def yolo_ray_home() -> Path | None:
    """$YOLO_RAY_HOME (absolute), or None when unset: read here only."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser().resolve() if env else None


def cache_home() -> Path:
    """The per-user cache: $YOLO_RAY_HOME, else ~/.cache/yolo_ray (downloads, built-in data, label caches),
    else, where the home folder cannot take it (read-only on a shared machine), a folder under /tmp."""
    return yolo_ray_home() or _home_cache()


@functools.cache
def _home_cache() -> Path:
    home_cache = Path.home() / ".cache" / "yolo_ray"
    if can_create(home_cache):
        return home_cache
    fallback = Path(tempfile.gettempdir()) / f"yolo_ray-{os.getuid()}"
    logging.getLogger("yolo_ray").warning(
        f"WARNING: {home_cache} cannot be created (read-only home?); caching in {fallback} instead "
        f"(set ${HOME_ENV} to choose)"
    )
    return fallback


def settle_home_folders() -> None:
    """Before anything writes under the home folder: where it is read-only, the cache moves to /tmp (one
    warning) and matplotlib's config folder with it (matplotlib would warn on every import, in every trial)."""
    cache = cache_home()
    mpl_default = Path.home() / ".config" / "matplotlib"
    if "MPLCONFIGDIR" not in os.environ and not can_create(mpl_default):
        os.environ["MPLCONFIGDIR"] = str(cache / "matplotlib")


def nearest_existing(path: Path) -> Path | None:
    """path itself or its closest ancestor that exists."""
    return next((p for p in (path, *path.parents) if p.exists()), None)


def can_create(path: Path) -> bool:
    """True when path is a writable folder, or could be made as one (its nearest existing ancestor is)."""
    existing = nearest_existing(path)
    return existing is not None and existing.is_dir() and is_writable_dir(existing)


def check_writable_folder(path: str | Path, what: str) -> Path:
    """path, absolute, once it is known to be (or able to become) a folder we may write in; else one
    clear error starting with what (the option and its value) and naming the part of the path in the way."""
    path = Path(path).expanduser().absolute()
    existing = nearest_existing(path)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{what}: {existing} is not a folder")
    if existing is not None and not is_writable_dir(existing):
        raise UserError(f"{what}: {existing} is not writable")
    return path


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
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise UserError(f"--name {name!r}: expected a folder name inside {option}")
    project = resolve_project(project)
    return check_writable_folder(project, f"{option} {project}")


def create_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """Claim project/name (or name2, name3, ...) for a new run, with one clear error when project cannot hold it."""
    project = check_project(project, name)
    try:
        return increment_path(project / name, exist_ok=exist_ok, mkdir=True)
    except OSError as e:
        raise UserError(f"--project {project}: cannot create the run folder ({e.strerror or e})") from None


LOCK_NAME = ".driver.lock"


@contextlib.contextmanager
def one_driver(folder: Path, command: str) -> Iterator[None]:
    """Hold the run folder for this process: a second driver on it is refused with one line naming who has it.

    An exclusive flock on FOLDER/.driver.lock, which the kernel drops when the holder ends in any way
    (kill -9 included), so a lock file left behind never blocks the next run.
    """
    path = Path(folder) / LOCK_NAME
    fd = _lock_file(path, command)
    try:
        os.ftruncate(fd, 0)
        os.write(
            fd, f"{command}, pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}".encode()
        )
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding it: the next driver creates and locks a fresh file
        os.close(fd)


def _lock_file(path: Path, command: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"{path.parent}: cannot write in the run folder ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 300).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{path.parent}: {holder} is running on this folder; one {command} per run folder "
                "(wait for it to end, or stop it)"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder just ended and removed the file we opened: lock the new one
