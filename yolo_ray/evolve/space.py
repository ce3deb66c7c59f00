"""Evolution search spaces: yaml files of `key: [gain, low, high]`, validated against the hyp keys."""

from __future__ import annotations

import math
from pathlib import Path

import yolo_ray
from yolo_ray.config import HYP_KEYS, UserError, hyp_range_problem, load_yaml, to_float

SEARCH_SPACE_DIR = Path(yolo_ray.__file__).resolve().parents[1] / "search_spaces"
DEFAULT_SEARCH_SPACE = "yolov5"
# `anchors` is optional in hyp files; evolution adds it (upstream's default of 3) when missing.
EVOLVABLE_KEYS = (*HYP_KEYS, "anchors")

SearchSpace = dict[str, tuple[float, float, float]]


def resolve_search_space(name_or_path: str | Path) -> Path:
    """A path as given when it exists, else a shipped space by name ("yolov5" or "yolov5.yaml")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent == Path("."):  # a bare name: look among the shipped spaces
        for candidate in (SEARCH_SPACE_DIR / path.name, SEARCH_SPACE_DIR / f"{path.name}.yaml"):
            if candidate.is_file():
                return candidate
    shipped = ", ".join(sorted(p.stem for p in SEARCH_SPACE_DIR.glob("*.yaml")))
    raise UserError(f"{name_or_path}: search space not found (a yaml path, or one of the shipped: {shipped})")


def load_search_space(name_or_path: str | Path = DEFAULT_SEARCH_SPACE) -> SearchSpace:
    """Read and validate a search space; every problem found is named in one UserError line."""
    path = resolve_search_space(name_or_path)
    raw = load_yaml(path)
    space: SearchSpace = {}
    problems: list[str] = []
    for key, entry in raw.items():
        key = str(key)
        if key not in EVOLVABLE_KEYS:
            problems.append(f"{key!r} is not a YOLOv5 hyperparameter")
            continue
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            problems.append(f"{key}: expected [gain, low, high], got {entry!r}")
            continue
        try:
            gain, low, high = (to_float(x) for x in entry)
        except (TypeError, ValueError):
            problems.append(f"{key}: [gain, low, high] must be numbers, got {entry!r}")
            continue
        if any(math.isnan(x) for x in (gain, low, high)):
            problems.append(f"{key}: NaN in {entry!r}")
        elif gain < 0:
            problems.append(f"{key}: gain must be >= 0, got {gain:g}")
        elif low > high:
            problems.append(f"{key}: low {low:g} > high {high:g}")
        elif limit_problem := hyp_range_problem(key, low) or hyp_range_problem(key, high):
            problems.append(f"limit {limit_problem}")  # every trial's hyp must be a valid one
        else:
            space[key] = (gain, low, high)
    if not problems and not any(gain > 0 for gain, _, _ in space.values()):
        problems.append("no key has a gain > 0, so nothing would ever mutate")
    if problems:
        raise UserError(f"{path}: bad search space: {'; '.join(problems)}")
    return space
