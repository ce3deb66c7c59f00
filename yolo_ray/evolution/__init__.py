"""Hyperparameter evolution: search spaces, YOLOv5's genetic mutation, evolve.csv and its plots."""

import importlib
from typing import Any

# name -> module, imported on first use: evolve.py's --help needs none of pandas, torch or matplotlib
_EXPORTS = {
    **dict.fromkeys(
        ("EVOLVE_RESULT_KEYS", "BestRow", "append_row", "best_row", "read_history", "write_hyp_evolve"),
        "yolo_ray.evolution.evolve_csv",
    ),
    **dict.fromkeys(
        ("constrain", "mutate", "mutation_factors", "prepare_evolution", "propose", "select_parent"),
        "yolo_ray.evolution.strategies.classic",
    ),
    "plot_evolve": "yolo_ray.evolution.plots",
    **dict.fromkeys(("DEFAULT_SEARCH_SPACE", "SEARCH_SPACE_DIR", "load_search_space"), "yolo_ray.evolution.space"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'yolo_ray.evolution' has no attribute {name!r}")
