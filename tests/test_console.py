"""What a user reads: progress that fits its destination, validation rows per epoch, logging set up once,
--help with defaults, runnable printed commands, the evolution's warnings, and imports from beside a checkout."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolo_ray import console
from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS, append_row, read_history
from yolo_ray.evolution.progress import unranked_warning

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))
HEAVY_MODULES = ("torch", "ray", "pandas", "cv2", "matplotlib", "onnx", "onnxruntime")
BASE_HYP = {"lr0": 0.01, "momentum": 0.937, "weight_decay": 0.0005}


def script_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def logged(tmp_path):
    """The console at INFO and a log file; yields the file's path."""
    console.setup_logging("info")
    path = tmp_path / "run.log"
    with console.log_file(path):
        yield path


def run_progress(total: int, **options) -> None:
    progress = console.Progress(total, "pass", **options)
    for _ in range(total):
        progress.update(images=4)
    progress.close()


def test_off_a_terminal_a_long_pass_logs_a_line_per_tenth_and_a_short_one_a_single_line(logged, capsys):
    run_progress(100, min_interval_s=0)  # as if every tenth took long
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out] == [f"{n}/100" for n in range(10, 101, 10)]
    assert all("img/s" in line for line in out) and all("ETA" in line for line in out[:-1])
    run_progress(100)  # quick tenths: the final line only
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["100/100"]
    assert len(logged.read_text().splitlines()) == 11


def test_on_a_terminal_the_bar_redraws_and_the_log_file_gets_one_line(logged, capsys, monkeypatch):
    monkeypatch.setattr(console, "console_is_terminal", lambda: True)
    run_progress(50, min_interval_s=0)
    out = capsys.readouterr().out
    assert "50/50" in out and "batches," not in out  # tqdm's bar, not our lines
    lines = logged.read_text().splitlines()
    assert len(lines) == 1 and "50/50 batches" in lines[0] and "img/s" in lines[0]


def test_quiet_keeps_warnings_and_log_files_hold_no_colour_codes(logged, capsys):
    console.setup_logging("quiet")
    console.LOGGER.info("an info line")
    console.LOGGER.warning("a \x1b[1m\x1b[32mwarning\x1b[39m\x1b[22m")
    console.setup_logging("info")
    assert capsys.readouterr().out.splitlines() == ["a \x1b[1m\x1b[32mwarning\x1b[39m\x1b[22m"]
    assert logged.read_text().split(" ", 2)[-1] == "a warning\n"


def test_verbosity_follows_the_options_and_upstreams_yolov5_verbose(monkeypatch):
    monkeypatch.delenv("YOLOv5_VERBOSE", raising=False)
    assert [console.verbosity(), console.verbosity(quiet=True), console.verbosity(verbose=True)] == [
        "info",
        "quiet",
        "verbose",
    ]
    monkeypatch.setenv("YOLOv5_VERBOSE", "False")
    assert console.verbosity() == "quiet"


