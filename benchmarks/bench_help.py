"""Seconds for `scripts/X.py --help` of every script: the time a user waits to read the options.

    python benchmarks/bench_help.py              # best of 3 runs per script
    python benchmarks/bench_help.py --repeat 5

Each run is a fresh interpreter, as a user's shell starts it. The goal is under a second on a laptop:
--help builds the parser before anything imports torch, Ray, pandas or OpenCV.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def help_seconds(script: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(script), "--help"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per script; the fastest counts")
    args = parser.parse_args()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(f"bare interpreter start: {time.perf_counter() - t0:.2f} s")
    for script in sorted((REPO / "scripts").glob("*.py")):
        print(f"{script.name:<12} --help: {help_seconds(script, args.repeat):.2f} s")


if __name__ == "__main__":
    main()
