"""One command for a machine with a GPU: do yolo_ray's GPU paths really work there, and how fast?

    python benchmarks/gpu_check.py                  # under 8 minutes on one modern GPU with 16 cores
    python benchmarks/gpu_check.py --epochs 2 --generations 2

1. Fine-tunes the built-in checkpoint on the built-in data at 160 px in this process with fp16 AMP: img/s
   of the epochs after the first (start-up and cuDNN autotuning excluded), peak GPU memory, and a real mAP
   (the built-in checkpoint must keep finding its shapes).
2. scripts/evolve.py with two 0.5-GPU trials at once: every trial's Ray log must say it ran on CUDA.
3. scripts/train.py --address on a Ray head started here, --storage-path file://: Ray Train, NCCL and the
   upload on one GPU; rank 0 is killed once mid-training and once during "Validating best.pt", and the run
   must still end with one results.csv row per epoch, stored.
4. scripts/train.py --ray-workers 2 (NCCL DDP over two GPUs) when the machine has two or more.
5. gpu_throughput.py: yolov5s at 640 with the loader at 2 and 8 cores per GPU — does the GPU wait on it?
   (`python benchmarks/gpu_throughput.py --compile` times the step under torch.compile against eager mode.)
Prints one markdown table; exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_throughput  # noqa: E402
from gpu_throughput import speed_after_warmup  # noqa: E402

Row = tuple[str, str, bool]
MIN_BUILTIN_MAP50 = 0.5  # the built-in checkpoint finds most shapes; far below means the GPU path broke it
TRIAL_LINE = re.compile(r"Trial on Ray node \w+, (\S+), pid \d+")
RANK0_LINE = re.compile(r"DDP rank 0/\d+ on Ray node \w+, \S+, pid (\d+)")


def setup() -> dict:
    """Data, model and size of the checks: the built-in checkpoint on the built-in data, whose mAP is known."""
    from yolo_ray.data.synthetic import builtin_weights, default_data_yaml

    return {
        "data": str(default_data_yaml()),
        "cfg": None,
        "weights": str(builtin_weights()),
        "imgsz": 160,
        "min_map50": MIN_BUILTIN_MAP50,
    }


def trial_devices(log_text: str) -> list[str]:
    """The device each evolution trial reported in its Ray log ('cuda:0', 'cpu', ...)."""
    return TRIAL_LINE.findall(log_text)


def epochs_in(results_csv: Path) -> list[int]:
    return [int(float(line.split(",")[0])) for line in results_csv.read_text().splitlines()[1:]]


def single_gpu_training(args: argparse.Namespace, cfg: dict, out: Path) -> list[Row]:
    import torch

    from yolo_ray.config import load_hyp

    torch.cuda.reset_peak_memory_stats()
    save_dir = out / "train"
    results, timings = gpu_throughput.timed_training(
        {
            "cfg": cfg["cfg"],
            "weights": cfg["weights"],
            "data": cfg["data"],
            "hyp": load_hyp(None),
            "epochs": args.epochs,
            "batch_size": 16,
            "imgsz": cfg["imgsz"],
            "device": "0",
            "save_dir": str(save_dir),
            "noplots": True,
            "workers": 8,
            "noautoanchor": bool(cfg["weights"]),
        }
    )
    peak = torch.cuda.max_memory_reserved() / 2**30
    speed = speed_after_warmup(timings)
    map50, map95 = results["metrics/mAP_0.5"], results["metrics/mAP_0.5:0.95"]
    finite = all(math.isfinite(float(v)) for v in results.values())
    return [
        (
            f"train {cfg['cfg'] or 'built-in yolov5n'} {cfg['imgsz']}px fp16 AMP, {args.epochs} epochs",
            f"{speed:.0f} img/s after the first epoch",
            len(timings) == args.epochs and speed > 0,
        ),
        ("peak GPU memory reserved", f"{peak:.2f} GiB", peak > 0),
        (
            "mAP@.5 / mAP@.5:.95 of best.pt",
            f"{map50:.4f} / {map95:.4f} (need mAP@.5 > {cfg['min_map50']})",
            finite and map50 > cfg["min_map50"],
        ),
    ]


def run_cli(args: list[str], timeout: int, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.time()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
    return done, time.time() - t0


def newest_ray_logs() -> str:
    """The worker logs of the newest Ray session on this machine (where trials print)."""
    logs = Path(tempfile.gettempdir()) / "ray" / "session_latest" / "logs"
    return "\n".join(p.read_text(errors="replace") for p in logs.glob("worker-*.out"))


def fractional_evolution(args: argparse.Namespace, cfg: dict, out: Path) -> list[Row]:
    from yolo_ray.evolution import read_history

    model = ["--cfg", cfg["cfg"]] if cfg["cfg"] else ["--weights", cfg["weights"]]
    done, seconds = run_cli(
        [
            "scripts/evolve.py",
            "--data",
            cfg["data"],
            *model,
            "--imgsz",
            str(cfg["imgsz"]),
            "--epochs",
            "1",
            "--generations",
            str(args.generations),
            "--gpus-per-trial",
            "0.5",
            "--concurrency",
            "2",
            "--project",
            str(out / "evolve"),
            "--seed",
            "0",
        ],
        timeout=300,
    )
    csv = out / "evolve" / "exp" / "evolve.csv"
    n = len(read_history(csv)) if csv.is_file() else 0
    devices = trial_devices(newest_ray_logs())
    on_cuda = bool(devices) and all(d.startswith("cuda") for d in devices)
    return [
        (
            f"evolve {args.generations} generations, two 0.5-GPU trials at once ({seconds:.0f} s)",
            f"{n} rows; trial devices: {', '.join(sorted(set(devices))) or 'none found in the Ray logs'}",
            done.returncode == 0 and n == args.generations and on_cuda,
        )
    ]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the Ray head on port {port} did not come up")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def train_killing_rank0(
    address: str, args: list[str], triggers: list[Callable[[str], bool]], timeout: float
) -> tuple[int, str]:
    """scripts/train.py --address; SIGKILL DDP rank 0 each time the next trigger(output so far) holds."""
    proc = subprocess.Popen(
        [sys.executable, "scripts/train.py", "--address", address, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.time() + timeout
    try:
        for trigger in triggers:
            while not trigger("".join(lines)) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            pids = RANK0_LINE.findall("".join(lines))
            if proc.poll() is not None or not pids:
                break
            os.kill(int(pids[-1]), signal.SIGKILL)
        proc.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    return proc.returncode, "".join(lines)


def ray_cli() -> list[str]:
    """The `ray` command: beside this Python, else on PATH (a --target install), else through Python itself."""
    beside = Path(sys.executable).with_name("ray")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("ray")
    through_python = "import sys; from ray.scripts.scripts import main; sys.exit(main())"
    return [found] if found else [sys.executable, "-c", through_python]


def ray_train_with_failures(args: argparse.Namespace, cfg: dict, out: Path) -> list[Row]:
    """Ray Train + NCCL + file:// upload on one GPU, rank 0 killed mid-training and in the final validation."""
    port = free_port()
    head = subprocess.Popen(
        [
            *ray_cli(),
            "start",
            "--head",
            "--port",
            str(port),
            "--num-gpus",
            "1",
            "--include-dashboard",
            "false",
            "--block",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    store, epochs = out / "store", 4
    stored_csv = store / "exp" / "results.csv"
    model = ["--cfg", cfg["cfg"]] if cfg["cfg"] else ["--weights", cfg["weights"], "--noautoanchor"]
    try:
        wait_for_port(port, head, timeout=60)
        t0 = time.time()
        code, log = train_killing_rank0(
            f"127.0.0.1:{port}",
            [
                "--data",
                cfg["data"],
                *model,
                "--imgsz",
                str(cfg["imgsz"]),
                "--epochs",
                str(epochs),
                "--batch-size",
                "16",
                "--gpus-per-worker",
                "1",
                "--noplots",
                "--max-failures",
                "3",
                "--storage-path",
                f"file://{store}",
            ],
            # mid-training: epoch 1 is stored; then inside the end-of-training steps
            triggers=[
                lambda _: stored_csv.is_file() and len(epochs_in(stored_csv)) >= 2,
                lambda log: "Validating " in log,
            ],
            timeout=300,
        )
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
    run = store / "exp"
    rows = epochs_in(run / "results.csv") if (run / "results.csv").is_file() else []
    if code != 0:
        print(log[-4000:])
    restarts = log.count("Restarting from")
    on_cuda = bool(re.search(r"DDP rank 0/1 on Ray node \w+, cuda", log))
    stored = all((run / f).is_file() for f in ("weights/last.pt", "weights/best.pt", "opt.yaml"))
    return [
        (
            f"train.py --address, Ray Train + NCCL + file:// upload, rank 0 killed twice ({time.time() - t0:.0f} s)",
            f"exit {code}, {restarts} restarts, results.csv epochs {rows}, run stored: {stored}, on CUDA: {on_cuda}",
            code == 0 and restarts == 2 and rows == list(range(epochs)) and stored and on_cuda,
        )
    ]


def ddp_training(cfg: dict, out: Path) -> list[Row]:
    model = ["--cfg", cfg["cfg"]] if cfg["cfg"] else ["--weights", cfg["weights"], "--noautoanchor"]
    done, seconds = run_cli(
        [
            "scripts/train.py",
            "--data",
            cfg["data"],
            *model,
            "--imgsz",
            str(cfg["imgsz"]),
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--ray-workers",
            "2",
            "--noplots",
            "--project",
            str(out / "ddp"),
        ],
        timeout=300,
    )
    # rank 0's epoch lines: '... 8/8 batches, 512.3 img/s, 4 s'
    speeds = re.findall(r"batches, ([\d.]+) img/s", done.stdout + done.stderr)
    return [
        (
            f"2-worker NCCL DDP, 2 epochs ({seconds:.0f} s)",
            f"rank 0 img/s per epoch: {', '.join(speeds)}",
            done.returncode == 0,
        )
    ]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| check | result | ok |", "|---|---|---|"]
    lines += [f"| {name} | {result} | {'yes' if ok else 'NO'} |" for name, result, ok in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the single-GPU training (2 or more)")
    parser.add_argument("--generations", type=int, default=4, help="rows of the fractional-GPU evolution")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("train", "throughput", "evolve", "ray-train", "ddp"),
        help="run only these checks (default: all)",
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch; run this on a GPU machine", file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count()
    cpus = f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs usable"
    rows: list[Row] = [
        (
            "machine",
            f"{gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, {cpus}",
            True,
        )
    ]
    cfg = setup()
    named = {
        "train": lambda out: single_gpu_training(args, cfg, out),
        "throughput": lambda out: gpu_throughput.loader_vs_step(out),
        "evolve": lambda out: fractional_evolution(args, cfg, out),
        "ray-train": lambda out: ray_train_with_failures(args, cfg, out),
    }
    if gpus >= 2:
        named["ddp"] = lambda out: ddp_training(cfg, out)
    else:
        rows.append(("2-worker DDP", "skipped: one GPU (Ray Train + NCCL ran above with one worker)", True))
    checks = [check for name, check in named.items() if name in (args.only or named)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, check in enumerate(checks):
            try:
                rows += check(Path(tmp) / str(i))
            except Exception as e:  # one broken check must not hide the others' results
                rows.append((f"check {i + 1}", f"{type(e).__name__}: {e}", False))
            print("\n" + markdown_table(rows), flush=True)  # the table so far survives a later check's hang
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
