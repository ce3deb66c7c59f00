"""Which --strategy finds better hyps for the same number of real trainings?

    python benchmarks/bench_search.py                       # the README's setting: 3 epochs at 160 px, 8 trials
    python benchmarks/bench_search.py --trials 40 --seeds 3 --epochs 10 --imgsz 320 --data coco128.yaml --concurrency 4

On the built-in data without --cfg/--weights, trials start from the shipped checkpoint, as evolve.py's do.

First the noise: the base hyp trained with --noise-seeds seeds (fitness mean ± std). Then each
strategy runs --trials trainings with each of --seeds seeds (a run's --seed drives its search and its
trainings): best fitness after n trials (mean ± std over seeds), trials until the best reaches the
base hyp's mean fitness, wall time. A best-of-n is the maximum of n noisy trainings, so it sits above
the base mean even when the search learns nothing: random search is the reference to beat.
Prints a markdown table and writes
search_quality.png (best-so-far fitness against trials, mean and ±std band per strategy) and
search_quality.json under --out. One local Ray cluster for everything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.cli import OneLineParser, check_minimums, run_script  # noqa: E402
from yolo_ray.evolution import EVOLVE_RESULT_KEYS, read_history  # noqa: E402
from yolo_ray.evolution.strategies import STRATEGIES  # noqa: E402
from yolo_ray.scores import fitness  # noqa: E402
from yolo_ray.paths import check_project  # noqa: E402


def row_fitness(csv_path: Path) -> np.ndarray:
    """Fitness of every evolve.csv row, in completion order."""
    history = read_history(csv_path)
    return np.asarray(fitness(history[list(EVOLVE_RESULT_KEYS)].to_numpy(dtype=float)), dtype=float)


def evolve(args: argparse.Namespace, name: str, **options) -> tuple[np.ndarray, float]:
    """One evolution run with the benchmark's training settings; its row fitness and wall seconds."""
    from yolo_ray.evolution.driver import run_evolution

    opt = evolve_options(args, name, **options)
    start = time.time()
    summary = run_evolution(opt)
    if summary.status != "finished":
        raise SystemExit(f"{name}: {summary.message}")
    return row_fitness(summary.save_dir / "evolve.csv"), time.time() - start


def evolve_options(args: argparse.Namespace, name: str, **options) -> dict:
    """evolve.py's options of one run with the benchmark's training settings."""
    return {
        "cfg": args.cfg,
        "weights": args.weights,
        "data": args.data,
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch_size": args.batch_size,
        "workers": 0,
        "concurrency": args.concurrency,
        "population": args.population,
        "project": str(args.out),
        "name": name,
        **options,
    }


def measure_noise(args: argparse.Namespace) -> np.ndarray:
    """The base hyp trained once per training seed (classic's first proposal is the base, unmutated)."""
    scores = []
    for seed in range(args.noise_seeds):
        # --seed is both the GA's and the training seed; one row means the GA never draws.
        rows, _ = evolve(args, f"noise-seed{seed}", strategy="classic", generations=1, seed=seed)
        scores.append(float(rows[0]))
        print(f"noise: training seed {seed}: base hyp fitness {rows[0]:.5f}", flush=True)
    return np.array(scores)


def trials_to_reach(best_so_far: np.ndarray, target: float) -> int | None:
    reached = np.flatnonzero(best_so_far >= target)
    return int(reached[0]) + 1 if reached.size else None