def test_printed_commands_are_quoted_and_use_this_python(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "my runs" / "best.pt"
    words = shlex.split(console.shell_command("val.py", "--weights", weights))
    assert Path(words[0]).name.startswith("python") and words[1:] == [
        str(REPO / "scripts" / "val.py"),
        "--weights",
        str(weights),
    ]
    found = words[0] if os.sep in words[0] else __import__("shutil").which(words[0])
    assert os.path.abspath(found) == os.path.abspath(sys.executable)


@pytest.mark.parametrize(
    "module, absent",
    [
        ("yolo_ray.evolution.driver", ("torch", "torchvision")),  # the head node's driver trains nothing
        ("yolo_ray.evaluation.val", ("torchvision", "torch._dynamo")),  # NMS without torchvision's model zoo
        ("yolo_ray.infer.detect", ("torchvision", "torch._dynamo")),
    ],
)
def test_entry_modules_leave_out_what_they_never_use(module, absent):
    """Each of these costs seconds of CPU per process start (torch ~3 s, torchvision's torch._dynamo ~2.3 s)."""
    probe = f"import sys, {module}; print('LOADED', sorted(m for m in {absent!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=script_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_help_shows_defaults_and_imports_nothing_heavy(script):
    probe = (
        f"import runpy, sys; sys.argv = [{str(script)!r}, '--help']\n"
        f"try:\n    runpy.run_path({str(script)!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=script_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"  # --help in well under a second
    help_text = " ".join(proc.stdout.split())
    assert "(default: " in help_text
    if script.stem in ("train", "evolve"):
        assert "total training epochs (default: 100)" in help_text
        assert "(default: hyp.scratch-low.yaml)" in help_text and "--quiet" in help_text


def test_train_and_evolve_pick_the_same_model_for_user_data_and_say_so(stub_data, tmp_path, capsys, train_cli):
    from yolo_ray.options import DEFAULT_CFG
    from yolo_ray.training.inputs import default_model
    from yolo_ray.data.synthetic import builtin_weights
    from yolo_ray.evolution.run_options import resolve_options

    assert default_model(None, None, None) == (None, str(builtin_weights()), default_model(None, None, None)[2])
    assert default_model("d.yaml", "yolov5s.yaml", None) == ("yolov5s.yaml", None, "")
    console.setup_logging("info")
    opt = vars(
        train_cli.build_parser().parse_args(
            ["--data", str(stub_data), "--imgsz", "64", "--project", str(tmp_path / "runs")]
        )
    )
    for key in ("quiet", "verbose"):
        opt.pop(key)
    trained = train_cli.fresh_run_options(opt)
    train_out = capsys.readouterr().out
    evolved = resolve_options({"data": str(stub_data), "imgsz": 64, "project": str(tmp_path / "evolve")})
    evolve_out = capsys.readouterr().out
    assert (trained["cfg"], trained["weights"]) == (evolved["cfg"], evolved["weights"]) == (DEFAULT_CFG, None)
    note = f"training {DEFAULT_CFG} from scratch on {stub_data}"
    assert note in train_out and note in evolve_out


def test_a_checkout_named_yolo_ray_imports_from_the_folder_holding_it(tmp_path):
    (tmp_path / "yolo_ray").symlink_to(REPO, target_is_directory=True)  # a clone named as the package
    env = {k: v for k, v in script_env().items() if k != "PYTHONPATH"}
    probe = (
        "import yolo_ray, yolo_ray.evolution.space as s; "
        "print(yolo_ray.__file__, callable(yolo_ray.load), s.SEARCH_SPACE_DIR.is_dir())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(REPO / "yolo_ray" / "__init__.py"), "True", "True"]


def evolve_csv_with(tmp_path: Path, rows: list[tuple[float, dict]]) -> Path:
    path = tmp_path / "evolve.csv"
    for map5095, hyp in rows:
        append_row(path, dict(zip(EVOLVE_RESULT_KEYS, [0.5, 0.5, map5095, map5095, 0.1, 0.1, 0.1])), hyp)
    return path


def test_an_evolution_that_ranked_nothing_warns_and_a_ranked_one_does_not(tmp_path):
    mutated = {**BASE_HYP, "lr0": 0.012}
    tied = read_history(evolve_csv_with(tmp_path / "a", [(0.0, BASE_HYP), (0.0, mutated), (0.0, mutated)]))
    assert "all 3 trials scored the same fitness (0)" in unranked_warning(tied, BASE_HYP)
    base_best = read_history(evolve_csv_with(tmp_path / "b", [(0.3, BASE_HYP), (0.1, mutated)]))
    assert "the fittest row is the starting hyps" in unranked_warning(base_best, BASE_HYP)
    ranked = read_history(evolve_csv_with(tmp_path / "c", [(0.1, BASE_HYP), (0.3, mutated)]))
    assert unranked_warning(ranked, BASE_HYP) == ""


def test_no_lock_file_is_left_beside_evolve_csv(tmp_path):
    from yolo_ray.evolution.evolve_csv import remove_lock

    csv_path = evolve_csv_with(tmp_path, [(0.1, BASE_HYP)])
    assert (tmp_path / "evolve.csv.lock").exists()  # append_row's lock stays while the run goes on
    remove_lock(csv_path)  # the end of the run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evolve.csv"]


def test_evolve_png_tick_labels_do_not_overlap(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from yolo_ray.evolution.plots import evolve_figure

    rng = np.random.default_rng(0)
    rows = [
        (
            float(rng.uniform(0, 0.4)),
            {
                "lr0": float(rng.uniform(0.008, 0.012)),
                "momentum": float(rng.uniform(0.90, 0.95)),
                "weight_decay": float(rng.uniform(0.00046, 0.00054)),
            },
        )
        for _ in range(30)
    ]
    fig = evolve_figure(read_history(evolve_csv_with(tmp_path, rows)))
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.canvas.draw()
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) >= 2
        overlapping = [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
        assert not overlapping, f"{ax.get_title()}: {[t.get_text() for t in ax.get_xticklabels()]}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_epoch_training_console_log_file_and_printed_commands(tmp_path):
    from yolo_ray.data.synthetic import make_dataset

    data = make_dataset(tmp_path / "my data", seed=3, n_train=8, n_val=4, size=64)  # a space to quote
    project = tmp_path / "runs"
    tiny = ["--imgsz", "64", "--batch-size", "4", "--workers", "0", "--noautoanchor", "--noplots"]
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            "--data",
            str(data),
            *tiny,
            "--epochs",
            "3",
            "--project",
            str(project),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out, run = proc.stdout, project / "exp"
    assert "no --cfg/--weights: training yolov5n.yaml from scratch" in out  # the default, said
    table_header = re.compile(r"^\s+Class\s+Images\s+Instances\s+P\s+R\s+mAP50\s+mAP50-95$", re.M)
    assert len(table_header.findall(out)) == 4 and len(re.findall(r"^\s+all\s+4\s", out, re.M)) == 4  # 3 + final
    for epoch in range(3):
        epoch_lines = re.findall(rf"^\s+{epoch}/2\s.*$", out, re.M)
        assert len(epoch_lines) == 1 and "2/2 batches" in epoch_lines[0] and "img/s" in epoch_lines[0]
    assert out.count("Results saved to") == 1
    log = (run / "train.log").read_text()
    assert len(re.findall(r"all\s+4\s", log)) == 3 and len(re.findall(r"\d/2 batches", log)) == 3
    commands = {
        line.split(": ", 1)[0]: shlex.split(line.split(": ", 1)[1])
        for line in out.splitlines()
        if line.startswith(("Validate: ", "Train on: "))
    }
    assert commands["Validate"][2:] == [
        "--weights",
        str(run / "weights" / "best.pt"),
        "--data",
        str(data),
        "--imgsz",
        "64",
    ]
    for name, cmd in commands.items():  # each runs as printed (train shortened to one epoch)
        extra = ["--project", str(tmp_path / name)] + (tiny + ["--epochs", "1"] if name == "Train on" else [])
        done = subprocess.run(cmd + extra, cwd=tmp_path, capture_output=True, text=True, env=script_env(), timeout=200)
        assert done.returncode == 0, f"{name}: {done.stdout[-2000:]}{done.stderr[-2000:]}"


def test_a_line_per_item_comes_for_every_item_up_to_the_last(capsys):
    console.setup_logging("info")
    progress = console.Progress(3, "", "trial", final_line=False, min_interval_s=0, initial=1, every=1, own_counts=True)
    for done in (2, 3):
        progress.update(desc=f"evolve: {done}/3 generations done")
    progress.close()
    assert capsys.readouterr().out.splitlines() == ["evolve: 2/3 generations done", "evolve: 3/3 generations done"]
