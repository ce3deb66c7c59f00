"""Hyperparameter evolution: search spaces, YOLOv5's genetic mutation, evolve.csv and its plots."""

from yolo_ray.evolve.evolve_csv import EVOLVE_RESULT_KEYS, BestRow, append_row, best_row, read_history, write_hyp_evolve
from yolo_ray.evolve.ga import constrain, mutate, mutation_factors, prepare_evolution, propose, select_parent
from yolo_ray.evolve.plots import plot_evolve
from yolo_ray.evolve.space import DEFAULT_SEARCH_SPACE, SEARCH_SPACE_DIR, load_search_space
