"""A run directory kept on remote storage (--storage-path s3://..., gs://..., file://...).

Rank 0 writes the run in a local staging folder as always and uploads what changed after every epoch
and at the end, so the run lives where every node and the user can reach it even when nodes share no
filesystem. A node that needs the run's files (a restart elsewhere after a failure, a resume, another
rank's node reading last.pt) downloads them first. Any pyarrow filesystem URI works.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_ray.config import UserError, temp_sibling
from yolo_ray.console import LOGGER

if TYPE_CHECKING:  # torch: not for train.py's --help and option checks
    from yolo_ray.cluster.session import WorkerContext


# Tries of one file's upload before the error is raised (and Ray Train's retry takes over).
UPLOAD_ATTEMPTS = 5


def is_uri(path: str | None) -> bool:
    return bool(path) and "://" in str(path)


def _open(uri: str, option: str = "--storage-path"):
    import pyarrow
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowException, ValueError, OSError) as e:
        raise UserError(f"{option} {uri}: not a storage URI pyarrow can open ({str(e).splitlines()[0]})") from None


def check_storage(uri: str, option: str = "--storage-path") -> None:
    """Refuse now, before any folder exists, a storage the run could never be kept in: a filesystem path
    that cannot become a writable folder, or a remote store that does not answer."""
    import pyarrow

    from yolo_ray.paths import check_writable_folder

    fs, root = _open(uri, option)
    if fs.type_name == "local":
        check_writable_folder(root, f"{option} {uri}")
        return
    try:
        fs.get_file_info(root)
    except (OSError, pyarrow.ArrowException) as e:
        raise UserError(f"{option} {uri}: cannot reach it ({str(e).splitlines()[0]})") from None


def staging_dir(run_uri: str) -> Path:
    """This node's local folder for the run at run_uri (the same on every node and every attempt)."""
    from yolo_ray.paths import cache_home

    return cache_home() / "staging" / hashlib.sha1(run_uri.encode()).hexdigest()[:16]


def next_run_uri(base_uri: str, name: str, exist_ok: bool) -> str:
    """base_uri/name, or name2, name3, ... past the highest taken, as increment_path does on disk."""
    import pyarrow.fs as pafs

    fs, root = _open(base_uri)
    try:
        taken = {Path(info.path).name for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))}
    except OSError as e:
        raise UserError(f"--storage-path {base_uri}: cannot list it ({e})") from None
    base = base_uri.rstrip("/")
    if exist_ok or name not in taken:
        return f"{base}/{name}"
    numbers = [int(t[len(name) :]) for t in taken if t.startswith(name) and t[len(name) :].isdigit()]
    return f"{base}/{name}{max(numbers, default=1) + 1}"


class RunUploader:
    """Uploads a local run folder to run_uri, each time only the files whose size or mtime changed.

    On a filesystem (file://, NFS) each file is written under a hidden temporary name and renamed into
    place, so rank 0 killed mid-upload leaves the previous last.pt whole, never a torn one that every
    restart and --resume would then fail to load. Object stores (s3://, gs://) show an object only once
    it is complete, so there the file is written directly. A failed copy is retried with backoff.
    """

    def __init__(self, local_dir: str | Path, run_uri: str):
        self.local_dir = Path(local_dir)
        self.run_uri = run_uri
        self.fs, self.root = _open(run_uri)
        self.atomic_rename = self.fs.type_name == "local"
        self.sent: dict[str, tuple[int, int]] = {}

    def upload(self) -> None:
        for path in sorted(p for p in self.local_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = path.relative_to(self.local_dir).as_posix()
            stat = path.stat()
            if self.sent.get(rel) == (stat.st_size, stat.st_mtime_ns):
                continue
            with_retries(functools.partial(self._put, path, rel), f"upload of {rel} to {self.run_uri}")
            self.sent[rel] = (stat.st_size, stat.st_mtime_ns)

    def _put(self, path: Path, rel: str) -> None:
        import pyarrow.fs as pafs

        parent = f"{self.root}/{Path(rel).parent.as_posix()}".rstrip("/.")
        self.fs.create_dir(parent, recursive=True)
        target = f"{self.root}/{rel}"
        staged = f"{parent}/{temp_sibling(rel).name}" if self.atomic_rename else target
        pafs.copy_files(str(path), staged, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)
        if staged != target:
            self.fs.move(staged, target)


def with_retries(
    action: Callable[[], None], what: str, attempts: int = UPLOAD_ATTEMPTS, first_wait_s: float = 1.0
) -> None:
    """action(), again after 1, 2, 4, ... s when storage fails (a throttled bucket, a network blip)."""
    import pyarrow

    for attempt in range(attempts):
        try:
            action()
            return
        except (OSError, pyarrow.ArrowException) as e:
            if attempt == attempts - 1:
                raise
            wait = first_wait_s * 2**attempt
            LOGGER.warning(f"WARNING: {what} failed ({e}); retrying in {wait:.0f} s")
            time.sleep(wait)


def download_run(run_uri: str, local_dir: str | Path) -> bool:
    """Copy the run at run_uri into local_dir; False when nothing is stored there yet."""
    import pyarrow.fs as pafs

    fs, root = _open(run_uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return False
    Path(local_dir).mkdir(parents=True, exist_ok=True)
    with_retries(
        lambda: pafs.copy_files(
            root, str(local_dir), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
        ),
        f"download of {run_uri}",
    )
    return True


def attach_storage(ctx: WorkerContext, run_uri: str | None, save_dir: Path) -> RunUploader | None:
    """Fetch the stored run onto each node (its first rank, the others wait), and give rank 0 the uploader.

    A restart on another node, a resume, or a rank on a node that never held the run all need last.pt
    and the run's files locally before they read them.
    """
    from yolo_ray.cluster.session import local_main_first

    if not run_uri:
        return None
    with local_main_first(ctx):
        if ctx.local_rank == 0:
            download_run(run_uri, save_dir)
    return RunUploader(save_dir, run_uri) if ctx.is_main else None
