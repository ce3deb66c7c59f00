"""Random search, the baseline every other strategy has to beat: each key with gain > 0 drawn
uniformly in [low, high], independently per trial; the others keep the base value (clamped)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from yolo_ray.evolution.strategies.classic import constrain
from yolo_ray.evolution.space import SearchSpace
from yolo_ray.evolution.strategies.base import Strategy, searched_keys, seeded_rng


def random_hyp(base_hyp: Mapping[str, float], meta: SearchSpace, rng: np.random.Generator) -> dict[str, float]:
    """One uniform draw per searched key, in hyp order; clamped and rounded like every proposal."""
    keys = searched_keys(base_hyp, meta)
    values = rng.uniform([meta[k][1] for k in keys], [meta[k][2] for k in keys])
    return constrain({**base_hyp, **dict(zip(keys, map(float, values)))}, meta)


class RandomStrategy(Strategy):
    name = "random"

    def __init__(
        self,
        base_hyp: Mapping[str, float],
        meta: SearchSpace,
        generations: int,
        seed: int | None,
        history: pd.DataFrame,
    ):
        super().__init__(base_hyp, meta, generations, seed, history)
        self.rng = seeded_rng(seed, len(history))

    def propose(self, trial_id: str, history: pd.DataFrame) -> dict[str, float]:
        return random_hyp(self.base_hyp, self.meta, self.rng)
