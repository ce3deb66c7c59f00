"""evolve.csv and hyp_evolve.yaml in upstream YOLOv5's byte format, safe for concurrent writers.

evolve.csv: a header of the 7 result names then the hyp keys, each right-aligned to 20 characters,
then one row per finished trial, `%20.5g` per value, all comma-separated. Rows are appended under a
file lock with a single write each, so two drivers on one file never interleave; a crash mid-write
leaves at most a torn last line, which readers drop (with a warning) and the next append cuts off.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import yaml
from filelock import FileLock, Timeout

from yolo_ray.config import UserError, replacing
from yolo_ray.scores import RESULT_KEYS, fitness

EVOLVE_RESULT_KEYS: tuple[str, ...] = tuple(RESULT_KEYS)
N_RESULTS = len(EVOLVE_RESULT_KEYS)


class BestRow(NamedTuple):
    index: int  # 0-based row of evolve.csv, upstream's "generation"
    fitness: float
    results: dict[str, float]
    hyp: dict[str, float]


def format_header(keys: Sequence[str]) -> str:
    return ",".join(f"{key:>20s}" for key in keys)


def format_row(values: Sequence[float]) -> str:
    return ",".join(f"{float(value):>20.5g}" for value in values)


def _result_values(results: Mapping[str, float] | Sequence[float]) -> list[float]:
    if isinstance(results, Mapping):
        missing = [k for k in EVOLVE_RESULT_KEYS if k not in results]
        if missing:
            raise ValueError(f"results lack {', '.join(missing)}")
        return [float(results[k]) for k in EVOLVE_RESULT_KEYS]
    values = [float(v) for v in results]
    if len(values) != N_RESULTS:
        raise ValueError(f"expected {N_RESULTS} results ({', '.join(EVOLVE_RESULT_KEYS)}), got {len(values)}")
    return values


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a writer died mid-row) so the next row starts clean."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    warnings.warn(f"{path}: dropping a torn last line ({len(data) - keep} bytes without a newline)")
    with open(path, "r+b") as f:
        f.truncate(keep)


def _read_header(path: Path) -> list[str] | None:
    """The column names of an existing evolve.csv, or None when there is no complete header yet."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        complete = f.read(1) == b"\n"
    if not complete:
        _cut_torn_tail(path)
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", errors="replace")
    if not first.endswith("\n"):
        return None
    return [name.strip() for name in first.split(",")]


def _check_header(path: Path, keys: list[str]) -> None:
    if tuple(keys[:N_RESULTS]) != EVOLVE_RESULT_KEYS:
        raise UserError(f"{path}: header must start with the result columns {', '.join(EVOLVE_RESULT_KEYS)}")
    hyp_keys = keys[N_RESULTS:]
    if not hyp_keys:
        raise UserError(f"{path}: header has no hyperparameter columns after the results")
    duplicated = sorted({k for k in hyp_keys if hyp_keys.count(k) > 1})
    if duplicated or "" in hyp_keys:
        raise UserError(f"{path}: header has empty or repeated columns {duplicated or ['']}")


def append_row(csv_path: str | Path, results: Mapping[str, float] | Sequence[float], hyp: Mapping[str, float]) -> None:
    """Append one trial: the 7 results (a dict by result name, or a sequence) then its hyp.

    A new file gets the header (hyp keys in `hyp` order); an existing file keeps its own column order,
    and the hyp must hold exactly its hyp columns.
    """
    path = Path(csv_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = _result_values(results)
    with FileLock(f"{path}.lock"):
        keys = _read_header(path)
        if keys is None:
            keys = [*EVOLVE_RESULT_KEYS, *hyp]
            _check_header(path, keys)
            text = format_header(keys) + "\n"
            mode = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        else:
            _check_header(path, keys)
            text = ""
            mode = os.O_WRONLY | os.O_APPEND
        hyp_keys = keys[N_RESULTS:]
        missing = [k for k in hyp_keys if k not in hyp]
        extra = [k for k in hyp if k not in hyp_keys]
        if missing or extra:
            raise UserError(
                f"{path}: the hyp does not match the file's columns "
                f"(missing {missing or 'none'}, extra {extra or 'none'})"
            )
        text += format_row([*values, *(hyp[k] for k in hyp_keys)]) + "\n"
        fd = os.open(path, mode, 0o644)
        try:
            data = text.encode()
            while data:  # one write in practice; the loop only guards against a short write
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)


