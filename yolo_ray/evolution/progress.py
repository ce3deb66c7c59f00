"""What an evolution run tells its user while it runs: progress lines, failures, refreshed results.

hyp_evolve.yaml is rewritten after every row (a small file, from the rows the searcher holds in
memory); evolve.png at most once per PLOT_INTERVAL_S and after the last row, on a background thread:
drawing 29 panels at 200 dpi costs seconds, and Tune's loop, which calls the row hook, would otherwise
start no trial meanwhile.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ray.tune import Callback

from yolo_ray.console import FILE_ONLY, LOGGER, Progress

if TYPE_CHECKING:
    import pandas as pd

PLOT_INTERVAL_S = 60.0


class EvolveProgress:
    """The searcher's on_row hook: prints `generations done, best fitness, ETA` and refreshes the results files.

    detail: the strategy's own progress (e.g. the population GA's generation), appended when not empty.
    time_left: seconds left of --time-budget (None without one). concurrency: trials at once, for the ETA.
    """

    def __init__(
        self,
        save_dir: str | Path,
        generations: int,
        start_rows: int,
        plot_interval_s: float = PLOT_INTERVAL_S,
        detail: Callable[[], str] | None = None,
        time_left: Callable[[], float | None] | None = None,
        concurrency: int = 1,
        history: Callable[[], pd.DataFrame] | None = None,
    ):
        self.save_dir = Path(save_dir)
        self.generations = generations
        self.start_rows = start_rows
        self.plot_interval_s = plot_interval_s
        self.detail = detail
        self.time_left = time_left
        self.concurrency = concurrency
        self.trial_seconds: list[float] = []
        self.t0 = time.time()
        self.last_plot = self.t0
        self.progress: Progress | None = None  # a bar on a terminal, a line per row elsewhere
        self.history = history  # the rows so far (the searcher's); None: read evolve.csv
        self._plotter: threading.Thread | None = None
        self._plotted_rows = -1  # rows the last evolve.png drew

    def start(self) -> None:
        """Trials are about to run: a live bar from here on when the console is a terminal."""
        self.progress = Progress(
            self.generations,
            "evolve",
            "generation",
            final_line=False,
            min_interval_s=0,
            initial=self.start_rows,
            every=1,
            own_counts=True,
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    @property
    def csv_path(self) -> Path:
        return self.save_dir / "evolve.csv"

    def __call__(self, rows: int, best_fitness: float, trial_seconds: float = math.nan) -> None:
        from yolo_ray.console import format_duration
        from yolo_ray.evolution.stopping import eta_seconds

        if math.isfinite(trial_seconds):
            self.trial_seconds.append(trial_seconds)
        elapsed = time.time() - self.t0
        done_here = rows - self.start_rows
        rate = f", {3600 * done_here / elapsed:.0f} trials/hour" if elapsed > 0 and done_here > 0 else ""
        eta = eta_seconds(self.generations - rows, self.trial_seconds, self.concurrency)
        rate += f", ETA {format_duration(eta)}" if eta else ""
        left = self.time_left() if self.time_left else None
        rate += f", time budget left {format_duration(left)}" if left is not None else ""
        detail = self.detail() if self.detail else ""
        line = (
            f"evolve: {rows}/{self.generations} generations done{f' ({detail})' if detail else ''}, "
            f"best fitness {best_fitness:.5g} ({elapsed:.0f} s{rate})"
        )
        if self.progress is None:
            LOGGER.info(line)
        else:
            self.progress.update(rows - self.progress.done, desc=line)
            if self.progress.live:
                LOGGER.info(line, extra=FILE_ONLY)  # the bar shows it; evolve.log keeps every row
        history = self._write_hyp_evolve()
        if history is not None and (rows >= self.generations or time.time() - self.last_plot >= self.plot_interval_s):
            self._plot_in_background(history)

    def refresh(self, plot: bool = True) -> None:
        """Rewrite hyp_evolve.yaml (and evolve.png when plot and its rows changed) now; nothing before the
        first row. Waits for a plot in progress first."""
        if self._plotter is not None:
            self._plotter.join()
        history = self._write_hyp_evolve()
        if plot and history is not None and len(history) != self._plotted_rows:
            self._plot(history)

    def _write_hyp_evolve(self) -> pd.DataFrame | None:
        """hyp_evolve.yaml from the rows so far (last = rows - 1, as upstream); those rows, None before the first."""
        from yolo_ray.evolution.evolve_csv import read_history, write_hyp_evolve

        if not self.csv_path.is_file():
            return None
        history = read_history(self.csv_path) if self.history is None else self.history()
        if history.empty:
            return None
        write_hyp_evolve(self.csv_path, self.save_dir / "hyp_evolve.yaml", history=history)
        return history

    def _plot(self, history: pd.DataFrame) -> None:
        from yolo_ray.evolution.plots import plot_evolve

        plot_evolve(self.csv_path, history=history)
        self._plotted_rows = len(history)

    def _plot_in_background(self, history: pd.DataFrame) -> None:
        """Draw evolve.png from a copy of these rows on a thread; skipped while one is still drawing."""
        if self._plotter is not None and self._plotter.is_alive():
            return
        self.last_plot = time.time()
        snapshot = history.copy()

        def draw() -> None:
            try:
                self._plot(snapshot)
            except Exception as e:  # a missing plot must not stop the evolution; the final refresh retries
                LOGGER.warning(f"evolve: evolve.png not refreshed: {e}")

        self._plotter = threading.Thread(target=draw, name="evolve-plot", daemon=True)
        self._plotter.start()


class TrialEvents(Callback):
    """Prints trial retries and failures with the error file to read, one line each."""

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        LOGGER.warning(f"evolve: trial {trial.trial_id} died ({trial.run_metadata.num_failures} so far); retrying it")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        where = trial.error_file or "no error file"
        LOGGER.warning(f"evolve: trial {trial.trial_id} failed after its retries; see {where}")


def unranked_warning(history: pd.DataFrame, base_hyp: Mapping[str, float]) -> str:
    """A warning when the evolution ranked nothing, so its best hyps mean nothing; '' when it did.

    Nothing is ranked when every row scored the same fitness (typically 0: too few epochs, or training
    from scratch), or when the fittest row is the starting hyp itself (no mutation beat it).
    """
    from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS, best_row
    from yolo_ray.scores import fitness

    if history.empty:
        return ""
    scores = np.asarray(fitness(history[list(EVOLVE_RESULT_KEYS)].to_numpy(dtype=float)), dtype=float)
    scores = scores[np.isfinite(scores)]
    advice = (
        "train each trial longer (--epochs) or start from pretrained --weights, so that fitness "
        "(0.1 mAP@0.5 + 0.9 mAP@0.5:0.95) tells the hyps apart"
    )
    if len(history) > 1 and (not len(scores) or np.ptp(scores) == 0):
        tied = f"{scores[0]:.5g}" if len(scores) else "nan"
        return (
            f"WARNING: nothing was ranked: all {len(history)} trials scored the same fitness ({tied}), so "
            f"hyp_evolve.yaml is no better than the starting hyps; {advice}"
        )
    best = best_row(history).hyp
    keys = [k for k in base_hyp if k in best]
    if keys and np.allclose([best[k] for k in keys], [base_hyp[k] for k in keys], rtol=1e-4, atol=1e-12):
        return (
            "WARNING: the fittest row is the starting hyps themselves: no mutation beat them, so "
            f"hyp_evolve.yaml holds your --hyp unchanged; evolve more generations, or {advice}"
        )
    return ""
