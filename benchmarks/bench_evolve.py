"""Evolution throughput: Tune overhead per trial, searcher latency at scale, real trials per hour.

    python benchmarks/bench_evolve.py --stub                  # (a) 300 stub generations at concurrency 8
    python benchmarks/bench_evolve.py --stub --nodes 4 --node-cpus 16 --node-gpus 4 --gpus-per-trial 0.25 \
        --concurrency 64 --generations 3000                   # (a) at scale, on a cluster of logical resources
    python benchmarks/bench_evolve.py --searcher              # (b) propose + append with 10,000 rows
    python benchmarks/bench_evolve.py --real --generations 6  # (c) real 1-epoch trials (synthetic or --data)

Each mode starts its own local Ray cluster (except --searcher, which needs none) and writes under a
temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.config import load_hyp  # noqa: E402
from yolo_ray.evolution import EVOLVE_RESULT_KEYS, load_search_space  # noqa: E402
from yolo_ray.evolution.searcher import COMPLETE_KEY  # noqa: E402


def stub_trainable(config: dict, train_config: dict) -> None:
    """Fitness a cheap function of the hyp, reported at once: all that remains is Tune's overhead."""
    from ray import tune

    h = config["hyp"]
    f = 1.0 / (1.0 + abs(h["lr0"] - 0.02) * 10 + abs(h["momentum"] - 0.9) + abs(h["mosaic"] - 0.5))
    tune.report({**dict(zip(EVOLVE_RESULT_KEYS, [f, f, f, f, 0.1, 0.1, 0.1])), "fitness": f, COMPLETE_KEY: True})


def stub_data_yaml(root: Path) -> Path:
    """The smallest dataset that passes the driver's checks; stub trials never read it."""
    from yolo_ray.data.synthetic import make_dataset

    return make_dataset(root, n_train=2, n_val=1, size=32)


def start_cluster(args: argparse.Namespace):
    """A local cluster: one node of --concurrency CPUs, or with --nodes a CPU-less head plus that many
    nodes declaring --node-cpus / --node-gpus logical resources (no real GPUs needed: stub trials)."""
    import ray

    if not args.nodes:
        ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False)
        return None
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=args.node_cpus, num_gpus=args.node_gpus)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster


def bench_stub(args: argparse.Namespace, generations: int, workdir: Path) -> float:
    import psutil
    import ray

    from yolo_ray.evolution.driver import run_evolution

    cluster = start_cluster(args)
    driver = psutil.Process()
    cpu0 = driver.cpu_times()
    try:
        t0 = time.time()
        summary = run_evolution(
            {
                "generations": generations,
                "concurrency": args.concurrency,
                "seed": 0,
                "gpus_per_trial": args.gpus_per_trial,
                "project": str(workdir / "runs"),
                "data": str(stub_data_yaml(workdir / "data")),
            },
            trainable=stub_trainable,
        )
        total = time.time() - t0
        cpu1 = driver.cpu_times()
        rss = driver.memory_info().rss / 2**20
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    assert summary.rows == generations, summary
    driver_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    print(
        f"stub: {generations} generations at concurrency {args.concurrency}: {total:.1f} s, "
        f"{60 * generations / total:.0f} rows/min, {1000 * total / generations:.0f} ms wall per trial; "
        f"driver CPU {1000 * driver_cpu / generations:.1f} ms per trial, driver RSS at the end {rss:.0f} MiB"
    )
    return total


