"""YOLOv5's evolution as a Ray Tune Searcher over evolve.csv, with a pluggable proposal strategy.

Whenever Tune has a free slot it asks `suggest` for a trial; the strategy (--strategy: upstream's
classic GA by default, its population GA, random search, Optuna's TPE or CMA-ES) proposes the hyp, or
None to make Tune wait. Every finished trial becomes one evolve.csv row, written here in the driver,
so the file stays the single source of truth a resumed run starts from.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray.tune.search import Searcher

from yolo_ray.config import UserError
from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS, append_row, read_history
from yolo_ray.evolution.strategies.classic import prepare_evolution
from yolo_ray.evolution.space import SearchSpace
from yolo_ray.evolution.stopping import StopRule
from yolo_ray.evolution.strategies import DEFAULT_STRATEGY, make_strategy
from yolo_ray.scores import fitness

LOGGER = logging.getLogger(__name__)

# A trial's last report carries this key only when its training ran to the end. Tune marks trials
# stopped by a scheduler (ASHA) `done` as well, so `done` cannot tell a finished generation apart.
COMPLETE_KEY = "trial_complete"
# A trial that hit an error a retry would only repeat (bad input, CUDA OOM) reports it under this key.
ERROR_KEY = "yolo_ray_error"

# Attributes that make up the searcher's state; everything else is rebuilt or runtime-only.
_STATE_KEYS = (
    "csv_path",
    "base_hyp",
    "meta",
    "generations",
    "strategy_name",
    "parent",
    "population",
    "seed",
    "max_failed_trials",
    "strategy",
    "history",
    "live",
    "n_parents",
    "failed",
    "stopped",
    "last_failure",
    "stop_rule",
    "stop_reason",
    "started",
)


def result_problem(result: Mapping[str, Any] | None) -> str | None:
    """Why a finished trial's result cannot be an evolve.csv row, or None when it can."""
    if not result:
        return "no result reported"
    if result.get(ERROR_KEY):
        return str(result[ERROR_KEY])
    missing = [k for k in EVOLVE_RESULT_KEYS if k not in result]
    if missing:
        return f"result lacks {', '.join(missing)}"
    losses = [k for k in result if k.startswith("train/") and k.endswith("_loss")]
    bad = [k for k in (*EVOLVE_RESULT_KEYS, *losses) if not math.isfinite(float(result[k]))]
    if bad:
        return f"non-finite {', '.join(bad)}"
    return None


