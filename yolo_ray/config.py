"""Reading user files (yaml, hyp) with errors that name the file and the problem."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
HYP_DIR = PACKAGE_DIR / "hyps"
DEFAULT_HYP = HYP_DIR / "hyp.scratch-low.yaml"

# The 28 keys every YOLOv5 v7.0 hyp file holds, in file order; `anchors` is optional.
HYP_KEYS = (
    "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr",
    "box", "cls", "cls_pw", "obj", "obj_pw", "iou_t", "anchor_t", "fl_gamma", "hsv_h", "hsv_s", "hsv_v",
    "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr", "mosaic", "mixup", "copy_paste",
)


class UserError(ValueError):
    """A problem with the user's input; CLIs print it as one line and exit 2, never a traceback."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a yaml mapping, raising UserError naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(errors="replace"))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return data


def temp_sibling(path: str | Path, suffix: str = "") -> Path:
    """A hidden temporary name beside path, unique across hosts, processes and threads.

    Writers rename it over path when done; on a shared filesystem several nodes may write the same
    cache at once, and a pid alone repeats across hosts. suffix: a tail a writer insists on (np.save's .npy).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def save_yaml(path: str | Path, data: dict[str, Any]) -> None:
    """Write a yaml mapping atomically (temp file + rename), so a crash never leaves a torn file to resume from."""
    path = Path(path)
    tmp = temp_sibling(path)
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


def to_float(value: Any) -> float:
    """Numbers as floats, also strings like '1e-5' that PyYAML leaves unparsed; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def load_hyp(hyp: str | Path | dict | None = None) -> dict[str, float]:
    """The hyperparameter dict: a hyp yaml path, a dict, or None for upstream's hyp.scratch-low.

    Values are floats (upstream files are read the same way), and every YOLOv5 key must be present.
    """
    source = "hyp dict"
    if hyp is None:
        hyp = DEFAULT_HYP
    if not isinstance(hyp, dict):
        source = str(hyp)
        candidate = Path(hyp)
        if not candidate.is_file() and (HYP_DIR / candidate.name).is_file():
            candidate = HYP_DIR / candidate.name  # shipped names like "hyp.scratch-high.yaml"
        hyp = load_yaml(candidate)
    out: dict[str, float] = {}
    for key, value in hyp.items():
        try:
            out[str(key)] = to_float(value)
        except (TypeError, ValueError):
            raise UserError(f"{source}: hyperparameter {key!r} must be a number, got {value!r}") from None
    missing = [k for k in HYP_KEYS if k not in out]
    if missing:
        raise UserError(f"{source}: missing hyperparameters {', '.join(missing)}")
    return out
