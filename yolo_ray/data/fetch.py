"""Datasets by name and on first use: the shipped yamls (coco128, coco, VOC) and the download of missing data.

A yaml's `download:` is one URL or a list of them; each archive unpacks beside the dataset's folder
when its top folder is that folder's name (coco128.zip, coco2017labels.zip), else into the dataset's
images/ folder (COCO's train2017.zip, the VOC archives). Everything is built in a hidden staging
folder and renamed into place when complete, under a file lock, so the processes of a node download
once and never see half a dataset. A `download:` that is a script (upstream's coco.yaml and VOC.yaml
hold Python) is never run: the shipped coco and VOC yamls do the same steps in this package's code.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock

from yolo_ray.config import UserError
from yolo_ray.downloads import archive_top_folders, asset_url, download, extract
from yolo_ray.paths import cache_home

LOGGER = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent / "datasets"
DATASETS_ENV = "YOLO_RAY_DATASETS"


def datasets_dir() -> Path:
    """Where datasets by name are kept: $YOLO_RAY_DATASETS, else <cache home>/datasets."""
    env = os.environ.get(DATASETS_ENV)
    return Path(env).expanduser().resolve() if env else cache_home() / "datasets"


def shipped_data_yaml(data: str | Path) -> Path | None:
    """The shipped yaml `data` names ('coco128.yaml' or 'coco128'), unless a local file of that name exists."""
    text = str(data).strip()
    if not text or Path(text).exists() or Path(text).name != text:
        return None
    candidate = SHIPPED_DIR / (text if text.endswith((".yaml", ".yml")) else f"{text}.yaml")
    return candidate if candidate.is_file() else None


def is_shipped(yaml_file: Path) -> bool:
    return yaml_file.parent == SHIPPED_DIR


def data_option(data: str) -> str:
    """--data as a run passes it to its workers: a local yaml's absolute path, or a shipped yaml's name
    (every node resolves that to its own datasets folder, downloading there if needed)."""
    return str(data).strip() if shipped_data_yaml(data) else str(Path(data).expanduser().resolve())


def shipped_root(data: dict[str, Any]) -> str:
    """A shipped yaml's root: its `path` (upstream's ../datasets/NAME) moved into the datasets folder."""
    return str(datasets_dir() / PurePosixPath(str(data.get("path") or "")).name)


def fetch_dataset(yaml_file: Path, data: dict[str, Any], root: Path) -> None:
    """Download and unpack the dataset of `data` (a yaml's contents) into root; nothing when present.

    Raises UserError when `download:` is a script or the download fails, naming what to do instead.
    """
    urls = _download_urls(yaml_file, data.get("download"))
    convert = _voc_conversion(data) if is_shipped(yaml_file) and yaml_file.stem == "VOC" else None
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):
        if root.exists():  # made by another process while this one waited, or left incomplete by hand
            return
        t0 = time.time()
        LOGGER.info(f"Dataset not found at {root}; downloading {', '.join(urls)}")
        staging = root.parent / f".{root.name}.partial"  # kept across a crash: finished archives are not fetched again
        build = staging / "build"
        for url in urls:
            done = staging / f"{PurePosixPath(url).name}.done"
            if done.exists():
                continue
            archive = download(url, staging / "archives" / PurePosixPath(url).name)
            into = build if archive_top_folders(archive) == {root.name} else build / root.name / "images"
            extract(archive, into)
            done.touch()
            archive.unlink()
        if convert is not None:
            convert(build / root.name)
        os.replace(build / root.name, root)  # staging is beside root: one rename on one filesystem
        shutil.rmtree(staging)
        LOGGER.info(f"Dataset download success ({time.time() - t0:.1f}s), saved to {root}")


def _download_urls(yaml_file: Path, download_spec: Any) -> list[str]:
    specs = download_spec if isinstance(download_spec, list) else [download_spec]
    if all(
        isinstance(s, str) and s.strip().startswith(("http://", "https://")) and "\n" not in s.strip() for s in specs
    ):
        urls = [s.strip() for s in specs]
        return [asset_url(u) for u in urls] if is_shipped(yaml_file) else urls
    kind = "a shell command" if str(download_spec).lstrip().startswith("bash ") else "a Python script"
    shipped = shipped_data_yaml(yaml_file.name)
    instead = (
        f"--data {yaml_file.name} (the shipped yaml does the same steps itself, into {datasets_dir()}), "
        if shipped
        else ""
    )
    raise UserError(
        f"{yaml_file}: the dataset is missing and its 'download:' is {kind}, which yolo_ray never runs; "
        f'use {instead}or run it in a YOLOv5 checkout (python -c "from utils.general import '
        f"check_dataset; check_dataset('{yaml_file}')\"), or make 'download:' the archive's URL"
    )


def _voc_conversion(data: dict[str, Any]):
    from yolo_ray.data.voc import convert_voc

    names = data.get("names") or {}
    ordered = list(names.values()) if isinstance(names, dict) else list(names)
    return lambda root: convert_voc(root, ordered)