class EvolveSearcher(Searcher):
    """Proposes hyps by the chosen strategy and appends each finished trial to evolve.csv.

    csv_path: evolve.csv (read once here if present; appended as results arrive).
    base_hyp / meta: the hyp and search space (anchors handling as prepare_evolution), meta in the
    strategy's format (strategies.load_strategy_space).
    generations: the row count to reach; suggest returns FINISHED once evolve.csv holds that many.
    strategy: one of strategies.STRATEGIES; parent (classic) and population (population) configure it.
    max_failed_trials: after that many failed trials (errors after retries, non-finite results)
    suggest returns FINISHED too, and `failure_cap_reached` tells the driver why.
    time_budget_s / patience: StopRule; once it applies suggest returns FINISHED (running trials
    finish and still become rows) and `stop_reason` says why.
    seed: None for fresh entropy; with a seed, a run (and a resumed run) is reproducible.
    on_row: called after every appended row with (rows, best_fitness, trial_seconds); not saved state.
    """

    def __init__(
        self,
        csv_path: str | Path,
        base_hyp: Mapping[str, float],
        meta: SearchSpace,
        generations: int,
        *,
        metric: str = "fitness",
        mode: str = "max",
        strategy: str = DEFAULT_STRATEGY,
        parent: str = "single",
        population: int = 50,
        seed: int | None = None,
        noautoanchor: bool = False,
        max_failed_trials: int = 10,
        time_budget_s: float | None = None,
        patience: int | None = None,
        on_row: Callable[[int, float, float], None] | None = None,
    ):
        # Tune only calls set_search_properties when param_space is non-empty: metric and mode go here.
        super().__init__(metric=metric, mode=mode)
        if generations < 1:
            raise UserError(f"--generations must be at least 1, got {generations}")
        self.csv_path = str(csv_path)
        self.base_hyp, self.meta = prepare_evolution(base_hyp, meta, noautoanchor)
        self.generations = int(generations)
        self.strategy_name = strategy
        self.parent = parent
        self.population = int(population)
        self.seed = seed
        self.max_failed_trials = int(max_failed_trials)
        self.stop_rule = StopRule(time_budget_s, patience)
        self.stop_reason: str | None = None
        self.on_row = on_row
        self.live: dict[str, dict[str, float]] = {}  # trial_id -> hyp of trials in flight
        self.started: dict[str, float] = {}  # trial_id -> when it was proposed
        self.failed = 0
        self.stopped = 0  # ended before training finished (early stopping, interrupted run)
        self.last_failure = ""
        self._load_history()
        self._start_strategy()

    def _load_history(self) -> None:
        self.history = read_history(self.csv_path)
        columns = [c for c in self.history.columns if c not in EVOLVE_RESULT_KEYS]
        if columns and set(columns) != set(self.base_hyp):
            missing = sorted(set(self.base_hyp) - set(columns))
            extra = sorted(set(columns) - set(self.base_hyp))
            raise UserError(
                f"{self.csv_path}: its hyperparameter columns do not match the hyp being evolved "
                f"(not in the file: {missing or 'none'}; only in the file: {extra or 'none'}); "
                "resume with the same --hyp and --noautoanchor setting"
            )
        self.n_parents = int(np.isfinite(self._scores()).sum())
        self._best_fitness = self._best_of_history()

    def _start_strategy(self) -> None:
        self.strategy = make_strategy(
            self.strategy_name,
            self.base_hyp,
            self.meta,
            self.generations,
            self.seed,
            self.history,
            save_dir=Path(self.csv_path).parent,
            parent=self.parent,
            population=self.population,
        )

    @property
    def rows(self) -> int:
        return len(self.history)

    @property
    def failure_cap_reached(self) -> bool:
        return self.failed >= self.max_failed_trials

    def _scores(self) -> np.ndarray:
        if not len(self.history):
            return np.zeros(0)
        return fitness(self.history[list(EVOLVE_RESULT_KEYS)].to_numpy(dtype=float))

    def _best_of_history(self) -> float:
        scores = self._scores()
        return float(np.nanmax(scores)) if np.isfinite(scores).any() else math.nan

    @property
    def best_fitness(self) -> float:
        """The best fitness in evolve.csv (NaN before the first finite one); kept as rows arrive, since
        the dashboard's gauges and the progress line ask for it several times per trial."""
        return self._best_fitness

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.rows >= self.generations or self.failure_cap_reached:
            return Searcher.FINISHED
        self.stop_reason = self.stop_reason or self.stop_rule.reason(self.history)
        if self.stop_reason:
            return Searcher.FINISHED
        if self.rows + len(self.live) >= self.generations:
            return None  # enough in flight; one failing gets a replacement later
        hyp = self.strategy.propose(trial_id, self.history)
        if hyp is None:
            return None  # the strategy waits for trials in flight (the population GA's generation barrier)
        self.live[trial_id] = hyp
        self.started[trial_id] = time.time()
        return {"hyp": hyp}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        hyp = self.live.pop(trial_id, None)
        started = self.started.pop(trial_id, None)
        if hyp is None:
            return  # not proposed by this searcher (e.g. a trial from before a restore)
        if error:
            self._record_failure(trial_id, hyp, "the trial raised an error (after its retries)")
            return
        if result is None or not result.get(COMPLETE_KEY):
            self.stopped += 1  # stopped early or interrupted: not a finished generation
            self.strategy.tell(trial_id, hyp, None)
            return
        reason = result_problem(result)
        if reason:
            self._record_failure(trial_id, hyp, reason)
            return
        results = {k: float(result[k]) for k in EVOLVE_RESULT_KEYS}
        append_row(self.csv_path, results, hyp)
        self._append_history({**results, **hyp})
        self.n_parents += 1
        self.strategy.tell(trial_id, hyp, results)
        seconds = time.time() - started if started is not None else float("nan")
        if self.on_row is not None:
            self.on_row(self.rows, self.best_fitness, seconds)

    def _append_history(self, row: dict[str, float]) -> None:
        # Hold what evolve.csv holds (%.5g), as upstream re-reads it: parents mutate from the same
        # values whether or not the run was resumed in between.
        row = {k: float(f"{v:.5g}") for k, v in row.items()}
        score = float(fitness(np.array([[row[k] for k in EVOLVE_RESULT_KEYS]]))[0])
        if math.isfinite(score) and not score <= self._best_fitness:  # also when the best is still NaN
            self._best_fitness = score
        columns = list(self.history.columns)
        if self.history.empty:  # a new file's frame has no hyp columns yet
            self.history = pd.DataFrame([row], dtype=float)
        elif set(row) == set(columns):  # a new frame from the array: pandas' .loc append costs ~20x more
            values = np.vstack([self.history.to_numpy(dtype=float), [[row[c] for c in columns]]])
            self.history = pd.DataFrame(values, columns=columns)
        else:
            self.history.loc[len(self.history)] = row

    def _record_failure(self, trial_id: str, hyp: dict[str, float], reason: str) -> None:
        self.strategy.tell(trial_id, hyp, None)
        self.failed += 1
        self.last_failure = f"trial {trial_id}: {reason}"
        LOGGER.warning("evolve: %s; it is not a row, a replacement will be proposed", self.last_failure)

    def get_state(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _STATE_KEYS} | {"metric": self._metric, "mode": self._mode}

    def set_state(self, state: dict[str, Any]) -> None:
        for key in _STATE_KEYS:
            setattr(self, key, state[key])
        self._metric, self._mode = state["metric"], state["mode"]
        self._best_fitness = self._best_of_history()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Restore the saved state, then re-read evolve.csv: rows written after the save still count,
        and the strategy continues from them as a resumed run would."""
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
        self._load_history()
        if self.strategy.rows_seen != self.rows:
            self._start_strategy()
