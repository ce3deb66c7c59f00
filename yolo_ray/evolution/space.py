"""Evolution search spaces, validated against the hyp keys: yaml files of `key: [gain, low, high]`
(classic, random, tpe, cmaes), or `key: [enabled, low, high]` with true/false (the population GA, as
upstream's current train.py writes its `meta`)."""

from __future__ import annotations

import math
from pathlib import Path

import yolo_ray
from yolo_ray.config import HYP_KEYS, UserError, hyp_range_problem, load_yaml, refuse_folder, to_float

_PACKAGE_DIR = Path(yolo_ray.__file__).resolve().parent
# An installed wheel holds them as package data; a checkout (or an editable install) at its top.
SEARCH_SPACE_DIR = next(
    (d for d in (_PACKAGE_DIR / "search_spaces", _PACKAGE_DIR.parent / "search_spaces") if d.is_dir()),
    _PACKAGE_DIR / "search_spaces",
)
DEFAULT_SEARCH_SPACE = "yolov5"
# `anchors` is optional in hyp files; evolution adds it (upstream's default of 3) when missing.
EVOLVABLE_KEYS = (*HYP_KEYS, "anchors")

SearchSpace = dict[str, tuple[float, float, float]]
# The population GA's space: the first entry says whether the key evolves (1.0) or stays at the base (0.0).
ENABLED, DISABLED = 1.0, 0.0


def resolve_search_space(name_or_path: str | Path) -> Path:
    """A path as given when it exists, else a shipped space by name ("yolov5" or "yolov5.yaml")."""
    path = Path(name_or_path)
    refuse_folder(path, "a search space YAML file")
    if path.is_file():
        return path
    if path.parent == Path("."):  # a bare name: look among the shipped spaces
        for candidate in (SEARCH_SPACE_DIR / path.name, SEARCH_SPACE_DIR / f"{path.name}.yaml"):
            if candidate.is_file():
                return candidate
    shipped = ", ".join(sorted(p.stem for p in SEARCH_SPACE_DIR.glob("*.yaml")))
    raise UserError(f"{name_or_path}: search space not found (a yaml path, or one of the shipped: {shipped})")


def load_search_space(name_or_path: str | Path = DEFAULT_SEARCH_SPACE, enabled_flags: bool = False) -> SearchSpace:
    """Read and validate a search space; every problem found is named in one UserError line.

    enabled_flags: the population GA's format, `[true|false, low, high]` (returned as 1.0/0.0);
    otherwise `[gain, low, high]`. A file of the other format is refused, naming the strategy it fits.
    """
    path = resolve_search_space(name_or_path)
    raw = load_yaml(path)
    first = "enabled" if enabled_flags else "gain"
    space: SearchSpace = {}
    problems: list[str] = []
    other_format: list[str] = []
    for key, entry in raw.items():
        key = str(key)
        if key not in EVOLVABLE_KEYS:
            problems.append(f"{key!r} is not a YOLOv5 hyperparameter")
            continue
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            problems.append(f"{key}: expected [{first}, low, high], got {entry!r}")
            continue
        if isinstance(entry[0], bool) != enabled_flags:
            other_format.append(key)
            continue
        try:
            low, high = (to_float(x) for x in entry[1:])
            gain = float(entry[0]) if enabled_flags else to_float(entry[0])
        except (TypeError, ValueError):
            problems.append(f"{key}: [{first}, low, high] must be numbers, got {entry!r}")
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
    if other_format:
        problems.insert(0, _format_mismatch(other_format, enabled_flags))
    if not problems and not any(gain > 0 for gain, _, _ in space.values()):
        what = "is enabled" if enabled_flags else "has a gain > 0"
        problems.append(f"no key {what}, so nothing would ever change")
    if problems:
        raise UserError(f"{path}: bad search space: {'; '.join(problems)}")
    return space


def _format_mismatch(keys: list[str], enabled_flags: bool) -> str:
    """One sentence for every key written in the other strategy's format (a whole file usually is)."""
    shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    if enabled_flags:
        return (
            f"{shown}: [gain, low, high] triples, but --strategy population takes [true|false, low, high] "
            "(e.g. the shipped yolov5_population)"
        )
    return (
        f"{shown}: population [enabled, low, high] triples; use them with --strategy population, "
        "or give [gain, low, high]"
    )
