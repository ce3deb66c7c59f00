"""An evolution kept on storage (--storage-path s3://..., gs://..., file://...; upstream's --bucket).

The run lives at STORAGE/name: evolve.csv, hyp_evolve.yaml, evolve.png and opt.yaml are uploaded after
every row from a local staging folder, so the evolution survives the head node. `--resume STORAGE/name`
on a fresh cluster downloads it and continues; every row there is a finished trial, nothing is lost.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from yolo_ray.config import UserError
from yolo_ray.cluster.storage import RunUploader, download_run, is_uri, next_run_uri, staging_dir


def storage_option(storage_path: str | None, bucket: str | None) -> str | None:
    """--storage-path, or upstream's --bucket NAME (a Google Cloud Storage bucket: gs://NAME)."""
    if bucket and storage_path:
        raise UserError("--bucket and --storage-path say the same thing: give one of them")
    if bucket:
        return bucket if is_uri(bucket) else f"gs://{bucket.strip('/')}"
    return storage_path


def fetch_stored_evolution(run_uri: str) -> Path:
    """This machine's copy of the evolution stored at run_uri (its evolve.csv and files), for --resume."""
    local = staging_dir(run_uri)
    if not download_run(run_uri, local):
        raise UserError(f"{run_uri}: no stored evolution there to resume")
    return local


def claim_stored_run(storage: str, name: str, exist_ok: bool) -> tuple[str, Path]:
    """(STORAGE/name or the next free nameN, its local staging folder) for a new stored evolution.

    A staging folder left by an earlier run at the same URI is cleared, or its evolve.csv would be
    continued; with exist_ok the stored run (if any) is what continues.
    """
    run_uri = next_run_uri(storage, name, exist_ok)
    local = staging_dir(run_uri)
    if local.exists():
        shutil.rmtree(local)
    if exist_ok:
        download_run(run_uri, local)
    local.mkdir(parents=True, exist_ok=True)
    return run_uri, local


def row_uploader(save_dir: str | Path, run_uri: str | None) -> RunUploader | None:
    """The uploader that keeps run_uri in step with save_dir (None: the run is not stored)."""
    return RunUploader(save_dir, run_uri) if run_uri else None
