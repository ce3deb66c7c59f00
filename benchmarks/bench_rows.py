"""The evolution driver's own cost per row, without Ray: the searcher's propose and append plus the
progress hook (progress line, hyp_evolve.yaml, evolve.png), as Tune's loop calls them after each trial.

    python benchmarks/bench_rows.py                       # this checkout, 300 rows
    python benchmarks/bench_rows.py --repo /path/to/older # another checkout of yolo_ray, for before/after

Prints the milliseconds per row spent in those hooks (CPU time of the calling thread, which a busy
machine disturbs less than wall time) and the final refresh's seconds (the last hyp_evolve.yaml and
evolve.png, after the Tune run). Tune's own overhead per trial is `bench_evolve.py --stub`.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--repo", default=str(REPO), help="the yolo_ray checkout to measure")
    opt = parser.parse_args()
    sys.path.insert(0, opt.repo)
    import importlib

    import numpy as np

    from yolo_ray.config import load_hyp

    # the package was yolo_ray.evolve in older checkouts
    package = "yolo_ray.evolution" if (Path(opt.repo) / "yolo_ray" / "evolution").is_dir() else "yolo_ray.evolve"
    evolution = importlib.import_module(package)
    EVOLVE_RESULT_KEYS, load_search_space = evolution.EVOLVE_RESULT_KEYS, evolution.load_search_space
    EvolveProgress = importlib.import_module(f"{package}.progress").EvolveProgress
    searcher_module = importlib.import_module(f"{package}.searcher")
    COMPLETE_KEY, EvolveSearcher = searcher_module.COMPLETE_KEY, searcher_module.EvolveSearcher

    logging.disable(logging.INFO)  # the per-row progress lines would flood the output
    with tempfile.TemporaryDirectory(prefix="bench_rows_") as tmp:
        workdir = Path(tmp)
        searcher = EvolveSearcher(
            workdir / "evolve.csv", {**load_hyp(), "anchors": 3.0}, load_search_space(), opt.rows, seed=0
        )
        in_memory = "history" in inspect.signature(EvolveProgress).parameters  # older checkouts re-read the CSV
        progress = EvolveProgress(
            workdir,
            opt.rows,
            0,
            detail=searcher.strategy.describe,
            **({"history": lambda: searcher.history} if in_memory else {}),
        )
        searcher.on_row = progress
        rng = np.random.default_rng(0)
        t0 = time.thread_time()  # the loop's own thread: a plot drawn on another thread does not stall it
        for i in range(opt.rows):
            searcher.suggest(str(i))
            m = float(rng.random())
            searcher.on_trial_complete(
                str(i), {**dict(zip(EVOLVE_RESULT_KEYS, [0.5, 0.5, m, m, 0.05, 0.05, 0.05])), COMPLETE_KEY: True}
            )
        hooks = time.thread_time() - t0
        t0 = time.perf_counter()
        progress.refresh(plot=True)
        final = time.perf_counter() - t0
    print(
        f"{opt.repo}: {opt.rows} rows, {1000 * hooks / opt.rows:.1f} ms CPU per row in the hooks, "
        f"final refresh {final:.1f} s"
    )


if __name__ == "__main__":
    main()
