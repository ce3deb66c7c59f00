"""Official weights by name, downloaded for real from a release server on 127.0.0.1: once per node under
concurrency, resumed after a dropped connection, refused when truncated or missing, one clear line offline."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from asset_server import AssetServer
from yolo_ray.config import UserError
from yolo_ray.downloads import download, extract

REPO = Path(__file__).resolve().parents[1]
COCO_NAMES = yaml.safe_load((REPO / "yolo_ray" / "data" / "datasets" / "coco128.yaml").read_text())["names"]


def make_standin_weights(path: Path, cfg: str = "yolov5n.yaml", seed: int = 0) -> Path:
    """A release-style checkpoint (upstream's pickled-module layout, 80 COCO classes) of seeded random weights."""
    from yolo_ray.infer.upstream_pickle import save_upstream_checkpoint
    from yolo_ray.models import build_model

    torch.manual_seed(seed)
    model = build_model(cfg)
    model.names = list(COCO_NAMES.values())
    return save_upstream_checkpoint(model, path, {})


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> bytes:
    return make_standin_weights(tmp_path_factory.mktemp("release") / "yolov5n.pt").read_bytes()


@pytest.fixture
def server(standin, tmp_path, monkeypatch):
    srv = AssetServer({"yolov5n.pt": standin})
    monkeypatch.setenv("YOLO_RAY_ASSETS_URL", srv.url)
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))
    yield srv
    srv.close()


def cached(tmp_path: Path, name: str = "yolov5n.pt") -> Path:
    return tmp_path / "home" / "weights" / name


def test_official_name_loads_the_pretrained_model_not_random_weights(server, standin, tmp_path, monkeypatch):
    import yolo_ray
    from yolo_ray.models import load_checkpoint

    monkeypatch.chdir(tmp_path)  # no local yolov5n.pt here
    model = yolo_ray.load("yolov5n", device="cpu", fuse=False, autoshape=False)
    assert cached(tmp_path).read_bytes() == standin
    assert server.requests["yolov5n.pt"] == 1
    expected = load_checkpoint(cached(tmp_path))["state_dict"]
    for key, value in model.state_dict().items():
        if key in expected and value.is_floating_point():
            torch.testing.assert_close(value, expected[key], msg=key)
    assert model.names[0] == "person" and model.names[79] == "toothbrush"
    yolo_ray.load("yolov5n.pt", device="cpu")  # the .pt spelling too, from the cache
    assert server.requests["yolov5n.pt"] == 1
    from yolo_ray.infer.backends import load_backend, weights_file

    assert weights_file("yolov5n") == Path("yolov5n.pt")  # detect/val/export: exports land here, as upstream's
    assert load_backend("yolov5n.pt").names[0] == "person"
    assert server.requests["yolov5n.pt"] == 1


def test_a_local_file_of_that_name_wins_over_the_release(server, standin, tmp_path, monkeypatch):
    from yolo_ray.official import resolve_weights

    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolov5n.pt").write_bytes(standin)
    assert resolve_weights("yolov5n.pt") == Path("yolov5n.pt")
    assert server.requests["yolov5n.pt"] == 0


RANK_SCRIPT = textwrap.dedent("""
    import sys
    from yolo_ray.official import resolve_weights
    print(resolve_weights(sys.argv[1]))
""")


def test_eight_processes_asking_at_once_download_once(server, standin, tmp_path):
    server.slow_s = 1.0  # each body takes a second: all eight ask while the first is downloading
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, "yolov5n.pt"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err[-500:] for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {str(cached(tmp_path))}
    assert server.requests["yolov5n.pt"] == 1
    assert cached(tmp_path).read_bytes() == standin
    assert [p.name for p in cached(tmp_path).parent.iterdir() if not p.name.endswith(".lock")] == ["yolov5n.pt"]


def test_dropped_connection_is_resumed_with_a_range_request(server, standin, tmp_path):
    server.cut_first.add("yolov5n.pt")
    dest = tmp_path / "dl" / "yolov5n.pt"
    download(f"{server.url}/yolov5n.pt", dest)
    assert dest.read_bytes() == standin
    assert server.requests["yolov5n.pt"] == 2
    assert server.ranges == [None, f"bytes={len(standin) // 2}-"]  # the second asked only for the rest
    assert not dest.with_name("yolov5n.pt.part").exists()


def test_a_file_that_always_arrives_truncated_is_never_put_in_place(server, tmp_path):
    server.cut_always.add("yolov5n.pt")
    dest = tmp_path / "dl" / "yolov5n.pt"
    with pytest.raises(UserError) as e:
        download(f"{server.url}/yolov5n.pt", dest)
    assert not dest.exists()
    message = str(e.value)
    assert message.startswith("yolov5n.pt: cannot download ") and f"put the file at {dest}" in message
    assert "\n" not in message


def test_404_is_one_error_without_retries(server, tmp_path):
    with pytest.raises(
        UserError,
        match=r"yolov5x6\.pt: cannot download .*/yolov5x6\.pt \(HTTP 404 Not Found\); "
        r"put the file at .*weights/yolov5x6\.pt",
    ):
        from yolo_ray.official import resolve_weights

        resolve_weights("yolov5x6")
    assert server.requests["yolov5x6.pt"] == 1
    assert not cached(tmp_path, "yolov5x6.pt").exists()


def test_sha256_mismatch_is_refused(server, standin, tmp_path):
    dest = tmp_path / "dl" / "yolov5n.pt"
    with pytest.raises(UserError, match="SHA-256 differs"):
        download(f"{server.url}/yolov5n.pt", dest, sha256="0" * 64)
    assert not dest.exists()
    download(f"{server.url}/yolov5n.pt", dest, sha256=hashlib.sha256(standin).hexdigest())
    assert dest.read_bytes() == standin


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_offline_the_api_raises_one_line_naming_url_and_destination(tmp_path, monkeypatch):
    import yolo_ray

    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("YOLO_RAY_ASSETS_URL", closed_port_url())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as e:
        yolo_ray.load("yolov5s", device="cpu")
    message = str(e.value)
    assert "\n" not in message
    assert f"cannot download {os.environ['YOLO_RAY_ASSETS_URL']}/yolov5s.pt" in message
    assert f"put the file at {tmp_path / 'home' / 'weights' / 'yolov5s.pt'}" in message


def test_offline_train_prints_one_error_line_and_creates_nothing(tmp_path):
    env = {
        **os.environ,
        "YOLO_RAY_HOME": str(tmp_path / "home"),
        "YOLO_RAY_ASSETS_URL": closed_port_url(),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--weights", "yolov5s.pt"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: yolov5s.pt: cannot download "), done.stderr[-2000:]
    assert "put the file at" in errors[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_archives_whose_members_escape_the_folder_are_refused(tmp_path):
    import zipfile

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data/ok.txt", "fine")
        z.writestr("../escaped.txt", "not fine")
    with pytest.raises(UserError, match="would unpack outside the target folder"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
