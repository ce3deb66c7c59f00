"""An autoscaling cluster at rest: a head with no CPUs and a GPU node type at zero nodes (Ray's fake node
provider starts real node processes on this machine when the autoscaler asks for them)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolo_ray.config import UserError
from yolo_ray.evolution import EVOLVE_RESULT_KEYS
from yolo_ray.evolution.searcher import COMPLETE_KEY

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def autoscaling_config(head_ip: str, port: int) -> dict:
    return {
        "cluster_name": "fake",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"{head_ip}:{port}",
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "gpu_node": {"resources": {"CPU": 2, "GPU": 2}, "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "ray.head.default",
        "docker": {},
        "auth": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        **{
            k: []
            for k in (
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
            )
        },
    }


def start_head(config: Path, port: int) -> subprocess.Popen:
    """`ray start --head --block` in its own process group, with the fake node provider's autoscaler."""
    ray_cli = Path(sys.executable).with_name("ray")
    # agent_register_timeout: a loaded machine starts the dashboard agent slower than the raylet waits by default.
    # Auth as this process has it (unset: none), so that it can join.
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "RAY_agent_register_timeout_ms": "180000",
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
    }
    # Every port the head opens is a free one: other Ray clusters may run on this machine (their agents hold
    # the default ports).
    ports = [
        f"--{name}={free_port()}"
        for name in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "metrics-export-port",
            "runtime-env-agent-port",
        )
    ]
    return subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--num-cpus",
            "0",
            "--port",
            str(port),
            *ports,
            "--include-dashboard",
            "false",
            f"--autoscaling-config={config}",
            "--block",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until_up(head: subprocess.Popen, port: int, timeout: float = 120) -> bool:
    """Whether the head came up (its port answers) before its `ray start` gave up."""
    deadline = time.time() + timeout
    while time.time() < deadline and head.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(1)
    return False


@pytest.fixture(scope="module")
def autoscaling_cluster(tmp_path_factory):
    """The head's address; this process is connected to it for the module. Ends every process it started."""
    import ray
    from ray import cloudpickle
    from ray._private.services import get_node_ip_address

    ray.shutdown()  # the suite's local cluster, if an earlier module started it
    head_ip = get_node_ip_address()
    head = None
    try:
        for _ in range(3):  # on a loaded machine a node's start-up sometimes times out inside Ray: try again
            port = free_port()
            config = tmp_path_factory.mktemp("autoscaler") / "cluster.yaml"
            config.write_text(json.dumps(autoscaling_config(head_ip, port)))
            head = start_head(config, port)
            if wait_until_up(head, port):
                break
            stop_group(head)
        assert head is not None and head.poll() is None, "the autoscaling head did not come up"
        ray.init(address=f"{head_ip}:{port}", log_to_driver=False)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
        yield f"{head_ip}:{port}"
    finally:
        ray.shutdown()
        if head is not None:
            stop_group(head)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group proc leads (`ray start --block` ends its node's processes), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def gpu_recording_trainable(record_dir: Path):
    def trainable(config: dict, train_config: dict) -> None:
        import ray
        from ray import tune

        (record_dir / tune.get_context().get_trial_id()).write_text(",".join(map(str, ray.get_gpu_ids())))
        f = 1.0 / (1.0 + abs(config["hyp"]["lr0"] - 0.02) * 10)
        tune.report({**dict(zip(EVOLVE_RESULT_KEYS, [f, f, f, f, 0.1, 0.1, 0.1])), "fitness": f, COMPLETE_KEY: True})

    return trainable


@pytest.mark.timeout(400)
def test_gpu_trials_on_a_cluster_with_zero_gpu_nodes_wait_for_the_autoscaler(
    autoscaling_cluster, tmp_path, stub_data, capsys
):
    import ray

    from yolo_ray.evolution.driver import run_evolution

    assert sum(n["Resources"].get("GPU", 0) for n in ray.nodes() if n["Alive"]) == 0  # at rest: no GPU node
    common = {"project": str(tmp_path / "runs"), "data": str(stub_data), "seed": 1}
    with pytest.raises(UserError, match="no node or node type .* 3 CPU \\+ 1 GPU .*autoscaler: up to 2 more gpu_node"):
        run_evolution(
            {**common, "generations": 2, "gpus_per_trial": 1, "cpus_per_trial": 3},
            trainable=gpu_recording_trainable(tmp_path),
        )
    assert not (tmp_path / "runs").exists()

    records = tmp_path / "records"
    records.mkdir()
    summary = run_evolution({**common, "generations": 2, "concurrency": 1}, trainable=gpu_recording_trainable(records))
    out = capsys.readouterr().out
    assert summary.status == "finished", summary.message
    assert "1 worker(s) x 1 CPU / 1 GPU" in out  # GPU trials by default: the node type has GPUs
    assert "Ray placement: waiting for 1 GPU(s) for a trial (the autoscaler is adding nodes" in out
    gpus = [p.read_text() for p in records.iterdir()]
    assert len(gpus) == 2 and all(g != "" for g in gpus)  # every trial held a GPU, none ran on CPU


@pytest.mark.timeout(120)
def test_a_run_never_placed_is_an_error_after_the_placement_timeout(autoscaling_cluster):
    from yolo_ray.cluster.nodes import wait_for_resources
    from yolo_ray.cluster.placement import Node, Placement

    t0 = time.time()
    never = Placement(workers=1, cpus_per_worker=64, gpus_per_worker=0, concurrency=1)
    with pytest.raises(UserError, match="could not be placed within 3 s \\(--placement-timeout\\)"):
        wait_for_resources(never, [Node(2, 2, "gpu_node", live=False)], 3.0, "the training run", interval_s=1.0)
    assert time.time() - t0 < 60
