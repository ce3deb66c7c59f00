"""A run directory kept on remote storage (--storage-path s3://..., gs://..., file://...).

Rank 0 writes the run in a local staging folder as always and uploads what changed after every epoch
and at the end, so the run lives where every node and the user can reach it even when nodes share no
filesystem. A node that needs the run's files (a restart elsewhere after a failure, a resume, another
rank's node reading last.pt) downloads them first. Any pyarrow filesystem URI works.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_ray.config import UserError

if TYPE_CHECKING:  # torch: not for train.py's --help and option checks
    from yolo_ray.train.session import WorkerContext


def is_uri(path: str | None) -> bool:
    return bool(path) and "://" in str(path)


def _open(uri: str):
    import pyarrow
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowException, ValueError, OSError) as e:
        raise UserError(f"--storage-path {uri}: not a storage URI pyarrow can open ({e})") from None


def staging_dir(run_uri: str) -> Path:
    """This node's local folder for the run at run_uri (the same on every node and every attempt)."""
    from yolo_ray.data.labels import cache_home

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
    numbers = [int(t[len(name):]) for t in taken if t.startswith(name) and t[len(name):].isdigit()]
    return f"{base}/{name}{max(numbers, default=1) + 1}"


class RunUploader:
    """Uploads a local run folder to run_uri, each time only the files whose size or mtime changed."""

    def __init__(self, local_dir: str | Path, run_uri: str):
        self.local_dir = Path(local_dir)
        self.run_uri = run_uri
        self.fs, self.root = _open(run_uri)
        self.sent: dict[str, tuple[int, int]] = {}

    def upload(self) -> None:
        import pyarrow.fs as pafs

        local = pafs.LocalFileSystem()
        for path in sorted(p for p in self.local_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = path.relative_to(self.local_dir).as_posix()
            stat = path.stat()
            if self.sent.get(rel) == (stat.st_size, stat.st_mtime_ns):
                continue
            self.fs.create_dir(f"{self.root}/{Path(rel).parent.as_posix()}".rstrip("/."), recursive=True)
            pafs.copy_files(str(path), f"{self.root}/{rel}", source_filesystem=local, destination_filesystem=self.fs)
            self.sent[rel] = (stat.st_size, stat.st_mtime_ns)


def download_run(run_uri: str, local_dir: str | Path) -> bool:
    """Copy the run at run_uri into local_dir; False when nothing is stored there yet."""
    import pyarrow.fs as pafs

    fs, root = _open(run_uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return False
    Path(local_dir).mkdir(parents=True, exist_ok=True)
    pafs.copy_files(root, str(local_dir), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return True


def attach_storage(ctx: WorkerContext, run_uri: str | None, save_dir: Path) -> RunUploader | None:
    """Fetch the stored run onto each node (its first rank, the others wait), and give rank 0 the uploader.

    A restart on another node, a resume, or a rank on a node that never held the run all need last.pt
    and the run's files locally before they read them.
    """
    from yolo_ray.train.session import local_main_first

    if not run_uri:
        return None
    with local_main_first(ctx):
        if ctx.local_rank == 0:
            download_run(run_uri, save_dir)
    return RunUploader(save_dir, run_uri) if ctx.is_main else None
