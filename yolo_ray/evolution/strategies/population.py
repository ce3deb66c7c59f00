"""Upstream YOLOv5's current (2024+) population GA, generation by generation, as pure functions plus a
Strategy that runs a generation's individuals in parallel and breeds the next once all are in.

Faithful to upstream train.py's constants and formulas, with g the generation (0-based) and G the
generations in all (here ceil(evolve.csv rows / population)):
  elite size      2 + int(3 · g / G)
  tournament size max(2, int(min(10, P) − g / (G / 10)))
  crossover rate  max(0.5, min(1, 1 − g / G)), single point in [1, n − 1]
  mutation rate   max(0.01, min(0.5, 0.5 − g / G)) per gene, a uniform ±0.1 step clamped to [low, high]
Selection is on mAP@.5 (results[2]), as upstream's code does, not on the 0.1/0.9 fitness.
Generation 0 is the base hyp plus random individuals (uniform in [low, high]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from yolo_ray.config import UserError, load_yaml, save_yaml
from yolo_ray.evolution.space import SearchSpace
from yolo_ray.evolution.strategies.base import Strategy, as_stored, searched_keys, seeded_rng

POPULATION_SIZE = 50
ELITE_SIZE = (2, 5)
TOURNAMENT_SIZE = (2, 10)
CROSSOVER_RATE = (0.5, 1.0)
MUTATION_RATE = (0.01, 0.5)
MUTATION_STEP = 0.1
SELECTION_KEY = "metrics/mAP_0.5"  # upstream's fitness_scores.append(results[2])
POPULATION_FILE = "evolve_population.yaml"  # upstream's name and layout: gen{g}number{i}: {key: value}


def ga_generations(rows: int, population: int) -> int:
    """GA generations that make `rows` evolve.csv rows (the last one may train only part of its individuals)."""
    return max(1, math.ceil(rows / population))


def elite_size(generation: int, generations: int) -> int:
    low, high = ELITE_SIZE
    return low + int((high - low) * (generation / generations))


def tournament_size(generation: int, generations: int, population: int) -> int:
    low, high = TOURNAMENT_SIZE
    return max(max(2, low), int(min(high, population) - generation / (generations / 10)))


def crossover_rate(generation: int, generations: int) -> float:
    low, high = CROSSOVER_RATE
    return max(low, min(high, high - generation / generations))


def mutation_rate(generation: int, generations: int) -> float:
    low, high = MUTATION_RATE
    return max(low, min(high, high - generation / generations))


def random_individual(low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(low, high)


def initial_population(
    base: np.ndarray, low: np.ndarray, high: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """The base individual first, then size − 1 random ones."""
    return np.stack([base, *(random_individual(low, high, rng) for _ in range(size - 1))])


def select(scores: Sequence[float], generation: int, generations: int, rng: np.random.Generator) -> list[int]:
    """Upstream's mating pool: P − elite tournament winners, then every individual whose score is among
    the elite best (ties make that more than `elite`; breeding draws from the first P entries only).

    Each tournament samples distinct individuals; the first best in draw order wins.
    """
    scores = np.asarray(scores, dtype=float)
    size = len(scores)
    k = tournament_size(generation, generations, size)
    winners = []
    for _ in range(size - elite_size(generation, generations)):
        entrants = rng.choice(size, size=k, replace=False)
        winners.append(int(entrants[int(np.argmax(scores[entrants]))]))
    best = sorted(scores.tolist())[-elite_size(generation, generations) :]
    return winners + [i for i in range(size) if scores[i] in best]


def breed(
    population: np.ndarray,
    scores: Sequence[float],
    generation: int,
    generations: int,
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Generation + 1 from generation's individuals (rows of population) and their scores."""
    size, genes = population.shape
    pool = select(scores, generation, generations, rng)
    crossover, mutation = crossover_rate(generation, generations), mutation_rate(generation, generations)
    children = []
    for _ in range(size):
        first, second = pool[int(rng.integers(size))], pool[int(rng.integers(size))]
        if rng.random() < crossover:
            point = int(rng.integers(1, genes))  # 1 .. genes − 1: both parents contribute
            child = np.concatenate([population[first][:point], population[second][point:]])
        else:
            child = population[first].copy()
        for j in range(genes):
            if rng.random() < mutation:
                child[j] = min(max(child[j] + rng.uniform(-MUTATION_STEP, MUTATION_STEP), low[j]), high[j])
        children.append(child)
    return np.stack(children)


def check_population_size(size: int) -> None:
    if size < 2:
        raise UserError(f"--population {size}: a population needs at least 2 individuals")


def check_population_space(meta: SearchSpace, size: int) -> None:
    """UserError when a population GA cannot run on this space and size at all."""
    check_population_size(size)
    enabled = searched_keys(meta, meta)
    if len(enabled) < 2:
        raise UserError(
            f"--strategy population needs at least 2 enabled keys with low < high "
            f"(single-point crossover), the search space has {len(enabled)}"
        )


