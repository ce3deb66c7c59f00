"""The malformed-input table of the other entry points: scripts/val.py, detect.py, export.py,
benchmarks/bench_search.py and the Python API (yolo_ray.load, calling the loaded model, yolo_ray.train and
yolo_ray.evolve), held to train.py's standard (tests/test_malformed_inputs.py).

Every case ends in one `error: ...` line naming the file or option (exit 2), or for the API in one
yolo_ray.UserError; never a traceback; and no file or folder of the world is created or changed (it is
hashed before and after): no empty exp/, no half export. A few cases go on honestly (exit 0) after one
WARNING line, and may write only where they say.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
from malformed_world import (
    ENTRY_READ_ONLY,
    build_entry_world,
    check_one_line,
    read_only_folders,
    run_as_process,
    snapshot,
    stderr_of_process,
)

from malformed_entry_cases import BASE_ARGS, CASES, Case

import yolo_ray

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "val": REPO / "scripts" / "val.py",
    "detect": REPO / "scripts" / "detect.py",
    "export": REPO / "scripts" / "export.py",
    "bench_search": REPO / "benchmarks" / "bench_search.py",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = build_entry_world(tmp_path_factory.mktemp("entry_world"))
    yield w
    for folder in [*read_only_folders(w), w / ENTRY_READ_ONLY]:
        folder.chmod(0o755)  # so pytest can clean up


@pytest.fixture(scope="module")
def clis() -> dict:
    modules = {}
    for name, path in SCRIPTS.items():
        spec = importlib.util.spec_from_file_location(f"{name}_entry_table", path)
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    return modules


@pytest.fixture(scope="module")
def model(world: Path):
    return yolo_ray.load(world / "models" / "best.pt", device="cpu")


def argv_of(case: Case, w: Path) -> list[str]:
    return [a.replace("{w}", str(w)) for a in (*BASE_ARGS[case.script], *case.args)]


def check_outcome(case: Case, w: Path, code: int, out: str, err: str) -> None:
    check_one_line(case.expected.replace("{w}", str(w)), bool(case.may_write), code, out, err)


def run_case(case: Case, w: Path, clis: dict, model) -> tuple[int, str]:
    """(exit code, the error line) of a case; an API case's UserError counts as exit 2 and its line."""
    if case.script != "api":
        return clis[case.script].main(argv_of(case, w)), ""
    try:
        case.call(w, model)
    except yolo_ray.UserError as e:
        return 2, f"error: {e}\n"
    return 0, ""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_entry_point_input(case: Case, world: Path, clis: dict, model, capfd, caplog, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("YOLO_RAY_HOME", str(world.parent / "cache"))  # downloads never land in the world
    before = snapshot(world)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, api_error = run_case(case, world, clis, model)
    out, err = capfd.readouterr()
    err = stderr_of_process(caught, caplog.records, err + api_error)
    check_outcome(case, world, code, out, err)
    after = snapshot(world)
    allowed = case.may_write or "\0"
    changed = [k for k in before if after.get(k) != before[k] and not k.startswith(allowed)]
    assert not changed, f"existing files changed or removed: {changed}"
    created = [k for k in after if k not in before and not k.startswith(allowed)]
    assert not created, f"created by a start that failed: {created}"


# One case per script and kind of failure point, run as real processes: what a user's terminal shows.
PROCESS_CASES = [
    "val-weights-onnx-named-pt",
    "val-val-images-all-corrupt",
    "detect-source-all-unreadable",
    "export-beside-read-only-weights",
    "export-imgsz-100-rounds-up",
    "bench_search-out-read-only",
]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("case_id", PROCESS_CASES)
def test_real_process_prints_only_the_error_line(case_id: str, world: Path):
    case = next(c for c in CASES if c.id == case_id)
    before = snapshot(world)
    proc = run_as_process(SCRIPTS[case.script], argv_of(case, world), timeout=170)
    check_outcome(case, world, proc.returncode, proc.stdout, proc.stderr)
    after = snapshot(world)
    allowed = case.may_write or "\0"
    assert {k: v for k, v in after.items() if not k.startswith(allowed)} == {
        k: v for k, v in before.items() if not k.startswith(allowed)
    }


def test_the_table_covers_at_least_60_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
