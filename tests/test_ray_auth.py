"""Joining a cluster started by `ray start --head`, which in Ray 2.60 turns token authentication on by default."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def test_a_head_that_turned_token_auth_on_is_joined_with_the_machines_token(tmp_path):
    # A machine where Ray already made a token (any earlier local ray.init does; here Ray's own command, in a
    # home of its own): `ray start --head` then turns authentication on, and joining must present the token.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.pop("RAY_ADDRESS", None)
    env["HOME"] = str(tmp_path)
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, capture_output=True, timeout=120, check=True)
    assert (tmp_path / ".ray" / "auth_token").is_file()
    port = free_port()
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "1",
            "--include-dashboard",
            "false",
            "--block",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and head.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        join = (
            "from yolo_ray.cluster.nodes import connect; import ray, os; "
            f"connect('127.0.0.1:{port}'); print('CPU', ray.cluster_resources().get('CPU'), "
            "os.environ.get('RAY_AUTH_MODE'))"
        )
        done = subprocess.run(
            [sys.executable, "-c", join],
            env={**env, "PYTHONPATH": str(REPO)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "CPU 1.0 token" in done.stdout
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
