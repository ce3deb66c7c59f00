"""The search strategies, one module each (base: the Strategy class they share), and their registry:
--strategy's names, each one's search-space format, its option checks and its constructor."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolo_ray.config import UserError
from yolo_ray.console import LOGGER
from yolo_ray.evolution.space import DEFAULT_SEARCH_SPACE, SearchSpace, load_search_space
from yolo_ray.options import STRATEGIES, EvolveConfig

if TYPE_CHECKING:  # the registry loads without pandas
    import pandas as pd

    from yolo_ray.evolution.strategies.base import Strategy

DEFAULT_STRATEGY = "classic"
POPULATION_SEARCH_SPACE = "yolov5_population"


def default_search_space(strategy: str) -> str:
    return POPULATION_SEARCH_SPACE if strategy == "population" else DEFAULT_SEARCH_SPACE


def load_strategy_space(strategy: str, name_or_path: str | Path) -> SearchSpace:
    """The search space in the format the strategy takes ([enabled, ...] for population, else [gain, ...])."""
    return load_search_space(name_or_path, enabled_flags=strategy == "population")


def check_strategy_options(opt: dict[str, Any]) -> None:
    """Validate --strategy and its companions (fills the strategy's default search space); UserError on bad input.

    opt: the evolution options (flat, options.EvolveConfig's); checked before any run directory exists.
    """
    from yolo_ray.evolution.strategies.optuna_search import REQUIRED_MODULES, require_optuna
    from yolo_ray.evolution.strategies.population import check_population_size, check_population_space
    from yolo_ray.evolution.stopping import parse_duration

    strategy = opt["strategy"]
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
    check_population_size(int(opt["population"]))
    _warn_unused_companions(opt)
    if opt["time_budget"] is not None:
        parse_duration(opt["time_budget"])
    if strategy == "population" and opt["early_stop"]:
        raise UserError(
            "--early-stop cannot be used with --strategy population: a generation is bred only "
            "from the fitness of every one of its individuals"
        )
    if strategy in REQUIRED_MODULES:
        require_optuna(strategy)
    opt["search_space"] = opt["search_space"] or default_search_space(strategy)
    meta = load_strategy_space(strategy, opt["search_space"])
    if strategy == "population":
        check_population_space(meta, int(opt["population"]))


# Options only one strategy reads, and that strategy
STRATEGY_COMPANIONS = {"population": "population", "parent": "classic"}


def _warn_unused_companions(opt: dict[str, Any]) -> None:
    defaults = EvolveConfig().to_dict()
    for key, reader in STRATEGY_COMPANIONS.items():
        if opt[key] != defaults[key] and opt["strategy"] != reader:
            LOGGER.warning(
                f"WARNING: --{key} {opt[key]} has no effect with --strategy {opt['strategy']} "
                f"(only --strategy {reader} reads it)"
            )


def make_strategy(
    strategy: str,
    base_hyp: Mapping[str, float],
    meta: SearchSpace,
    generations: int,
    seed: int | None,
    history: pd.DataFrame,
    *,
    save_dir: str | Path,
    parent: str = "single",
    population: int = 50,
) -> Strategy:
    """The strategy object, continued from the evolve.csv rows in history."""
    if strategy == "classic":
        from yolo_ray.evolution.strategies.classic import ClassicStrategy

        return ClassicStrategy(base_hyp, meta, generations, seed, history, parent=parent)
    if strategy == "population":
        from yolo_ray.evolution.strategies.population import PopulationStrategy

        return PopulationStrategy(base_hyp, meta, generations, seed, history, save_dir, size=population)
    if strategy == "random":
        from yolo_ray.evolution.strategies.random_search import RandomStrategy

        return RandomStrategy(base_hyp, meta, generations, seed, history)
    if strategy in ("tpe", "cmaes"):
        from yolo_ray.evolution.strategies.optuna_search import OptunaStrategy

        return OptunaStrategy(base_hyp, meta, generations, seed, history, strategy=strategy)
    raise UserError(f"--strategy {strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