class PopulationStrategy(Strategy):
    """The population GA over Tune trials: generation g's individuals are proposed one per free slot;
    when all are proposed, suggest waits (None) until every one is a row, then g + 1 is bred.

    evolve.csv rows g·P .. (g+1)·P − 1 are generation g (completion order). The generation being
    trained is also written to evolve_population.yaml (upstream's file), so a resumed run finds the
    individuals still to train; a failed individual's slot gets a new random individual.
    """

    name = "population"

    def __init__(
        self,
        base_hyp: Mapping[str, float],
        meta: SearchSpace,
        generations: int,
        seed: int | None,
        history: pd.DataFrame,
        save_dir: str | Path,
        size: int = POPULATION_SIZE,
    ):
        super().__init__(base_hyp, meta, generations, seed, history)
        self.size = int(size)
        check_population_space(meta, self.size)
        self.keys = searched_keys(base_hyp, meta)  # upstream's gene order: the hyp's
        self.low = np.array([meta[k][1] for k in self.keys])
        self.high = np.array([meta[k][2] for k in self.keys])
        self.total = ga_generations(self.generations, self.size)
        self.file = Path(save_dir) / POPULATION_FILE
        self.live: dict[str, int] = {}  # trial_id -> slot
        self._start(history)

    def _start(self, history: pd.DataFrame) -> None:
        rows = len(history)
        self.generation = rows // self.size
        done = history.iloc[self.generation * self.size :]
        population = self._saved_population()
        if population is None:
            if self.generation == 0:
                base = np.array([self.base_hyp[k] for k in self.keys]).clip(self.low, self.high)
                population = initial_population(base, self.low, self.high, self.size, self._rng())
            else:
                previous = history.iloc[(self.generation - 1) * self.size : self.generation * self.size]
                population = breed(
                    self._genes(previous),
                    previous[SELECTION_KEY].to_numpy(dtype=float),
                    self.generation - 1,
                    self.total,
                    self.low,
                    self.high,
                    self._rng(),
                )
        self._set_population(population)
        self._adopt_rows(done)

    def _rng(self) -> np.random.Generator:
        return seeded_rng(self.seed, self.generation)

    def _genes(self, rows: pd.DataFrame) -> np.ndarray:
        return np.stack(
            [[float(row[k]) if k in row else self.base_hyp[k] for k in self.keys] for _, row in rows.iterrows()]
        )

    def _set_population(self, population: np.ndarray) -> None:
        self.population = np.vectorize(as_stored)(population).astype(float)
        self.scores: list[float | None] = [None] * self.size
        self.queue = list(range(self.size))
        save_yaml(
            self.file,
            {
                f"gen{self.generation}number{i}": dict(zip(self.keys, map(float, ind)))
                for i, ind in enumerate(self.population)
            },
        )

    def _saved_population(self) -> np.ndarray | None:
        """The generation in evolve_population.yaml when it is the one evolve.csv has reached; None when
        the file holds another generation, population size or search space (then evolve.csv decides)."""
        if not self.file.is_file():
            return None
        prefix = f"gen{self.generation}number"
        individuals = {
            int(str(k)[len(prefix) :]): v
            for k, v in load_yaml(self.file).items()
            if str(k).startswith(prefix) and str(k)[len(prefix) :].isdigit()
        }
        if sorted(individuals) != list(range(self.size)):
            return None
        try:
            return np.array([[float(individuals[i][k]) for k in self.keys] for i in range(self.size)])
        except (KeyError, TypeError, ValueError):
            return None

    def _adopt_rows(self, rows: pd.DataFrame) -> None:
        """Rows of the current generation fill the slots they match; one that matches none (a file from
        before a crash mid-breeding) takes a free slot as it is: it was trained, so it belongs."""
        if rows.empty:
            return
        for genes, score in zip(self._genes(rows), rows[SELECTION_KEY].to_numpy(dtype=float)):
            free = [i for i in self.queue if np.allclose(self.population[i], genes, rtol=1e-6, atol=1e-12)]
            slot = free[0] if free else self.queue[-1]
            self.population[slot] = genes
            self.queue.remove(slot)
            self.scores[slot] = float(score)

    def propose(self, trial_id: str, history: pd.DataFrame) -> dict[str, float] | None:
        if not self.queue and all(s is not None for s in self.scores):
            self._breed_next()
        if not self.queue:
            return None  # the generation barrier: the rest of this generation is still training
        slot = self.queue.pop(0)
        self.live[trial_id] = slot
        return self.hyp_of(self.population[slot])

    def hyp_of(self, genes: np.ndarray) -> dict[str, float]:
        return {**self.base_hyp, **dict(zip(self.keys, map(float, genes)))}

    def _breed_next(self) -> None:
        scores = np.array(self.scores, dtype=float)
        rng = seeded_rng(self.seed, self.generation + 1)
        children = breed(self.population, scores, self.generation, self.total, self.low, self.high, rng)
        self.generation += 1
        self._set_population(children)

    def tell(self, trial_id: str, hyp: Mapping[str, float], results: Mapping[str, float] | None) -> None:
        super().tell(trial_id, hyp, results)
        slot = self.live.pop(trial_id, None)
        if slot is None:
            return
        if results is not None:
            self.scores[slot] = float(results[SELECTION_KEY])
            return
        # No row from this individual: a new random one takes its slot, so the generation can complete.
        rng = seeded_rng(self.seed, self.generation, slot, self.rows_seen)
        self.population[slot] = np.vectorize(as_stored)(random_individual(self.low, self.high, rng))
        self.queue.append(slot)

    def describe(self) -> str:
        return f"GA generation {min(self.generation + 1, self.total)} of {self.total}, population {self.size}"
