"""When an evolution stops before its row count, and how long it has left: --time-budget, --patience-rows, ETA."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from yolo_ray.config import UserError
from yolo_ray.console import format_duration
from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS
from yolo_ray.scores import fitness

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd])\s*$", re.IGNORECASE)


def parse_duration(text: str | float | int) -> float:
    """Seconds in '8h', '90m', '1.5d', '600s' (a number of seconds is taken as it is)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise UserError(f"--time-budget {text!r}: expected a number and a unit s, m, h or d (e.g. 8h, 90m)")
        seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2).lower()]
    if not seconds > 0:
        raise UserError(f"--time-budget {text!r}: must be more than 0")
    return seconds


def rows_since_best(history: pd.DataFrame) -> int:
    """evolve.csv rows after the (first) fittest one; all rows when none has a finite fitness."""
    if history.empty:
        return 0
    scores = np.asarray(fitness(history[list(EVOLVE_RESULT_KEYS)].to_numpy(dtype=float)), dtype=float)
    if not np.isfinite(scores).any():
        return len(scores)
    return len(scores) - 1 - int(np.nanargmax(scores))


class StopRule:
    """--time-budget (seconds from start: no new trials after it) and --patience-rows (rows without a new best)."""

    def __init__(self, time_budget_s: float | None = None, patience: int | None = None, start: float | None = None):
        self.time_budget_s = time_budget_s
        self.patience = patience
        self.start = time.time() if start is None else start

    def reason(self, history: pd.DataFrame, now: float | None = None) -> str | None:
        """Why no further trial should start, or None."""
        now = time.time() if now is None else now
        if self.time_budget_s is not None and now - self.start >= self.time_budget_s:
            return f"the time budget of {format_duration(self.time_budget_s)} is spent"
        if self.patience is not None and rows_since_best(history) >= self.patience:
            return f"the best fitness has not improved for {self.patience} rows (--patience-rows {self.patience})"
        return None

    def time_left(self, now: float | None = None) -> float | None:
        if self.time_budget_s is None:
            return None
        return max(0.0, self.time_budget_s - ((time.time() if now is None else now) - self.start))


def eta_seconds(remaining_rows: int, trial_seconds: Sequence[float], concurrency: int) -> float | None:
    """Time to the last row: waves of `concurrency` trials at the mean measured trial duration.
    None before any trial has finished (nothing measured yet)."""
    if remaining_rows <= 0:
        return 0.0
    if not trial_seconds:
        return None
    return math.ceil(remaining_rows / max(1, concurrency)) * float(np.mean(trial_seconds))
