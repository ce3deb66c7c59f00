"""The data yaml: where the train/val images are and what the classes are called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolo_ray.config import UserError, load_yaml
from yolo_ray.data.fetch import fetch_dataset, is_shipped, shipped_data_yaml, shipped_root


def _resolve_names(data: dict[str, Any], yaml_file: Path) -> dict[int, str]:
    names = data.get("names")
    nc = data.get("nc")
    if names is None:
        if nc is None:
            raise UserError(f"{yaml_file}: needs 'names' (a list or an {{id: name}} mapping) or 'nc'")
        names = [f"class{i}" for i in range(_as_count(nc, yaml_file))]
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise UserError(f"{yaml_file}: 'names' must be a list or an {{id: name}} mapping, got {type(names).__name__}")
    try:
        names = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        raise UserError(f"{yaml_file}: 'names' keys must be integer class ids") from None
    if sorted(names) != list(range(len(names))):
        raise UserError(f"{yaml_file}: 'names' ids must be 0..{len(names) - 1} without gaps, got {sorted(names)}")
    if nc is not None and _as_count(nc, yaml_file) != len(names):
        raise UserError(f"{yaml_file}: nc={nc} but 'names' has {len(names)} entries")
    return names


def _as_count(nc: Any, yaml_file: Path) -> int:
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise UserError(f"{yaml_file}: 'nc' must be a positive integer, got {nc!r}")
    return nc


def _resolve_split(data: dict[str, Any], key: str, root: Path, yaml_file: Path) -> list[str]:
    value = data.get(key)
    if value is None or value == "" or value == []:
        raise UserError(f"{yaml_file}: '{key}' is missing (a folder, a .txt list of images, or a list of those)")
    entries = value if isinstance(value, list) else [value]
    out = []
    for entry in entries:
        if not isinstance(entry, str):
            raise UserError(f"{yaml_file}: '{key}' entries must be paths, got {entry!r}")
        p = Path(entry).expanduser()
        p = (p if p.is_absolute() else root / p).resolve()
        if not p.exists():
            raise UserError(f"{yaml_file}: {key} images not found at {p}")
        out.append(str(p))
    return out


def _root_candidates(root_value: str, yaml_file: Path, cwd: Path) -> list[Path]:
    """Where a yaml's `path:` may point: absolute as it is; else relative to the yaml's folder, then to
    `cwd` (YOLOv5 users write it relative to where they run train.py)."""
    root = Path(root_value).expanduser()
    if root.is_absolute():
        return [root.resolve()]
    return list(dict.fromkeys([(yaml_file.parent / root).resolve(), (cwd / root).resolve()]))


def _resolve_root(root_value: str, yaml_file: Path, cwd: Path) -> Path:
    tried = _root_candidates(root_value, yaml_file, cwd)
    for candidate in tried:
        if candidate.is_dir():
            return candidate
    raise UserError(f"{yaml_file}: path '{root_value}' not found; tried {' and '.join(map(str, tried))}")


def _val_present(data: dict[str, Any], roots: list[Path]) -> bool:
    """True when some candidate root holds every `val` entry (upstream's test for a missing dataset)."""
    val = data.get("val")
    entries = val if isinstance(val, list) else [val]
    if not entries or not all(isinstance(v, str) and v for v in entries):
        return True  # malformed: reported by _resolve_split, not downloaded over
    return any(all((root / Path(v).expanduser()).exists() for v in entries) for root in roots)


def load_data_config(path: str | Path, cwd: str | Path | None = None) -> dict[str, Any]:
    """Read a YOLOv5 data yaml into absolute paths and an {id: name} class dict.

    `path` in the yaml is relative to the yaml's own folder, else to `cwd` (default: this process's
    current directory; Ray workers run elsewhere, so the command's directory travels as the `cwd`
    option); absent = the yaml's folder. `train`/`val` are relative to `path`. `path` may also name a
    shipped yaml (coco128.yaml, coco.yaml, VOC.yaml), whose dataset lives in the datasets folder. A
    dataset whose `val` images are missing is downloaded from the yaml's `download:` URL(s) first.
    Raises UserError naming the yaml for any problem, including missing images.
    """
    yaml_file = shipped_data_yaml(path) or Path(path).expanduser().resolve()
    data = load_yaml(yaml_file)
    if is_shipped(yaml_file):
        data["path"] = shipped_root(data)
    root_value = data.get("path") or ""
    if not isinstance(root_value, str):
        raise UserError(f"{yaml_file}: 'path' must be a folder path, got {root_value!r}")
    cwd = Path(cwd) if cwd else Path.cwd()
    roots = _root_candidates(root_value, yaml_file, cwd)
    if data.get("download") and not _val_present(data, roots):
        fetch_dataset(yaml_file, data, roots[0])
    root = _resolve_root(root_value, yaml_file, cwd)
    names = _resolve_names(data, yaml_file)
    config: dict[str, Any] = {
        "yaml_file": yaml_file,
        "path": root,
        "train": _resolve_split(data, "train", root, yaml_file),
        "val": _resolve_split(data, "val", root, yaml_file),
        "names": names,
        "nc": len(names),
    }
    if data.get("test"):
        config["test"] = _resolve_split(data, "test", root, yaml_file)
    return config
