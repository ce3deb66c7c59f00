"""TPE and CMA-ES through Optuna's ask/tell interface (optional: `pip install 'yolo_ray[optuna]'`).

Each key with gain > 0 is a uniform float in [low, high]; the others keep the base value. Optuna
maximises fitness (0.1·mAP@.5 + 0.9·mAP@.5:.95). Rows already in evolve.csv are told to the study
first, so a resumed run continues from everything learned; a fresh run's first trial is the base hyp.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from yolo_ray.config import UserError
from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS
from yolo_ray.evolution.strategies.classic import constrain
from yolo_ray.evolution.space import SearchSpace
from yolo_ray.evolution.strategies.base import Strategy, result_vector, searched_keys
from yolo_ray.scores import fitness

# What each strategy imports: CMA-ES in Optuna needs the separate `cmaes` package.
REQUIRED_MODULES = {"tpe": ("optuna",), "cmaes": ("optuna", "cmaes")}


def require_optuna(strategy: str) -> None:
    """UserError naming the install command when a module the strategy needs cannot be imported."""
    for module in REQUIRED_MODULES[strategy]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError(
                f"--strategy {strategy} needs the '{module}' package, which is not installed: "
                "pip install 'yolo_ray[optuna]'"
            ) from None


def _sampler(strategy: str, seed: int | None) -> Any:
    import optuna

    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed)


class OptunaStrategy(Strategy):
    """An Optuna study driven by ask/tell: one Optuna trial per Tune trial, told its fitness or FAIL."""

    def __init__(
        self,
        base_hyp: Mapping[str, float],
        meta: SearchSpace,
        generations: int,
        seed: int | None,
        history: pd.DataFrame,
        strategy: str = "tpe",
    ):
        super().__init__(base_hyp, meta, generations, seed, history)
        require_optuna(strategy)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial otherwise
        self.name = strategy
        self.keys = searched_keys(self.base_hyp, self.meta)
        self.distributions = {k: optuna.distributions.FloatDistribution(meta[k][1], meta[k][2]) for k in self.keys}
        start = self._clipped(self.base_hyp)
        # The row count in the seed: a resumed seeded run does not replay the first run's draws.
        sampler_seed = None if seed is None else int(np.random.SeedSequence([seed, len(history)]).generate_state(1)[0])
        self.study = optuna.create_study(direction="maximize", sampler=_sampler(strategy, sampler_seed))
        self.study.add_trials([self._past_trial(row) for _, row in history.iterrows()])
        if history.empty:
            self.study.enqueue_trial(start)
        self.live: dict[str, Any] = {}  # trial_id -> optuna Trial

    def _clipped(self, values: Mapping[str, float]) -> dict[str, float]:
        out = {}
        for key in self.keys:
            value = float(values[key]) if key in values else self.base_hyp[key]
            out[key] = min(max(value, self.meta[key][1]), self.meta[key][2])
        return out

    def _past_trial(self, row: pd.Series) -> Any:
        import optuna

        score = float(fitness(row[list(EVOLVE_RESULT_KEYS)].to_numpy(dtype=float)[None])[0])
        if not np.isfinite(score):
            return optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL)
        return optuna.trial.create_trial(params=self._clipped(row), distributions=self.distributions, value=score)

    def propose(self, trial_id: str, history: pd.DataFrame) -> dict[str, float]:
        trial = self.study.ask(self.distributions)
        self.live[trial_id] = trial
        return constrain({**self.base_hyp, **trial.params}, self.meta)

    def tell(self, trial_id: str, hyp: Mapping[str, float], results: Mapping[str, float] | None) -> None:
        import optuna

        super().tell(trial_id, hyp, results)
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        if results is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, float(fitness(result_vector(results)[None])[0]))
