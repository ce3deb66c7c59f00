"""Reading user files (yaml, hyp) with errors that name the file and the problem."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
import uuid
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
HYP_DIR = PACKAGE_DIR / "hyps"
DEFAULT_HYP = HYP_DIR / "hyp.scratch-low.yaml"

# The 28 keys every YOLOv5 v7.0 hyp file holds, in file order; `anchors` is optional.
HYP_KEYS = (
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "warmup_momentum",
    "warmup_bias_lr",
    "box",
    "cls",
    "cls_pw",
    "obj",
    "obj_pw",
    "iou_t",
    "anchor_t",
    "fl_gamma",
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "degrees",
    "translate",
    "scale",
    "shear",
    "perspective",
    "flipud",
    "fliplr",
    "mosaic",
    "mixup",
    "copy_paste",
)

INF = math.inf
# Valid values of each hyp, from its meaning in upstream's hyp files: (low, high, low open, high open).
# Learning rates and BCE positive weights must be > 0; fractions of a value and probabilities lie in
# [0, 1]; momentum (SGD momentum / Adam beta1) below 1; `scale` below 1, since the image is scaled by
# up to 1 +/- scale; upstream documents perspective's range as 0-0.001; anchors 0 means the cfg's anchors.
HYP_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "lr0": (0, INF, True, True),
    "lrf": (0, 1, True, False),
    "momentum": (0, 1, False, True),
    "weight_decay": (0, INF, False, True),
    "warmup_epochs": (0, INF, False, True),
    "warmup_momentum": (0, 1, False, True),
    "warmup_bias_lr": (0, INF, False, True),
    "box": (0, INF, False, True),
    "cls": (0, INF, False, True),
    "cls_pw": (0, INF, True, True),
    "obj": (0, INF, False, True),
    "obj_pw": (0, INF, True, True),
    "iou_t": (0, 1, False, False),
    "anchor_t": (1, INF, True, True),
    "anchors": (0, INF, False, True),
    "fl_gamma": (0, INF, False, True),
    "hsv_h": (0, 1, False, False),
    "hsv_s": (0, 1, False, False),
    "hsv_v": (0, 1, False, False),
    "degrees": (0, 180, False, False),
    "translate": (0, 1, False, False),
    "scale": (0, 1, False, True),
    "shear": (0, 90, False, True),
    "perspective": (0, 0.001, False, False),
    **{k: (0, 1, False, False) for k in ("flipud", "fliplr", "mosaic", "mixup", "copy_paste")},
}


class UserError(ValueError):
    """A problem with the user's input; CLIs print it as one line and exit 2, never a traceback."""


def refuse_folder(path: str | Path, expected: str) -> None:
    """One clear line when a folder is given where a file is expected (rather than "not found")."""
    if Path(path).is_dir():
        raise UserError(f"{path}: is a folder, expected {expected}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a yaml mapping, raising UserError naming the file when it is missing or malformed."""
    path = Path(path)
    refuse_folder(path, "a YAML file")
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


@contextlib.contextmanager
def replacing(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary sibling of path to write; renamed over path when the block succeeds and removed when it
    fails, so a kill or a full disk leaves the previous file whole and no half-written file beside it."""
    tmp = temp_sibling(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # a failed write() names no file; the error line does
            e.filename = str(path)
        raise


# A write the machine refused: not a bug, and not helped by a retry
NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def write_refused(error: BaseException) -> UserError | None:
    """A full disk or quota, or a read-only filesystem, as one line naming the file; None for other errors."""
    if not isinstance(error, OSError) or error.errno not in NO_ROOM_ERRNOS:
        return None
    return UserError(f"{error.filename or 'a file'}: cannot write it ({os.strerror(error.errno)})")


def save_yaml(path: str | Path, data: dict[str, Any]) -> None:
    """Write a yaml mapping atomically, so a crash never leaves a torn file to resume from."""
    with replacing(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))


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
    for key, value in out.items():
        problem = hyp_range_problem(key, value)
        if problem:
            raise UserError(f"{source}: hyperparameter {problem}")
    return out


def hyp_range_problem(key: str, value: float) -> str | None:
    """'key = value is out of range (valid: ...)' when a hyp value is non-finite or invalid, else None."""
    if not math.isfinite(value):
        return f"{key} = {value} is not a finite number"
    if key not in HYP_RANGES:
        return None
    problem = range_problem(value, *HYP_RANGES[key])
    return f"{key} = {problem}" if problem else None


def range_problem(
    value: float, low: float, high: float = INF, low_open: bool = False, high_open: bool = True
) -> str | None:
    """'value is out of range (valid: [low, high))' when value lies outside the interval; NaN is named as such."""
    if value != value:
        return f"{value} is not a finite number"
    inside = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if inside:
        return None
    interval = f"{'(' if low_open else '['}{low:.10g}, {high:.10g}{')' if high_open else ']'}"
    return f"{value:.10g} is out of range (valid: {interval})"
