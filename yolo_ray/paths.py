"""Where things go: output folders that never overwrite (exp, exp2, ...) and the per-user cache."""

from __future__ import annotations

import os
import re
from pathlib import Path


def cache_home() -> Path:
    """The per-user cache: $YOLO_RAY_HOME, else ~/.cache/yolo_ray (downloads, built-in data, label caches)."""
    env = os.environ.get("YOLO_RAY_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yolo_ray"


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
