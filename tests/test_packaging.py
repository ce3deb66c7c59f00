"""What a user installs: the package list, the yolo-ray entry point, and a wheel that evolves from an empty
folder with nothing but what it holds (the search spaces are package data)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]


def test_the_listed_packages_are_every_package_plus_the_search_spaces():
    tomllib = pytest.importorskip("tomllib")
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = find_packages(str(REPO), include=["yolo_ray", "yolo_ray.*"])
    assert sorted(listed) == sorted([*found, "yolo_ray.search_spaces"])


@pytest.mark.timeout(120)
def test_yolo_ray_command_runs_each_script_and_says_how_when_misused(tmp_path):
    def run(*argv: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run(
            [sys.executable, "-m", "yolo_ray", *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=100,
        )

    bad = run("train", "--epochs", "0")
    assert bad.returncode == 2 and bad.stderr == "error: --epochs 0 is out of range (valid: [1, inf))\n"
    unknown = run("fly")
    assert unknown.returncode == 2 and "unknown command 'fly'" in unknown.stderr
    assert run("--help").returncode == 0
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_evolves_two_generations_from_an_empty_folder(tmp_path):
    source = tmp_path / "source"  # a copy: building in place would leave build/ in the checkout
    for folder in ("yolo_ray", "search_spaces"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(source),
            "-w",
            str(wheels),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("yolo_ray-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what the venv holds
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            str(wheel),
        ],
        check=True,
        timeout=300,
        cwd=tmp_path,
        env=clean_env,
    )
    # then torch, Ray and the rest from this environment (no download), behind the wheel's own yolo_ray; a
    # plain path line, so this environment's own (editable) yolo_ray is not activated
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**clean_env, "YOLO_RAY_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            venv / "bin" / "yolo-ray",
            "evolve",
            "--generations",
            "2",
            "--epochs",
            "1",
            "--imgsz",
            "64",
            "--batch-size",
            "4",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
        timeout=800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    where = subprocess.run(
        [python, "-c", "import yolo_ray.evolution.space as s; print(s.SEARCH_SPACE_DIR)"],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site)  # the wheel's own copy of the search spaces
    with open(empty / "runs" / "evolve" / "exp" / "evolve.csv") as f:
        assert len(list(csv.reader(f))) == 1 + 2  # header and two generations
