"""Upstream's official weights by name (yolov5s.pt, yolov5s, yolov5m6.pt, ...), fetched from its v7.0 release.

A name means the official file only when no local file of that name exists, as upstream's
attempt_download: `--weights yolov5s.pt` in a folder holding a yolov5s.pt trains from that file.
The download goes to the per-user cache (once per node) and is loaded like any other file, through
the restricted unpickler: nothing a downloaded file names is ever imported or run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from yolo_ray.config import UserError, refuse_folder
from yolo_ray.downloads import asset_url, download
from yolo_ray.filetypes import require_file
from yolo_ray.paths import cache_home

RELEASE_URL = "https://github.com/ultralytics/yolov5/releases/download/v7.0"
OFFICIAL_WEIGHTS = frozenset(f"yolov5{size}{p6}.pt" for size in "nsmlx" for p6 in ("", "6"))


def official_name(weights: str | Path) -> str | None:
    """'yolov5s.pt' for 'yolov5s.pt' or 'yolov5s' when that is an official name and no such local file exists."""
    text = str(weights).strip()
    if not text or Path(text).exists() or Path(text).name != text:
        return None  # a local file, or a path: never a release asset
    name = text if text.endswith(".pt") else f"{text}.pt"
    return name if name in OFFICIAL_WEIGHTS else None


def weights_cache() -> Path:
    """Where official weights are kept: <cache home>/weights."""
    return cache_home() / "weights"


def resolve_weights(weights: str | Path) -> Path:
    """The local file `weights` names: an existing path, or the official file (downloaded on first use)."""
    if is_url(weights):
        return download_url_weights(str(weights))
    name = official_name(weights)
    if name is None:
        return require_file(Path(weights).expanduser(), "weights file")
    return download(asset_url(f"{RELEASE_URL}/{name}"), weights_cache() / name, what=name)


def is_url(weights: str | Path) -> bool:
    """An http(s) URL of a weights file (kept a string: Path() would fold its '//' into one slash)."""
    return isinstance(weights, str) and weights.lower().startswith(("http://", "https://"))


def download_url_weights(url: str) -> Path:
    """The weights file at url, downloaded once into the cache (a folder per URL, so names never collide)."""
    name = PurePosixPath(urlsplit(url).path).name
    if not name:
        raise UserError(f"{url}: the URL names no file (expected .../NAME.pt)")
    folder = weights_cache() / "urls" / hashlib.sha256(url.encode()).hexdigest()[:16]
    return download(url, folder / name, what=url)


def weights_option(weights: str | None) -> str | None:
    """--weights as a run passes it to its workers: an absolute local path, or an official name.

    An official file is downloaded here, before any worker starts (progress shows on this console);
    the name itself travels on, so that every node loads its own cached copy (fetched there if missing).
    """
    if not weights:
        return None
    name = official_name(weights)
    if name is not None:
        resolve_weights(name)
        return name
    path = Path(weights).expanduser().resolve()
    refuse_folder(path, "a weights file (.pt)")
    if not path.is_file():
        raise UserError(
            f"{path}: weights file not found (a local .pt, or an official name such as yolov5s.pt, "
            "which is downloaded; --weights '' --cfg yolov5s.yaml trains from scratch)"
        )
    return str(path)