def _parse_line(line: str, n_fields: int) -> list[float] | None:
    fields = line.split(",")
    if len(fields) != n_fields:
        return None
    try:
        return [float(x) for x in fields]
    except ValueError:
        return None


def read_history(csv_path: str | Path) -> pd.DataFrame:
    """evolve.csv as a float DataFrame with stripped column names (ours or upstream's).

    A missing or empty file gives an empty frame with the result columns. A torn last line (no
    newline: a writer died mid-row) is dropped with a warning; any other bad line is a UserError.
    """
    path = Path(csv_path)
    if not path.is_file():
        return pd.DataFrame(columns=list(EVOLVE_RESULT_KEYS), dtype=float)
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    lines = [line.rstrip("\r") for line in lines]
    if tail.strip():
        warnings.warn(f"{path}: dropping a torn last line (no newline): {tail.strip()[:60]!r}")
    if not lines:
        return pd.DataFrame(columns=list(EVOLVE_RESULT_KEYS), dtype=float)
    keys = [name.strip() for name in lines[0].split(",")]
    _check_header(path, keys)
    # A complete last line is not torn (rows are written whole, newline last): it is checked like the rest.
    numbered = [(i + 2, line) for i, line in enumerate(lines[1:]) if line.strip()]
    for lineno, line in numbered:
        if line.count(",") != len(keys) - 1:
            raise UserError(f"{path}, line {lineno}: expected {len(keys)} comma-separated values")
    if not numbered:
        return pd.DataFrame(columns=keys, dtype=float)
    body = "\n".join(line for _, line in numbered)
    try:
        frame = pd.read_csv(io.StringIO(body), header=None, names=keys, dtype=float, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError):
        bad = [lineno for lineno, line in numbered if _parse_line(line, len(keys)) is None]
        raise UserError(f"{path}, line {bad[0] if bad else '?'}: values must be numbers") from None
    return frame


def count_rows(csv_path: str | Path) -> int:
    """Complete, non-blank lines after the header, without parsing them (0 when the file is absent)."""
    path = Path(csv_path)
    if not path.is_file():
        return 0
    lines = path.read_bytes().split(b"\n")[1:-1]  # the last piece is "" or a torn tail
    return sum(1 for line in lines if line.strip())


def best_row(history: pd.DataFrame) -> BestRow:
    """The fittest row (first one on ties, as np.argmax); history must hold at least one row."""
    if history.empty:
        raise ValueError("best_row of an empty history")
    scores = np.asarray(fitness(history[list(EVOLVE_RESULT_KEYS)].to_numpy(dtype=float)), dtype=float)
    i = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
    row = history.iloc[i]
    results = {k: float(row[k]) for k in EVOLVE_RESULT_KEYS}
    hyp = {str(k): float(v) for k, v in row.items() if k not in EVOLVE_RESULT_KEYS}
    return BestRow(i, float(scores[i]), results, hyp)


def remove_lock(csv_path: str | Path) -> None:
    """Remove the lock file append_row leaves beside evolve.csv, unless another writer holds it now."""
    lock = FileLock(f"{csv_path}.lock", timeout=0)
    try:
        with lock:
            Path(lock.lock_file).unlink(missing_ok=True)
    except Timeout:
        pass


def _replace_atomically(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_hyp_evolve(
    csv_path: str | Path, yaml_path: str | Path, generations: int | None = None, history: pd.DataFrame | None = None
) -> Path:
    """hyp_evolve.yaml as upstream v7.0 writes it: a comment header with the best and last generation
    and the best row's results, then the best row's hyps. generations defaults to the row count.
    history: evolve.csv's rows when the caller holds them already (the CSV is not read then)."""
    history = read_history(csv_path) if history is None else history
    best = best_row(history)
    generations = len(history) if generations is None else generations
    text = (
        "# YOLOv5 Hyperparameter Evolution Results\n"
        f"# Best generation: {best.index}\n"
        f"# Last generation: {generations - 1}\n"
        "# " + ", ".join(f"{k:>20s}" for k in EVOLVE_RESULT_KEYS) + "\n"
        "# "
        + ", ".join(f"{v:>20.5g}" for v in best.results.values())
        + "\n\n"
        # libyaml's dumper writes the same text several times faster (this runs after every row)
        + yaml.dump(best.hyp, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    )
    yaml_path = Path(yaml_path)
    _replace_atomically(yaml_path, text)
    return yaml_path
