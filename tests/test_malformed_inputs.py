"""The malformed-input table: bad files, bad labels, bad options and bad states given to scripts/train.py
and scripts/evolve.py, each as a new user would type it.

Every case must end in one `error: ...` line naming the file or option (exit 2), or, where training can
honestly go on, in one counted WARNING line (exit 0); never a traceback, and no file that existed before
the case changes (every run folder and dataset is hashed before and after).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from malformed_world import build_world, evolve_csv_text, read_only_folders, snapshot, write

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"train": REPO / "scripts" / "train.py", "evolve": REPO / "scripts" / "evolve.py"}
# What every case starts from; a case's own arguments come after and override these.
BASE_ARGS = {
    "train": [
        "--cfg",
        "yolov5n.yaml",
        "--data",
        "{w}/good/data.yaml",
        "--imgsz",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--epochs",
        "1",
        "--noautoanchor",
        "--noplots",
        "--project",
        "{w}/runs/train",
    ],
    "evolve": [
        "--data",
        "{w}/good/data.yaml",
        "--imgsz",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--epochs",
        "1",
        "--generations",
        "2",
        "--project",
        "{w}/runs/evolve",
    ],
}


@dataclass(frozen=True)
class Case:
    id: str
    script: str  # "train" or "evolve"
    args: tuple[str, ...]  # "{w}" is the world folder
    expected: str  # in the error (or warning) line: names the file or option, and the problem
    warns: bool = False  # training goes on (exit 0) with one WARNING line instead of an error


def both(id_: str, args: list[str], expected: str) -> list[Case]:
    return [Case(f"{script}-{id_}", script, tuple(args), expected) for script in ("train", "evolve")]


def train(id_: str, args: list[str], expected: str, warns: bool = False) -> list[Case]:
    return [Case(f"train-{id_}", "train", tuple(args), expected, warns)]


def evolve(id_: str, args: list[str], expected: str) -> list[Case]:
    return [Case(f"evolve-{id_}", "evolve", tuple(args), expected)]


F = "{w}/files"
CASES: list[Case] = [
    # ---- the data yaml
    *both("data-missing", ["--data", f"{F}/missing.yaml"], "missing.yaml: file not found"),
    *both("data-is-a-folder", ["--data", "{w}/good"], "good: is a folder, expected a YAML file"),
    *both("data-invalid-yaml", ["--data", f"{F}/invalid.yaml"], "invalid.yaml: not valid YAML"),
    *train("data-a-list", ["--data", f"{F}/list.yaml"], "list.yaml: expected a YAML mapping, got list"),
    *train("data-empty-file", ["--data", f"{F}/empty.yaml"], "empty.yaml: expected a YAML mapping"),
    *train("data-binary", ["--data", f"{F}/binary.yaml"], "binary.yaml: "),
    *train("data-no-train", ["--data", f"{F}/data_no_train.yaml"], "data_no_train.yaml: 'train' is missing"),
    *train(
        "data-train-not-found",
        ["--data", f"{F}/data_train_missing.yaml"],
        "data_train_missing.yaml: train images not found",
    ),
    *train(
        "data-val-not-found", ["--data", f"{F}/data_val_missing.yaml"], "data_val_missing.yaml: val images not found"
    ),
    *train("data-no-names", ["--data", f"{F}/data_no_names.yaml"], "data_no_names.yaml: needs 'names'"),
    *train("data-names-gap", ["--data", f"{F}/data_names_gap.yaml"], "data_names_gap.yaml: 'names' ids must be"),
    *train("data-nc-mismatch", ["--data", f"{F}/data_nc_mismatch.yaml"], "nc=3 but 'names' has 4 entries"),
    *train("data-nc-negative", ["--data", f"{F}/data_nc_negative.yaml"], "'nc' must be a positive integer"),
    *train("data-path-not-str", ["--data", f"{F}/data_path_number.yaml"], "'path' must be a folder path"),
    *both("data-no-images", ["--data", "{w}/noimages/data.yaml"], "no images found"),
    # ---- labels: nothing usable is an error; a few percent missing is a counted warning
    *both(
        "labels-all-missing",
        ["--data", "{w}/labels_missing/data.yaml"],
        "No labels found in {w}/labels_missing/labels/train, can not start training (16 images: 0 label files "
        "found, 16 missing",
    ),
    *both("labels-all-malformed", ["--data", "{w}/labels_malformed/data.yaml"], "can not start training"),
    *train("labels-pixel-coordinates", ["--data", "{w}/labels_pixels/data.yaml"], "can not start training"),
    *train("labels-nan", ["--data", "{w}/labels_nan/data.yaml"], "can not start training"),
    *train("labels-negative", ["--data", "{w}/labels_negative/data.yaml"], "can not start training"),
    *train(
        "labels-all-empty",
        ["--data", "{w}/labels_empty/data.yaml"],
        "No labels found in {w}/labels_empty/labels/train, can not start training (16 images: 16 label files "
        "found, 0 missing, 16 empty",
    ),
    *both("labels-class-above-nc", ["--data", "{w}/labels_class/data.yaml"], "has class 7 but the data has nc=4"),
    *train(
        "images-all-corrupt",
        ["--data", "{w}/images_corrupt/data.yaml"],
        "No usable images in {w}/images_corrupt/images/train, can not start training (16 images",
    ),
    *train(
        "labels-some-missing",
        ["--data", "{w}/labels_some_missing/data.yaml"],
        "4 of 16 images have no label file and train as background",
        warns=True,
    ),
    *train(
        "labels-some-pixel-rows",
        ["--data", "{w}/labels_some_pixels/data.yaml"],
        "WARNING: train: {w}/labels_some_pixels/labels/train: ",
        warns=True,
    ),
    # ---- weights and model cfg
    *both("weights-missing", ["--weights", f"{F}/yolov5s.pt"], "yolov5s.pt: weights file not found"),
    *both("weights-random-bytes", ["--weights", f"{F}/random.pt"], "random.pt: not a readable PyTorch checkpoint"),
    *both("weights-malicious", ["--weights", f"{F}/malicious.pt"], "malicious.pt: refused to load"),
    *train("weights-malicious-zip", ["--weights", f"{F}/malicious_zip.pt"], "malicious_zip.pt: refused to load"),
    *train("weights-text", ["--weights", f"{F}/text.pt"], "text.pt: not a readable PyTorch checkpoint"),
    *train("weights-a-list", ["--weights", f"{F}/list.pt"], "list.pt: expected a checkpoint dict"),
    *train("weights-no-model", ["--weights", f"{F}/no_model.pt"], "no_model.pt: no model weights"),
    *both(
        "weights-without-yaml",
        ["--weights", f"{F}/state_dict.pt", "--cfg", ""],
        "state_dict.pt: checkpoint holds no model yaml; pass --cfg as well",
    ),
    *both("cfg-unknown", ["--cfg", "yolov9q.yaml"], "yolov9q.yaml: model yaml not found"),
    *both("cfg-invalid-yaml", ["--cfg", f"{F}/invalid.yaml"], "invalid.yaml: not valid YAML"),
    *train("cfg-unknown-module", ["--cfg", f"{F}/cfg_module.yaml"], "cfg_module.yaml: layer 0 module 'Focus2'"),
    *train("cfg-no-anchors", ["--cfg", f"{F}/cfg_no_anchors.yaml"], "cfg_no_anchors.yaml: missing key 'anchors'"),
    # ---- hyperparameters: present, numbers, finite, inside their valid range
    *both("hyp-missing", ["--hyp", f"{F}/hyp_missing.yaml"], "hyp_missing.yaml: file not found"),
    *both(
        "hyp-lr0-nan",
        ["--hyp", f"{F}/hyp_lr0_nan.yaml"],
        "hyp_lr0_nan.yaml: hyperparameter lr0 = nan is not a finite number",
    ),
    *both(
        "hyp-lr0-negative",
        ["--hyp", f"{F}/hyp_lr0_neg.yaml"],
        "hyp_lr0_neg.yaml: hyperparameter lr0 = -0.01 is out of range (valid: (0, inf))",
    ),
    *train("hyp-momentum-1", ["--hyp", f"{F}/hyp_momentum_1.yaml"], "momentum = 1 is out of range (valid: [0, 1))"),
    *train("hyp-mosaic-1.5", ["--hyp", f"{F}/hyp_mosaic.yaml"], "mosaic = 1.5 is out of range (valid: [0, 1])"),
    *train("hyp-fliplr-negative", ["--hyp", f"{F}/hyp_fliplr.yaml"], "fliplr = -0.5 is out of range"),
    *train("hyp-scale-1", ["--hyp", f"{F}/hyp_scale.yaml"], "scale = 1 is out of range (valid: [0, 1))"),
    *train("hyp-weight-decay-negative", ["--hyp", f"{F}/hyp_wd.yaml"], "weight_decay = -0.0001 is out of range"),
    *evolve("hyp-hsv-inf", ["--hyp", f"{F}/hyp_hsv_inf.yaml"], "hsv_h = inf is not a finite number"),
    *evolve("hyp-anchor-t-below-1", ["--hyp", f"{F}/hyp_anchor_t.yaml"], "anchor_t = 0.5 is out of range"),
    *train("hyp-missing-keys", ["--hyp", f"{F}/hyp_partial.yaml"], "hyp_partial.yaml: missing hyperparameters lrf"),
    *train("hyp-not-a-number", ["--hyp", f"{F}/hyp_text.yaml"], "hyperparameter 'lr0' must be a number, got 'fast'"),
    *train("hyp-a-list", ["--hyp", f"{F}/list.yaml"], "list.yaml: expected a YAML mapping"),
    # ---- numbers and choices
    *both("epochs-0", ["--epochs", "0"], "--epochs 0 is out of range (valid: [1, inf))"),
    *both("workers-negative", ["--workers", "-1"], "--workers -1 is out of range (valid: [0, inf))"),
    *both("batch-size-0", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    *both(
        "batch-split",
        ["--batch-size", "6", "--ray-workers", "4"],
        "--batch-size 6 must be a multiple of --ray-workers 4",
    ),
    *both("imgsz-0", ["--imgsz", "0"], "--imgsz 0 is out of range (valid: [1, inf))"),
    *both("label-smoothing-1.5", ["--label-smoothing", "1.5"], "--label-smoothing 1.5 is out of range (valid: [0, 1))"),
    *both("freeze-negative", ["--freeze", "-1"], "--freeze -1 is out of range"),
    *both("seed-negative", ["--seed", "-5"], "--seed -5 is out of range"),
    *both("ray-workers-0", ["--ray-workers", "0"], "--ray-workers must be at least 1, got 0"),
    *both("image-weights-ddp", ["--image-weights", "--ray-workers", "2"], "--image-weights is not compatible"),
    *both("epochs-not-int", ["--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
    *both("cache-choice", ["--cache", "gpu"], "argument --cache: invalid choice: 'gpu'"),
    *both("unknown-option", ["--bogus"], "unrecognized arguments: --bogus"),
    *train("optimizer-choice", ["--optimizer", "RMSProp"], "argument --optimizer: invalid choice: 'RMSProp'"),
    *train("patience-negative", ["--patience", "-1"], "--patience -1 is out of range"),
    *train("cpus-per-worker-negative", ["--cpus-per-worker", "-2"], "--cpus-per-worker -2 is out of range"),
    *train("device-absent-gpu", ["--device", "7"], "--device '7': CUDA device 7 is not available"),
    *train("device-garbage", ["--device", "gpu0"], "--device 'gpu0': expected '', 'cpu' or CUDA indices"),
    *train(
        "imgsz-31-rounds-up",
        ["--imgsz", "31"],
        "WARNING: --img-size 31 must be multiple of max stride 32, updating to 64",
        warns=True,
    ),
    *evolve("generations-0", ["--generations", "0"], "--generations 0 is out of range (valid: [1, inf))"),
    *evolve("concurrency-0", ["--concurrency", "0"], "--concurrency 0 is out of range"),
    *evolve("cpus-per-trial-0", ["--cpus-per-trial", "0"], "--cpus-per-trial 0 is out of range (valid: (0, inf))"),
    *evolve("gpus-per-trial-negative", ["--gpus-per-trial", "-1"], "--gpus-per-trial -1 is out of range"),
    *evolve("max-retries-negative", ["--max-retries", "-1"], "--max-retries -1 is out of range"),
    *evolve("max-failed-trials-0", ["--max-failed-trials", "0"], "--max-failed-trials 0 is out of range"),
    *evolve("parent-choice", ["--parent", "best"], "argument --parent: invalid choice: 'best'"),
    # ---- search spaces
    *evolve(
        "space-missing", ["--search-space", f"{F}/space_missing.yaml"], "space_missing.yaml: search space not found"
    ),
    *evolve("space-invalid-yaml", ["--search-space", f"{F}/invalid.yaml"], "invalid.yaml: not valid YAML"),
    *evolve("space-unknown-key", ["--search-space", f"{F}/space_key.yaml"], "'lr9' is not a YOLOv5 hyperparameter"),
    *evolve("space-not-a-triple", ["--search-space", f"{F}/space_pair.yaml"], "lr0: expected [gain, low, high]"),
    *evolve("space-low-above-high", ["--search-space", f"{F}/space_order.yaml"], "lr0: low 0.1 > high 0.001"),
    *evolve("space-nan", ["--search-space", f"{F}/space_nan.yaml"], "lr0: NaN in"),
    *evolve("space-negative-gain", ["--search-space", f"{F}/space_gain.yaml"], "lr0: gain must be >= 0"),
    *evolve("space-no-gain", ["--search-space", f"{F}/space_frozen.yaml"], "no key has a gain > 0"),
    *evolve("space-not-numbers", ["--search-space", f"{F}/space_text.yaml"], "lr0: [gain, low, high] must be numbers"),
    *evolve(
        "space-invalid-limit",
        ["--search-space", f"{F}/space_limit.yaml"],
        "limit momentum = 1.2 is out of range (valid: [0, 1))",
    ),
    # ---- --project that cannot hold a run
    *both("project-is-a-file", ["--project", f"{F}/empty.yaml"], "empty.yaml is not a folder"),
    *both("project-under-a-file", ["--project", f"{F}/empty.yaml/runs"], "empty.yaml is not a folder"),
    *both("project-read-only", ["--project", "{w}/readonly/runs"], "{w}/readonly is not writable"),
    *both("name-empty", ["--name", ""], "--name '': expected a folder name inside --project"),
    # ---- evolve --resume of what is not a (readable) evolution
    *evolve("resume-missing-dir", ["--resume", "{w}/runs/evolve/nope"], "nope: --resume directory not found"),
    *evolve(
        "resume-empty-folder",
        ["--resume", "{w}/runs/evolve/empty"],
        "empty: --resume folder is not an evolution (no evolve.csv)",
    ),
    *evolve(
        "resume-training-run",
        ["--resume", "{w}/runs/train/exp"],
        "{w}/runs/train/exp: --resume folder is not an evolution",
    ),
    *evolve(
        "resume-bare-only-stubs",
        ["--resume", "--project", "{w}/runs/stubs"],
        "{w}/runs/stubs: no evolution to resume (no run folder whose evolve.csv holds a row)",
    ),
    *evolve("resume-bare-nothing", ["--resume", "--project", "{w}/runs/none"], "no evolution to resume"),
    *evolve(
        "resume-csv-file-bad-last-line",
        ["--resume", "{w}/runs/evolve/short_last/evolve.csv"],
        "short_last/evolve.csv, line 4: expected 36 comma-separated values",
    ),
    *evolve(
        "resume-csv-bad-header",
        ["--resume", "{w}/runs/evolve/bad_header"],
        "bad_header/evolve.csv: header must start with the result columns",
    ),
    *evolve(
        "resume-csv-not-numbers",
        ["--resume", "{w}/runs/evolve/not_numbers"],
        "not_numbers/evolve.csv, line 2: values must be numbers",
    ),
    *evolve(
        "resume-csv-other-columns",
        ["--resume", "{w}/runs/evolve/other_columns"],
        "other_columns/evolve.csv: its hyperparameter columns do not match",
    ),
    *evolve("resume-opt-invalid-yaml", ["--resume", "{w}/runs/evolve/bad_opt"], "bad_opt/opt.yaml: not valid YAML"),
    *evolve("resume-opt-data-gone", ["--resume", "{w}/runs/evolve/data_gone"], "gone.yaml: file not found"),
    *evolve("resume-read-only", ["--resume", "{w}/readonly/evolution"], "evolution: --resume folder is not writable"),
    # ---- train --resume of what is not a checkpoint
    *train("resume-bare-nothing", ["--resume", "--project", "{w}/runs/none"], "no last.pt found to resume"),
    *train("resume-missing", ["--resume", f"{F}/last.pt"], "last.pt: --resume checkpoint not found"),
    *train(
        "resume-random-bytes",
        ["--resume", "{w}/runs/train/torn/weights/last.pt"],
        "last.pt: not a readable yolo_ray training checkpoint",
    ),
    *train(
        "resume-random-bytes-run-folder",
        ["--resume", "{w}/runs/train/torn"],
        "last.pt: not a readable yolo_ray training checkpoint",
    ),
    *train(
        "resume-copy-inside-another-run",
        ["--resume", "{w}/runs/train/exp/backup/last.pt"],
        "backup/last.pt: --resume checkpoint is not in a run folder",
    ),
    *train(
        "resume-lone-checkpoint",
        ["--resume", "{w}/runs/train/lone/last.pt"],
        "lone/last.pt: --resume checkpoint is not in a run folder",
    ),
    *train(
        "resume-file-not-a-checkpoint-outside-run",
        ["--resume", f"{F}/random.pt"],
        "random.pt: --resume checkpoint is not in a run folder",
    ),
    *train(
        "resume-folder-without-weights",
        ["--resume", "{w}/runs/train/no_weights"],
        "no_weights: --resume folder holds no weights/last.pt",
    ),
    *train("resume-folder-not-a-run", ["--resume", "{w}/good"], "good: --resume folder holds no weights/last.pt"),
    # ---- evolve --device: trials on a new local cluster run here, so the device must exist here
    *evolve("device-absent-gpus", ["--device", "7,8"], "--device '7,8': CUDA device 7 is not available"),
    *evolve("device-garbage", ["--device", "banana"], "--device 'banana': expected '', 'cpu' or CUDA indices"),
    *evolve(
        "device-garbage-on-a-cluster",
        ["--device", "banana", "--address", "127.0.0.1:1"],
        "--device 'banana': expected '', 'cpu' or CUDA indices",
    ),
    *evolve("device-half-garbage", ["--device", "0,x"], "--device '0,x': expected '', 'cpu' or CUDA indices"),
    *train("device-half-garbage", ["--device", "0,x"], "--device '0,x': expected '', 'cpu' or CUDA indices"),
    # ---- folders where files go, files where folders go
    *both("hyp-is-a-folder", ["--hyp", "{w}/good"], "good: is a folder, expected a YAML file"),
    *both("cfg-is-a-folder", ["--cfg", "{w}/good"], "good: is a folder, expected a model YAML file"),
    *both("weights-is-a-folder", ["--weights", "{w}/good"], "good: is a folder, expected a weights file (.pt)"),
    *evolve(
        "space-is-a-folder", ["--search-space", "{w}/good"], "good: is a folder, expected a search space YAML file"
    ),
    *train("resume-a-yaml", ["--resume", f"{F}/invalid.yaml"], "invalid.yaml: --resume checkpoint is not in a run"),
    *evolve("resume-a-file", ["--resume", f"{F}/random.pt"], "files: --resume folder is not an evolution"),
    *evolve("tune-storage-is-a-file", ["--tune-storage", f"{F}/empty.yaml"], "empty.yaml is not a folder"),
    # ---- storage the run could never be kept in
    *both(
        "storage-read-only",
        ["--storage-path", "file://{w}/readonly/store"],
        "--storage-path file://{w}/readonly/store: {w}/readonly is not writable",
    ),
    *both(
        "storage-under-a-file",
        ["--storage-path", f"file://{F}/empty.yaml/store"],
        "--storage-path file://{w}/files/empty.yaml/store: {w}/files/empty.yaml is not a folder",
    ),
    *both(
        "storage-not-a-uri", ["--storage-path", "nosuch://bucket/runs"], "--storage-path nosuch://bucket/runs: not a"
    ),
    *evolve(
        "storage-unreachable-bucket",
        ["--storage-path", "s3://runs/evolve?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"],
        "cannot reach it",
    ),
    *evolve("tune-storage-read-only", ["--tune-storage", "{w}/readonly/tune"], "{w}/readonly is not writable"),
    *both(
        "resume-stored-read-only",
        ["--resume", "file://{w}/readonly/evolution"],
        "--resume file://{w}/readonly/evolution: {w}/readonly/evolution is not writable",
    ),
    *train("resume-stored-nothing", ["--resume", "file://{w}/runs/none/stored"], "no stored run there to resume"),
    *evolve("resume-stored-nothing", ["--resume", "file://{w}/runs/none/stored"], "no stored evolution there"),
    *evolve("bucket-and-storage", ["--bucket", "b", "--storage-path", "file://{w}/s"], "--bucket and --storage-path"),
    # ---- more numbers
    *both("epochs-negative", ["--epochs", "-3"], "--epochs -3 is out of range"),
    *both("batch-size-negative", ["--batch-size", "-8"], "--batch-size must be at least 1, got -8"),
    *both("imgsz-negative", ["--imgsz", "-64"], "--imgsz -64 is out of range"),
    *both("imgsz-not-int", ["--imgsz", "64.5"], "invalid int value: '64.5'"),
    *both("label-smoothing-nan", ["--label-smoothing", "nan"], "--label-smoothing nan is not a finite number"),
    *both("placement-timeout-0", ["--placement-timeout", "0"], "--placement-timeout 0 is out of range"),
    *both("seed-too-big", ["--seed", "4294967296"], "--seed 4294967296 is out of range"),
    *both("optimizer-lowercase", ["--optimizer", "sgd"], "argument --optimizer: invalid choice: 'sgd'"),
    *both("trackers-unknown", ["--trackers", "neptune"], "neptune"),
    *both("name-with-slash-up", ["--name", "../escape"], "--name '../escape': expected a folder name"),
    *train("max-failures-negative", ["--max-failures", "-1"], "--max-failures -1 is out of range"),
    *train("save-period-not-int", ["--save-period", "often"], "argument --save-period: invalid int value"),
    *train("gpus-per-worker-negative", ["--gpus-per-worker", "-1"], "--gpus-per-worker -1 is out of range"),
    *evolve("population-1", ["--strategy", "population", "--population", "1"], "--population 1"),
    *evolve("time-budget-garbage", ["--time-budget", "soon"], "--time-budget 'soon'"),
    *evolve("patience-rows-0", ["--patience-rows", "0"], "--patience-rows 0 is out of range"),
    *evolve("strategy-unknown", ["--strategy", "bayes"], "argument --strategy: invalid choice: 'bayes'"),
    *evolve("concurrency-not-int", ["--concurrency", "many"], "argument --concurrency: invalid int value"),
    *evolve("early-stop-population", ["--strategy", "population", "--early-stop"], "--early-stop cannot be used"),
    *train(
        "resume-bad-opt-yaml",
        ["--resume", "{w}/runs/train/bad_opt/weights/last.pt"],
        "bad_opt/opt.yaml: not valid YAML",
    ),
]


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
    expected = case.expected.replace("{w}", str(w))
    assert "Traceback" not in out + err, out + err
    err_lines = err.splitlines()
    if case.warns:
        assert code == 0, out[-2000:] + err[-2000:]
        warning_lines = [line for line in (out + err).splitlines() if "WARNING" in line]
        assert len(warning_lines) == 1 and expected in warning_lines[0], warning_lines
        assert not any(line.startswith("error:") for line in err_lines), err
    else:
        assert code == 2, out[-2000:] + err[-2000:]
        assert len(err_lines) == 1 and err_lines[0].startswith("error: "), err
        assert expected in err_lines[0], err_lines[0]


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
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS[case.script]), *argv_of(case, world)],
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    check_outcome(case, world, proc.returncode, proc.stdout, proc.stderr)
    assert snapshot(world) == before


def test_the_table_covers_at_least_200_cases():
    assert len(CASES) >= 200 and len({c.id for c in CASES}) == len(CASES)


# ---- the behaviours behind some rows, one level down


@pytest.mark.timeout(20)
def test_bare_evolve_resume_takes_the_newest_folder_with_a_row(tmp_path):
    from yolo_ray.evolution.run_options import find_resume_dir

    hyp = {"lr0": 0.01, "momentum": 0.9}
    write(tmp_path / "exp" / "evolve.csv", evolve_csv_text(1, hyp))
    write(tmp_path / "exp" / "opt.yaml", "generations: 5\nsearch_space: yolov5\n")
    for stub, text in [("exp2", None), ("exp3", evolve_csv_text(0, hyp))]:  # later starts with no row
        write(tmp_path / stub / "opt.yaml", "generations: 5\nsearch_space: yolov5\n")
        if text:
            write(tmp_path / stub / "evolve.csv", text)
        os.utime(tmp_path / stub, (2e9, 2e9))
    assert find_resume_dir(True, tmp_path) == tmp_path / "exp"
    assert find_resume_dir(str(tmp_path / "exp" / "evolve.csv"), tmp_path) == tmp_path / "exp"
    assert find_resume_dir(str(tmp_path / "exp2"), tmp_path) == tmp_path / "exp2"  # named: an evolution, no row


@pytest.mark.timeout(60)
def test_evolve_rounds_imgsz_up_to_the_stride_like_train(tmp_path, capsys):
    from yolo_ray.data.synthetic import make_dataset
    from yolo_ray.evolution.run_options import resolve_options

    data = make_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    opt = resolve_options({"imgsz": 31, "project": str(tmp_path / "runs"), "cfg": "yolov5n.yaml", "data": str(data)})
    assert opt["imgsz"] == 64
    assert opt["save_dir"] is None and not (tmp_path / "runs").exists()  # the folder comes once Ray placed the run
    assert "WARNING: --img-size 31 must be multiple of max stride 32, updating to 64" in capsys.readouterr().out


@pytest.mark.timeout(30)
def test_autoanchor_keeps_the_anchors_when_there_is_nothing_to_fit(capsys):
    import numpy as np

    from yolo_ray.models import build_model
    from yolo_ray.training.autoanchor import check_anchors

    detect = build_model("yolov5n.yaml").model[-1]
    anchors = detect.anchors.clone()
    shapes = np.array([[64, 48], [64, 64]], dtype=np.float64)
    no_labels = [np.zeros((0, 5), dtype=np.float32)] * 2
    assert check_anchors(detect, shapes, no_labels, imgsz=64, rng=np.random.default_rng(0)) is False
    assert torch.equal(detect.anchors, anchors)
    assert "keeping the model's anchors" in capsys.readouterr().out


@pytest.mark.timeout(20)
def test_resume_takes_a_run_folder_and_its_own_checkpoint(tmp_path):
    from yolo_ray.training.rundir import resume_checkpoint

    last = tmp_path / "exp" / "weights" / "last.pt"
    write(tmp_path / "exp" / "opt.yaml", "epochs: 3\n")
    last.parent.mkdir()
    torch.save({"epoch": 1}, last)
    assert resume_checkpoint(tmp_path / "exp") == last
    assert resume_checkpoint(last) == last


@pytest.mark.timeout(60)
def test_options_the_strategy_does_not_read_are_named_in_one_warning(tmp_path, capsys):
    from yolo_ray.data.synthetic import make_dataset
    from yolo_ray.evolution.run_options import resolve_options

    data = make_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    base = {"project": str(tmp_path / "runs"), "cfg": "yolov5n.yaml", "data": str(data), "imgsz": 64}
    resolve_options({**base, "population": 20})
    resolve_options({**base, "strategy": "random", "parent": "weighted"})
    resolve_options({**base, "strategy": "population", "population": 20})  # read: no warning
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert warnings == [
        "WARNING: --population 20 has no effect with --strategy classic (only --strategy population reads it)",
        "WARNING: --parent weighted has no effect with --strategy random (only --strategy classic reads it)",
    ]


@pytest.mark.timeout(60)
def test_options_a_resume_overrides_with_the_runs_own_are_named_in_one_warning(tmp_path, capsys, monkeypatch):
    import yaml

    from yolo_ray.config import DEFAULT_HYP, load_hyp
    from yolo_ray.data.synthetic import make_dataset
    from yolo_ray.evolution.run_options import resolve_options

    data = make_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    run = tmp_path / "runs" / "exp"
    write(run / "evolve.csv", evolve_csv_text(2, load_hyp(DEFAULT_HYP)))
    saved = {"generations": 5, "search_space": "yolov5", "strategy": "classic", "data": str(data), "imgsz": 64}
    write(run / "opt.yaml", yaml.safe_dump({**saved, "cfg": "yolov5n.yaml"}))
    monkeypatch.chdir(data.parent)  # --data given relative: the same file as the absolute path in opt.yaml
    opt = resolve_options({"resume": str(run), "strategy": "random", "imgsz": 128, "data": data.name, "generations": 8})
    assert (opt["strategy"], opt["imgsz"], opt["generations"]) == ("classic", 64, 8)
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert warnings == [
        "WARNING: --resume continues with the run's own options (its opt.yaml); ignored: "
        "--imgsz 128 (the run's: 64), --strategy random (the run's: classic)"
    ]