def bench_searcher(rows: int, cycles: int, workdir: Path) -> None:
    import numpy as np

    from yolo_ray.evolution.evolve_csv import format_header, format_row
    from yolo_ray.evolution.searcher import EvolveSearcher

    hyp = {**load_hyp(), "anchors": 3.0}
    rng = np.random.default_rng(0)
    csv_path = workdir / "evolve.csv"
    lines = [format_header([*EVOLVE_RESULT_KEYS, *hyp])]
    for _ in range(rows):
        results = [*rng.random(4), *(rng.random(3) * 0.1)]
        lines.append(format_row([*results, *(v * rng.uniform(0.8, 1.2) for v in hyp.values())]))
    csv_path.write_text("\n".join(lines) + "\n")

    t0 = time.perf_counter()
    searcher = EvolveSearcher(csv_path, hyp, load_search_space(), rows + cycles, seed=0)
    load_ms = 1000 * (time.perf_counter() - t0)
    propose_s = append_s = 0.0
    for i in range(cycles):
        t0 = time.perf_counter()
        searcher.suggest(str(i))
        t1 = time.perf_counter()
        m = float(rng.random())
        searcher.on_trial_complete(
            str(i), {**dict(zip(EVOLVE_RESULT_KEYS, [0.5, 0.5, m, m, 0.05, 0.05, 0.05])), COMPLETE_KEY: True}
        )
        append_s += time.perf_counter() - t1
        propose_s += t1 - t0
    assert searcher.rows == rows + cycles
    print(
        f"searcher with {rows} rows: load {load_ms:.0f} ms; propose {1000 * propose_s / cycles:.2f} ms, "
        f"append (csv + memory) {1000 * append_s / cycles:.2f} ms per trial (mean of {cycles})"
    )


def bench_real(
    generations: int,
    concurrency: int | None,
    imgsz: int,
    share_images: bool,
    data: str | None,
    workdir: Path,
    name: str,
) -> float:
    from yolo_ray.evolution.driver import run_evolution

    t0 = time.time()
    summary = run_evolution(
        {
            "generations": generations,
            "concurrency": concurrency,
            "epochs": 1,
            "imgsz": imgsz,
            "batch_size": 16,
            "workers": 0,
            "cfg": "yolov5n.yaml",
            "seed": 0,
            "share_images": share_images,
            "data": data,
            "project": str(workdir),
            "name": name,
        }
    )
    total = time.time() - t0
    assert summary.rows == generations, summary
    label = f"concurrency {concurrency or 'default'}, {'shared' if share_images else 'per-trial'} images"
    print(
        f"real: {generations} one-epoch trials at {imgsz} px, {label}: {total:.0f} s, "
        f"{3600 * generations / total:.0f} trials/hour"
    )
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stub", action="store_true", help="(a) Tune + searcher overhead with a stub trainable")
    p.add_argument("--searcher", action="store_true", help="(b) propose + append latency on a large history")
    p.add_argument("--real", action="store_true", help="(c) real 1-epoch trials on the synthetic data")
    p.add_argument("--generations", type=int, default=None, help="default: 300 (--stub), 6 (--real)")
    p.add_argument("--concurrency", type=int, default=8, help="--stub concurrency")
    p.add_argument("--nodes", type=int, default=0, help="--stub on a CPU-less head plus this many nodes")
    p.add_argument("--node-cpus", type=int, default=16, help="logical CPUs per node (--nodes)")
    p.add_argument("--node-gpus", type=int, default=4, help="logical GPUs per node (--nodes)")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="--stub GPUs per trial (default: by cluster)")
    p.add_argument("--rows", type=int, default=10_000, help="--searcher history rows")
    p.add_argument("--imgsz", type=int, default=160, help="--real image size")
    p.add_argument("--data", default=None, help="--real data yaml (default: the built-in synthetic dataset)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_evolve_") as tmp:
        workdir = Path(tmp)
        if args.searcher:
            bench_searcher(args.rows, 200, workdir)
        if args.real:
            import ray

            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            generations = args.generations or 6
            try:
                for concurrency, share in ((1, False), (1, True), (None, True)):
                    bench_real(
                        generations,
                        concurrency,
                        args.imgsz,
                        share,
                        args.data,
                        workdir,
                        f"c{concurrency or 'auto'}_{'shared' if share else 'own'}",
                    )
            finally:
                ray.shutdown()
        if args.stub:
            total = bench_stub(args, args.generations or 300, workdir)
            print(f"stub_total_s={total:.1f}")


if __name__ == "__main__":
    main()