def plot(curves: dict[str, np.ndarray], noise: np.ndarray, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=150, layout="tight")
    ax = fig.add_subplot()
    for strategy, runs in curves.items():
        x = np.arange(1, runs.shape[1] + 1)
        mean, std = runs.mean(0), runs.std(0)
        ax.plot(x, mean, label=strategy)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.axhspan(
        noise.mean() - noise.std(),
        noise.mean() + noise.std(),
        color="grey",
        alpha=0.25,
        label="base hyp, mean ± std over training seeds",
    )
    ax.set_xlabel("trials (evolve.csv rows)")
    ax.set_ylabel("best fitness so far")
    ax.legend(fontsize=8)
    FigureCanvasAgg(fig)
    fig.savefig(path)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--trials", type=int, default=8, help="evolve.csv rows per run (equal for every strategy)")
    p.add_argument("--seeds", type=int, default=2, help="search seeds per strategy")
    p.add_argument("--noise-seeds", type=int, default=5, help="training seeds for the base hyp's noise")
    p.add_argument("--population", type=int, default=4, help="--population of the population GA")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cfg", default=None, help="model yaml (default: as evolve.py; yolov5n from scratch on user data)")
    p.add_argument(
        "--weights",
        default=None,
        help="starting weights (default: as evolve.py; the shipped yolov5n checkpoint on the built-in data)",
    )
    p.add_argument("--data", default=None, help="dataset yaml (default: the built-in synthetic data)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    p.add_argument("--out", default="runs/bench_search", help="folder of the runs, plot and json")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Every option and input, as evolve.py checks its own, before --out or a Ray cluster exists."""
    from yolo_ray.evolution.run_options import resolve_options
    from yolo_ray.evolution.strategies import check_strategy_options

    check_minimums(1, trials=args.trials, seeds=args.seeds, noise_seeds=args.noise_seeds)
    if args.cpus is not None:
        check_minimums(1, cpus=args.cpus)
    args.out = check_project(args.out, "noise-seed0", option="--out")
    opt = resolve_options(evolve_options(args, "noise-seed0", strategy="classic", generations=1, seed=0))
    for strategy in args.strategies:
        check_strategy_options({**opt, "strategy": strategy, "search_space": None})


def main(argv: list[str] | None = None) -> int:
    return run_script(lambda: bench(argv))


def bench(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    args.out.mkdir(parents=True, exist_ok=True)

    import ray

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        noise = measure_noise(args)
        curves, table = {}, []
        for strategy in args.strategies:
            runs, walls, reach = [], [], []
            for seed in range(args.seeds):
                rows, wall = evolve(
                    args, f"{strategy}-seed{seed}", strategy=strategy, generations=args.trials, seed=1000 + seed
                )
                best = np.maximum.accumulate(np.nan_to_num(rows, nan=-np.inf))
                runs.append(best)
                walls.append(wall)
                reach.append(trials_to_reach(best, noise.mean()))
            curves[strategy] = np.stack(runs)
            final = curves[strategy][:, -1]
            table.append(
                {
                    "strategy": strategy,
                    "best_mean": float(final.mean()),
                    "best_std": float(final.std()),
                    "trials_to_base": reach,
                    "wall_s": float(np.mean(walls)),
                }
            )
    finally:
        ray.shutdown()

    plot(curves, noise, args.out / "search_quality.png")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "search_quality.json").write_text(
        json.dumps(
            {
                "settings": settings,
                "noise": noise.tolist(),
                "strategies": table,
                "curves": {k: v.tolist() for k, v in curves.items()},
            },
            indent=1,
        )
    )
    report(noise, table, args)
    return 0


def report(noise: np.ndarray, table: list[dict], args: argparse.Namespace) -> None:
    band = noise.std()
    model = args.weights or args.cfg or ("the built-in yolov5n checkpoint" if not args.data else "yolov5n.yaml")
    print(
        f"\nsettings: {model}, {args.epochs} epoch(s) at {args.imgsz} px, batch {args.batch_size}, "
        f"{args.trials} trials x {args.seeds} search seeds per strategy, concurrency {args.concurrency}, "
        f"data {args.data or 'built-in synthetic'}"
    )
    print(f"noise: base hyp fitness {noise.mean():.5f} ± {band:.5f} over {len(noise)} training seeds\n")
    print(
        f"| strategy | best fitness after {args.trials} trials (mean ± std) | trials to reach the base mean "
        "| wall per run | vs noise |"
    )
    print("|---|---|---|---|---|")
    for row in table:
        reach = ", ".join("—" if r is None else str(r) for r in row["trials_to_base"])
        gap = row["best_mean"] - noise.mean()
        verdict = "within noise" if abs(gap) <= 2 * band else ("above" if gap > 0 else "below")
        print(
            f"| {row['strategy']} | {row['best_mean']:.5f} ± {row['best_std']:.5f} | {reach} | "
            f"{row['wall_s']:.0f} s | {verdict} (2σ = {2 * band:.5f}) |"
        )
    print(f"\nplot: {args.out / 'search_quality.png'}")


if __name__ == "__main__":
    sys.exit(main())
