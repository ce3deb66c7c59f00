"""What every search strategy offers the Tune searcher: propose a hyp, be told how it did.

Strategies are Ray-free and own nothing on disk except their own extras (the population GA's
evolve_population.yaml); EvolveSearcher owns evolve.csv, the trials in flight, failures and stopping.
A strategy is built from the evolve.csv rows already there, so a resumed run continues it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np
import pandas as pd

from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS
from yolo_ray.evolution.space import SearchSpace

SIGNIFICANT_DIGITS = 5  # evolve.csv holds %.5g: values kept at that precision read back unchanged


def as_stored(value: float) -> float:
    """A value as evolve.csv stores it, so a resumed run sees exactly what the first run proposed."""
    return float(f"{float(value):.{SIGNIFICANT_DIGITS}g}")


def searched_keys(base_hyp: Mapping[str, float], meta: SearchSpace) -> list[str]:
    """The keys a strategy moves, in hyp order: first entry (gain, enabled) > 0 and a non-empty range."""
    return [k for k in base_hyp if k in meta and meta[k][0] > 0 and meta[k][1] < meta[k][2]]


def seeded_rng(seed: int | None, *salt: int) -> np.random.Generator:
    """Fresh entropy without a seed; with one, the salt (e.g. rows already in evolve.csv) keeps a resumed
    run from replaying the first run's draws while staying reproducible."""
    return np.random.default_rng(None if seed is None else [seed, *salt])


class Strategy(ABC):
    """Proposes hyps for trials and learns from their results.

    base_hyp / meta: as prepare_evolution returns them. generations: evolve.csv rows the run aims for.
    history: the rows already in evolve.csv (read_history's frame).
    """

    name = ""

    def __init__(
        self,
        base_hyp: Mapping[str, float],
        meta: SearchSpace,
        generations: int,
        seed: int | None,
        history: pd.DataFrame,
    ):
        self.base_hyp = dict(base_hyp)
        self.meta = dict(meta)
        self.generations = int(generations)
        self.seed = seed
        self.rows_seen = len(history)

    @abstractmethod
    def propose(self, trial_id: str, history: pd.DataFrame) -> dict[str, float] | None:
        """The full hyp for trial_id, or None to make Tune wait (e.g. a generation barrier)."""

    def tell(self, trial_id: str, hyp: Mapping[str, float], results: Mapping[str, float] | None) -> None:
        """A proposed trial ended: results are its 7 evolve.csv values, None when it is no row (failed)."""
        if results is not None:
            self.rows_seen += 1

    def describe(self) -> str:
        """Strategy-specific progress, e.g. the GA generation; '' when there is nothing to add."""
        return ""


def result_vector(results: Mapping[str, float]) -> np.ndarray:
    return np.array([float(results[k]) for k in EVOLVE_RESULT_KEYS])
