"""`ray job submit` of scripts/train.py to a real, token-secured `ray start --head` on loopback."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, token: str | None = None) -> int | None:
    """The HTTP status of a GET, or None while nothing answers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def stop_head(head: subprocess.Popen) -> None:
    """End the head this test started: SIGTERM to its pid, then whatever is left of its process group."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its own children
        try:
            head.wait(timeout=45)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(head.pid, signal.SIGKILL)  # its own group (start_new_session): only what it spawned
    except ProcessLookupError:
        pass
    head.wait()


@pytest.fixture(scope="module")
def ray_head():
    # Short root: Ray's unix socket paths under --temp-dir must stay below ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))
    token = secrets.token_hex(32)
    (root / "auth_token").write_text(token)
    # Token auth on, with this head's own token (not ~/.ray/auth_token); `python` is this venv's, as
    # when the head is started from an activated venv.
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(root / "auth_token"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }  # a test head: stop at once on SIGTERM
    env.pop("RAY_ADDRESS", None)
    dashboard_port = free_port()
    cmd = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--port",
        str(free_port()),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dashboard_port),
        "--num-cpus",
        "2",
        "--include-dashboard",
        "true",
        "--temp-dir",
        str(root / "ray"),
        "--disable-usage-stats",
        # fixed defaults (52365, 10001) collide with any other Ray on this machine: the agent would not start
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--ray-client-server-port",
        str(free_port()),
    ]
    log = open(root / "head.log", "w")
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.time() + 90
        while http_status(f"{address}/api/jobs/", token) != 200:
            assert head.poll() is None and time.time() < deadline, (root / "head.log").read_text()[-3000:]
            time.sleep(0.5)
        yield SimpleNamespace(address=address, env=env, token=token, root=root)
    finally:
        stop_head(head)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_head_rejects_requests_without_its_token(ray_head):
    assert http_status(f"{ray_head.address}/api/jobs/") == 401
    assert http_status(f"{ray_head.address}/api/jobs/", token="0" * 64) == 403
    assert http_status(f"{ray_head.address}/api/jobs/", token=ray_head.token) == 200


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_submitted_ddp_training_job_succeeds_and_results_outlive_the_job(ray_head, tmp_path):
    from yolo_ray.data.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", seed=5, n_train=8, n_val=4, size=64)
    home = tmp_path / "home"  # the durable root the job's relative --project resolves against
    runtime_env = {"env_vars": {"YOLO_RAY_HOME": str(home)}}
    train_args = [
        "--data",
        str(data),
        "--cfg",
        "yolov5n.yaml",
        "--epochs",
        "1",
        "--imgsz",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--noautoanchor",
        "--noplots",
        "--ray-workers",
        "2",
        "--cpus-per-worker",
        "1",
    ]
    cmd = [
        str(VENV_BIN / "ray"),
        "job",
        "submit",
        "--address",
        ray_head.address,
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "python",
        "scripts/train.py",
        *train_args,
    ]
    for _ in range(5):  # the node's dashboard agent can register a little after the job API answers
        job = subprocess.run(cmd, env=ray_head.env, capture_output=True, text=True, timeout=170)
        out = job.stdout + job.stderr
        if "No available agent to submit job" not in out:
            break
    assert job.returncode == 0 and "succeeded" in out, out[-5000:]

    run = home / "runs" / "train" / "exp"
    assert f"Results saved to {run}\n" in out  # printed as an absolute path
    # runnable after the job: the checkout's script, not the job's temporary copy of it
    assert f"Train on: python scripts/train.py --weights {run}/weights/best.pt --data {data} --imgsz 64" in out
    assert "Final: metrics/precision=" in out  # rank 0's results came back through the TorchTrainer
    assert (run / "ray_train").is_dir()  # Ray Train's storage sits inside the run, not in the temp copy
    assert (run / "weights" / "best.pt").is_file() and (run / "opt.yaml").is_file()
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[0].strip() == "0"  # header + epoch 0
