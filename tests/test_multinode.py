"""A real multi-node Ray cluster on this machine: a head with no CPUs (the driver's node runs nothing) and
three 1-CPU worker nodes; nodes are added (logical GPUs, a node that does not share our files) and removed
(node failure) as the tests go. Evolutions run in this process; trainings run scripts/train.py as a user
would, with --address."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from yolo_ray.evolution import EVOLVE_RESULT_KEYS, read_history
from yolo_ray.evolution.searcher import COMPLETE_KEY

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TRAIN_CLI = REPO / "scripts" / "train.py"


def cli_env() -> dict[str, str]:
    """This process's environment as it is now (an earlier ray.init may have set RAY_AUTH_MODE=token, which
    the cluster then requires), without Ray's log dedup: each rank's start line must reach us."""
    return {**os.environ, "RAY_DEDUP_LOGS": "0"}


@pytest.fixture(scope="module")
def cluster():
    """Head (0 CPUs) + 3 nodes of 1 CPU; this process joins it for the module, then leaves it."""
    import ray
    from ray import cloudpickle
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the suite's local cluster, if an earlier module started it
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(3):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    yield c
    ray.shutdown()
    c.shutdown()


def node_trainable(record_dir: Path, seconds: float = 0.0):
    """A stub trial that records which node and GPUs it ran on, then reports a fitness of its hyps."""

    def trainable(config: dict, train_config: dict) -> None:
        import ray
        from ray import tune

        ctx = ray.get_runtime_context()
        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        (record_dir / tune.get_context().get_trial_id()).write_text(f"{ctx.get_node_id()} {gpus}")
        time.sleep(seconds)
        f = 1.0 / (1.0 + abs(config["hyp"]["lr0"] - 0.02) * 10)
        tune.report({**dict(zip(EVOLVE_RESULT_KEYS, [f, f, f, f, 0.1, 0.1, 0.1])), "fitness": f, COMPLETE_KEY: True})

    return trainable


def evolve(tmp_path: Path, stub_data: Path, generations: int, seconds: float = 0.0, **opt):
    from yolo_ray.evolution.driver import run_evolution

    records = tmp_path / "records"
    records.mkdir(exist_ok=True)
    summary = run_evolution(
        {"generations": generations, "project": str(tmp_path / "runs"), "data": str(stub_data), "seed": 1, **opt},
        trainable=node_trainable(records, seconds),
    )
    nodes = [p.read_text().split(" ") for p in records.iterdir()]
    return summary, nodes


def assert_exactly_n_distinct_rows(csv: Path, n: int) -> None:
    history = read_history(csv)
    assert len(history) == n
    assert not history.duplicated().any()  # no trial written twice


def train_cli(cluster, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TRAIN_CLI), "--address", cluster.address, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=cli_env(),
    )


@pytest.fixture
def coco128_or_none() -> Path | None:
    """Real images of mixed aspect ratios (what --rect under DDP must batch correctly), when present."""
    path = REPO.parent / "shared" / "datasets" / "coco128" / "coco128.yaml"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from yolo_ray.data.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("tiny") / "data", seed=3, n_train=48, n_val=8, size=96)


def ddp_args(data: Path, project: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "--cfg",
        "yolov5n.yaml",
        "--data",
        str(data),
        "--epochs",
        str(epochs),
        "--imgsz",
        "64",
        "--batch-size",
        "8",
        "--ray-workers",
        "2",
        "--workers",
        "0",
        "--noautoanchor",
        "--project",
        str(project),
        *extra,
    ]


def rank_nodes(output: str) -> dict[int, str]:
    """{rank: Ray node id} from the line each DDP rank prints when it starts (the last attempt's)."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"DDP rank (\d+)/\d+ on Ray node (\w+)", output)}


@pytest.mark.timeout(60)
def test_gpus_asked_of_a_cluster_without_gpus_fail_at_start_without_a_run_folder(cluster, tmp_path, stub_data):
    from yolo_ray.config import UserError

    with pytest.raises(UserError, match="the Ray cluster has no GPUs"):
        evolve(tmp_path, stub_data, 3, gpus_per_trial=1)
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(180)
def test_evolution_trials_land_on_several_nodes_and_write_exactly_n_rows(cluster, tmp_path, stub_data):
    import ray

    # Trials longer than a trial process's start under load: a finished process takes the newest waiting
    # trial (evolution/scheduling.py), so with 1 s trials one node could run all 9 before the others start.
    summary, nodes = evolve(tmp_path, stub_data, 9, seconds=4.0)
    assert summary.status == "finished"
    assert_exactly_n_distinct_rows(summary.save_dir / "evolve.csv", 9)
    used = {node for node, _ in nodes}
    assert len(used) >= 2
    assert ray.get_runtime_context().get_node_id() not in used  # the driver's head node runs nothing


@pytest.mark.timeout(180)
def test_logical_gpus_give_fractional_trials_and_concurrency_from_gpus(cluster, tmp_path, stub_data, capsys):
    from yolo_ray.config import UserError

    gpu_nodes = [cluster.add_node(num_cpus=2, num_gpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        with pytest.raises(UserError, match="1.5 GPU each: DDP needs"):
            evolve(tmp_path, stub_data, 2, gpus_per_trial=3, ray_workers=2)
        assert not (tmp_path / "runs").exists()
        summary, nodes = evolve(tmp_path, stub_data, 6, seconds=1.0, gpus_per_trial=0.5)
        assert summary.status == "finished"
        assert "1 worker(s) x 1 CPU / 0.5 GPU, 4 at once" in capsys.readouterr().out
        gpu_node_ids = {n.node_id for n in gpu_nodes}
        assert all(node in gpu_node_ids and gpus != "" for node, gpus in nodes)
    finally:
        for node in gpu_nodes:
            cluster.remove_node(node)


@pytest.mark.timeout(600)
def test_run_folder_not_shared_by_a_node_is_refused_and_a_shared_one_trains(
    cluster, tmp_path, tiny_data, coco128_or_none
):
    """A node in its own mount namespace sees an empty tmpfs where the driver sees `private/`."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to give a node a folder the driver does not share")
    private, shared = tmp_path / "private", tmp_path / "shared"
    private.mkdir()
    ray_cli = Path(sys.executable).with_name("ray")
    node = subprocess.Popen(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount -t tmpfs tmpfs {private} && exec {ray_cli} start --address {cluster.address} --num-cpus 1 --block",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_alive_nodes(5, starting=node)
        refused = train_cli(cluster, *ddp_args(tiny_data, private, 1), timeout=240)
        assert refused.returncode == 2, refused.stderr[-2000:]
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "not shared with Ray node(s)" in errors[0] and str(private) in errors[0]
        assert "Traceback" not in refused.stderr
        assert list(private.iterdir()) == []  # no run folder, no marker left behind

        data, extra = (coco128_or_none, ["--rect"]) if coco128_or_none else (tiny_data, [])
        done = train_cli(cluster, *ddp_args(data, shared, 2, *extra))
        assert done.returncode == 0, done.stderr[-3000:]
        run = shared / "exp"
        assert len((run / "results.csv").read_text().splitlines()) == 3  # header + 2 epochs, where the driver looks
        for name in ("opt.yaml", "hyp.yaml", "weights/last.pt", "weights/best.pt", "results.png"):
            assert (run / name).is_file(), name
        assert not list((run / "ray_train").rglob("*.pt"))  # Ray's storage holds no weight copies
        ranks = rank_nodes(done.stdout + done.stderr)
        assert sorted(ranks) == [0, 1] and len(set(ranks.values())) == 2  # two ranks on two different nodes
        assert ranks[0] != ray_head_node_id(cluster)  # rank 0 is not on the driver's node
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)


@pytest.mark.timeout(300)
def test_node_removed_mid_evolution_retries_its_trials_and_ends_with_n_rows(cluster, tmp_path, stub_data):
    csv = tmp_path / "runs" / "exp" / "evolve.csv"
    victim = next(iter(cluster.worker_nodes))

    def remove_when_rows_appear() -> None:
        while not csv.is_file() or len(csv.read_text().splitlines()) < 3:
            time.sleep(0.2)
        cluster.remove_node(victim)

    killer = threading.Thread(target=remove_when_rows_appear, daemon=True)
    killer.start()
    try:
        summary, _ = evolve(tmp_path, stub_data, 10, seconds=3.0, max_retries=3)
    finally:
        killer.join(timeout=5)
        cluster.add_node(num_cpus=1)  # back to three nodes for the next test
        cluster.wait_for_nodes()
    assert summary.status == "finished", summary.message
    assert_exactly_n_distinct_rows(csv, 10)


@pytest.mark.timeout(600)
def test_node_removed_during_ddp_training_restarts_from_its_last_epoch(cluster, tmp_path, tiny_data):
    project = tmp_path / "runs"
    results = project / "exp" / "results.csv"
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN_CLI), "--address", cluster.address, *ddp_args(tiny_data, project, 5, "--noplots")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=cli_env(),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 300
        last = project / "exp" / "weights" / "last.pt"  # written after the epoch's row: kill once both exist
        while (not last.is_file() or len(results.read_text().splitlines()) < 2) and time.time() < deadline:
            assert proc.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.5)
        busy = set(rank_nodes("".join(lines)).values())
        victim = next(n for n in cluster.worker_nodes if n.node_id in busy)
        cluster.remove_node(victim)
        proc.wait(timeout=400)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:]
    assert "Restarting from" in out
    epochs = [int(line.split(",")[0]) for line in results.read_text().splitlines()[1:]]
    assert epochs == [0, 1, 2, 3, 4]  # one row per epoch: rows after the last save were rewritten, not repeated


def ray_head_node_id(cluster) -> str:
    return cluster.head_node.node_id


def _wait_for_alive_nodes(n: int, starting: subprocess.Popen, timeout: float = 240) -> None:
    """Until n nodes are alive; `ray start` brings up several processes, slow on a loaded 2-core machine."""
    import ray

    deadline = time.time() + timeout
    while sum(1 for node in ray.nodes() if node["Alive"]) < n:
        assert starting.poll() is None, f"the node's `ray start` exited with {starting.returncode}"
        if time.time() > deadline:
            raise TimeoutError(f"fewer than {n} Ray nodes alive after {timeout} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def slow_val_data(tmp_path_factory) -> Path:
    """More validation images than tiny_data, so that the final validation lasts long enough to be hit."""
    from yolo_ray.data.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("slowval") / "data", seed=4, n_train=16, n_val=64, size=96)


def run_and_kill_rank0_when(cluster, args: list[str], trigger: str, timeout: float = 400) -> tuple[int, str]:
    """Run scripts/train.py; SIGKILL the process of DDP rank 0 once `trigger` shows in the output (once)."""
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN_CLI), "--address", cluster.address, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=cli_env(),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + timeout
        while trigger not in "".join(lines):
            assert proc.poll() is None and time.time() < deadline, "".join(lines)[-3000:]
            time.sleep(0.05)
        pid = int(re.findall(r"DDP rank 0/\d+ on Ray node \w+, \S+, pid (\d+)", "".join(lines))[-1])
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(lines)


@pytest.mark.timeout(600)
def test_rank0_killed_during_the_final_validation_finishes_without_retraining(cluster, tmp_path, slow_val_data):
    project = tmp_path / "runs"
    code, out = run_and_kill_rank0_when(cluster, ddp_args(slow_val_data, project, 1, "--noplots"), "Validating ")
    assert code == 0, out[-3000:]
    assert "at the end-of-training steps" in out  # the restart went to the end, not to epoch 0
    run = project / "exp"
    epochs = [int(line.split(",")[0]) for line in (run / "results.csv").read_text().splitlines()[1:]]
    assert epochs == [0]  # one row per epoch, none trained twice
    from yolo_ray.training.checkpoint import load_training_checkpoint

    last, best = (load_training_checkpoint(run / "weights" / n) for n in ("last.pt", "best.pt"))
    assert last["epoch"] == best["epoch"] == -1 and last["optimizer"] is None  # end steps done
    assert "metrics/mAP_0.5" in last["final_results"]
