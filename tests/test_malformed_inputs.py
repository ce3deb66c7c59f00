"""The malformed-input table (its rows in tests/malformed_cases.py): bad files, bad labels, bad options and
bad states given to scripts/train.py and scripts/evolve.py, each as a new user would type it.

Every case must end in one `error: ...` line naming the file or option (exit 2), or, where training can
honestly go on, in one counted WARNING line (exit 0); never a traceback, and no file that existed before
the case changes (every run folder and dataset is hashed before and after).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import pytest
from malformed_cases import BASE_ARGS, CASES, Case
from malformed_world import build_world, check_one_line, read_only_folders, run_as_process, snapshot

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"train": REPO / "scripts" / "train.py", "evolve": REPO / "scripts" / "evolve.py"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = build_world(tmp_path_factory.mktemp("world"))
    yield w
    for folder in read_only_folders(w):
        folder.chmod(0o755)  # so pytest can clean up


@pytest.fixture(scope="module")
def clis() -> dict:
    modules = {}
    for name, path in SCRIPTS.items():
        spec = importlib.util.spec_from_file_location(f"{name}_cli_table", path)
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    return modules


def argv_of(case: Case, w: Path) -> list[str]:
    return [a.replace("{w}", str(w)) for a in (*BASE_ARGS[case.script], *case.args)]


SHOWN_BY_DEFAULT = (UserWarning, FutureWarning, RuntimeWarning, SyntaxWarning, UnicodeWarning, BytesWarning)


def check_outcome(case: Case, w: Path, code: int, out: str, err: str) -> None:
    check_one_line(case.expected.replace("{w}", str(w)), case.warns, code, out, err)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(case: Case, world: Path, clis: dict, capfd, caplog, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = snapshot(world)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = clis[case.script].main(argv_of(case, world))
    out, err = capfd.readouterr()
    # A real process prints Python warnings and other libraries' WARNING log records on stderr; pytest
    # intercepts both. The package's own records are on stdout already, through its console handler.
    shown = [str(w.message) for w in caught if issubclass(w.category, SHOWN_BY_DEFAULT)]
    shown += [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and not r.name.startswith("yolo_ray")
    ]
    err = "".join(f"{line}\n" for line in shown) + err
    check_outcome(case, world, code, out, err)
    after = snapshot(world)
    changed = [k for k in before if after.get(k) != before[k]]
    assert not changed, f"existing files changed or removed: {changed}"
    created = [k for k in after if k not in before and not (case.warns and k.startswith("runs/train/"))]
    assert not created, f"created by a start that failed: {created}"
    assert not (world / "pwned").exists()  # no pickle payload ever ran


# One case per kind of failure point, run as real processes: what a user's terminal shows.
PROCESS_CASES = [
    "train-epochs-0",
    "train-weights-malicious",
    "train-labels-all-missing",
    "train-project-read-only",
    "evolve-hyp-lr0-negative",
    "evolve-space-invalid-limit",
    "evolve-resume-training-run",
    "evolve-labels-all-malformed",
]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case_id", PROCESS_CASES)
def test_real_process_prints_only_the_error_line(case_id: str, world: Path):
    case = next(c for c in CASES if c.id == case_id)
    before = snapshot(world)
    proc = run_as_process(SCRIPTS[case.script], argv_of(case, world), timeout=110)
    check_outcome(case, world, proc.returncode, proc.stdout, proc.stderr)
    assert snapshot(world) == before


def test_the_table_covers_at_least_200_cases():
    assert len(CASES) >= 200 and len({c.id for c in CASES}) == len(CASES)
