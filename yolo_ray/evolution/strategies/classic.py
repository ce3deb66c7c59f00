"""YOLOv5's classic (v6/v7) genetic mutation as pure functions: no Ray, no files, a numpy Generator.

A proposal picks a parent among the 5 fittest rows of the history (one row drawn with fitness-weighted
probability, or the fitness-weighted average of those rows), multiplies each evolved value by a random
factor, then clamps every search-space key to its limits and rounds it to 5 decimals.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from yolo_ray.config import UserError
from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS
from yolo_ray.evolution.space import SearchSpace
from yolo_ray.evolution.strategies.base import Strategy, seeded_rng
from yolo_ray.scores import fitness

MUTATION_PROBABILITY = 0.8
MUTATION_SIGMA = 0.2
FACTOR_MIN, FACTOR_MAX = 0.3, 3.0
TOP_PARENTS = 5
DECIMALS = 5
DEFAULT_ANCHORS = 3.0  # upstream evolves the anchor count from 3 when the hyp file has none
PARENT_METHODS = ("single", "weighted")


def prepare_evolution(
    base_hyp: Mapping[str, float], meta: SearchSpace, noautoanchor: bool = False
) -> tuple[dict[str, float], SearchSpace]:
    """The hyp and search space evolution works on: `anchors` added to the hyp when absent, and
    dropped from both with noautoanchor (anchors would be recomputed, so evolving them is moot)."""
    hyp = {k: float(v) for k, v in base_hyp.items()}
    meta = dict(meta)
    hyp.setdefault("anchors", DEFAULT_ANCHORS)
    if noautoanchor:
        hyp.pop("anchors")
        meta.pop("anchors", None)
    missing = [k for k in meta if k not in hyp]
    if missing:
        raise UserError(f"search space keys missing from the hyp: {', '.join(missing)}")
    return hyp, meta


def constrain(hyp: Mapping[str, float], meta: SearchSpace) -> dict[str, float]:
    """Every search-space key clamped to [low, high] and rounded to 5 decimals; other keys untouched."""
    out = dict(hyp)
    for key, (_, low, high) in meta.items():
        if key in out:
            out[key] = round(min(max(float(out[key]), low), high), DECIMALS)
    return out


def mutation_factors(gains: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-key factors 1 + gain·[u < 0.8]·N(0,1)·U(0,1)·0.2, clipped to [0.3, 3.0], with one U(0,1)
    shared by all keys; drawn again until some factor differs from 1 (no duplicate of the parent)."""
    gains = np.asarray(gains, dtype=float)
    if not (gains > 0).any():
        raise ValueError("no search-space key has a gain > 0: a mutation could never change anything")
    n = len(gains)
    factors = np.ones(n)
    while np.all(factors == 1):
        mutated = rng.random(n) < MUTATION_PROBABILITY
        factors = gains * mutated * rng.standard_normal(n) * rng.random() * MUTATION_SIGMA + 1
        factors = factors.clip(FACTOR_MIN, FACTOR_MAX)
    return factors


def mutate(
    parent: Mapping[str, float], base_hyp: Mapping[str, float], meta: SearchSpace, rng: np.random.Generator
) -> dict[str, float]:
    """A child of `parent` (a hyp dict or a history row; evolved keys it lacks come from the base hyp).

    Keys outside the search space keep the base value. Factors are drawn in the hyp's key order, as
    upstream v6/v7 does.
    """
    keys = [k for k in base_hyp if k in meta]
    factors = mutation_factors(np.array([meta[k][0] for k in keys]), rng)
    child = {k: float(v) for k, v in base_hyp.items()}
    for key, factor in zip(keys, factors):
        start = parent[key] if key in parent else base_hyp[key]
        child[key] = float(start) * float(factor)
    return constrain(child, meta)


def top_rows(history: pd.DataFrame, n: int = TOP_PARENTS) -> tuple[pd.DataFrame, np.ndarray]:
    """The n fittest rows with a finite fitness, fittest first (stable on ties), and their fitness."""
    if history.empty:
        return history, np.zeros(0)
    missing = [k for k in EVOLVE_RESULT_KEYS if k not in history.columns]
    if missing:
        raise ValueError(f"history lacks the result columns {', '.join(missing)}")
    scores = np.asarray(fitness(history[list(EVOLVE_RESULT_KEYS)].to_numpy(dtype=float)), dtype=float)
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.argsort(-scores[finite], kind="stable")][:n]
    return history.iloc[order], scores[order]


def _check_parent_method(parent: str) -> None:
    if parent not in PARENT_METHODS:
        raise UserError(f"parent must be one of {', '.join(PARENT_METHODS)}, got {parent!r}")


def _combine(top: pd.DataFrame, scores: np.ndarray, rng: np.random.Generator, parent: str) -> dict[str, float]:
    weights = scores - scores.min() + 1e-6
    if parent == "single" or len(top) == 1:
        row = top.iloc[rng.choice(len(top), p=weights / weights.sum())]
        return {str(k): float(v) for k, v in row.items()}
    average = (top.to_numpy(dtype=float) * weights[:, None]).sum(0) / weights.sum()
    return {str(k): float(v) for k, v in zip(top.columns, average)}


def select_parent(history: pd.DataFrame, rng: np.random.Generator, parent: str = "single") -> dict[str, float]:
    """Upstream's parent: among the top min(5, n) rows, weights fitness - min + 1e-6; 'single' draws
    one row with those weights, 'weighted' averages the rows with them. history must not be empty."""
    _check_parent_method(parent)
    top, scores = top_rows(history)
    if top.empty:
        raise ValueError("select_parent needs at least one history row with a finite fitness")
    return _combine(top, scores, rng, parent)


def propose(
    history: pd.DataFrame,
    base_hyp: Mapping[str, float],
    meta: SearchSpace,
    rng: np.random.Generator,
    parent: str = "single",
) -> dict[str, float]:
    """The next hyp to train: the constrained base hyp while no result is in, else a mutated parent.

    history: rows as read_history returns them (7 result columns, then hyp columns by name, in any
    order). base_hyp and meta as prepare_evolution returns them.
    """
    _check_parent_method(parent)
    top, scores = top_rows(history)
    if top.empty:
        return constrain(base_hyp, meta)
    return mutate(_combine(top, scores, rng, parent), base_hyp, meta, rng)


class ClassicStrategy(Strategy):
    """Upstream v6/v7's asynchronous GA: the base hyp first, then a mutation of the best rows per trial.

    While the base is in flight and nothing has finished, trials explore around the base rather than
    repeat it.
    """

    name = "classic"

    def __init__(
        self,
        base_hyp: Mapping[str, float],
        meta: SearchSpace,
        generations: int,
        seed: int | None,
        history: pd.DataFrame,
        parent: str = "single",
    ):
        super().__init__(base_hyp, meta, generations, seed, history)
        _check_parent_method(parent)
        self.parent = parent
        self.base_proposed = False
        self.rng = seeded_rng(seed, len(history))

    def propose(self, trial_id: str, history: pd.DataFrame) -> dict[str, float]:
        if not top_rows(history)[0].empty:
            return propose(history, self.base_hyp, self.meta, self.rng, self.parent)
        if not self.base_proposed:
            self.base_proposed = True
            return constrain(self.base_hyp, self.meta)
        return mutate(self.base_hyp, self.base_hyp, self.meta, self.rng)
