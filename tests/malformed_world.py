"""The world the malformed-input table runs in: a small real dataset and broken copies of it, bad files of
every kind, and existing runs (training runs, evolutions, broken evolutions) that no bad start may touch."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import torch
import yaml

from yolo_ray.config import DEFAULT_HYP
from yolo_ray.evolution.evolve_csv import EVOLVE_RESULT_KEYS, format_header, format_row

CACHE_SUFFIX = ".yolo_ray.cache"  # label caches may appear beside scanned labels: upstream writes them too
READ_ONLY = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP


def build_world(w: Path) -> Path:
    make_datasets(w)
    make_files(w)
    make_runs(w)
    return w


def read_only_folders(w: Path) -> list[Path]:
    return [w / "readonly" / "evolution", w / "readonly"]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def copy_dataset(good: Path, dest: Path, train_label=None, image_bytes: bytes | None = None) -> None:
    """good's images and val labels; train_label(i, original text) gives each train label text (None: no file)."""
    shutil.copytree(good / "images", dest / "images")
    shutil.copytree(good / "labels" / "val", dest / "labels" / "val")
    shutil.copy(good / "data.yaml", dest / "data.yaml")
    for i, image in enumerate(sorted((good / "images" / "train").iterdir())):
        if image_bytes is not None:
            (dest / "images" / "train" / image.name).write_bytes(image_bytes)
        original = (good / "labels" / "train" / f"{image.stem}.txt").read_text()
        text = train_label(i, original) if train_label else original
        if text is not None:
            write(dest / "labels" / "train" / f"{image.stem}.txt", text)


def pixel_rows(text: str) -> str:
    return "".join(f"{line.split()[0]} 120 80 40 30\n" for line in text.splitlines())


def make_datasets(w: Path) -> None:
    from yolo_ray.data.synthetic import make_dataset

    good = make_dataset(w / "good", seed=3, n_train=16, n_val=8, size=64).parent
    copy_dataset(good, w / "labels_missing", lambda i, t: None)
    copy_dataset(good, w / "labels_malformed", lambda i, t: "car 0.5 0.5 0.2 0.2\n0 0.5\n")
    copy_dataset(good, w / "labels_pixels", lambda i, t: pixel_rows(t))
    copy_dataset(good, w / "labels_nan", lambda i, t: "0 nan 0.5 0.2 0.2\n")
    copy_dataset(good, w / "labels_negative", lambda i, t: "0 -0.5 0.5 -0.2 0.2\n")
    copy_dataset(good, w / "labels_empty", lambda i, t: "")
    copy_dataset(good, w / "labels_class", lambda i, t: t + "7 0.5 0.5 0.2 0.2\n" if i == 5 else t)
    copy_dataset(good, w / "images_corrupt", image_bytes=b"not an image")
    copy_dataset(good, w / "labels_some_missing", lambda i, t: None if i % 4 == 0 else t)
    copy_dataset(good, w / "labels_some_pixels", lambda i, t: t + pixel_rows(t) if i < 3 else t)
    write(w / "noimages" / "images" / "train" / "readme.txt", "no images here")
    write(w / "noimages" / "data.yaml", "train: images/train\nval: images/train\nnames: [thing]\n")


def make_files(w: Path) -> None:
    f = w / "files"
    good_data = yaml.safe_load((w / "good" / "data.yaml").read_text())
    data = {**good_data, "path": str(w / "good")}
    write(f / "invalid.yaml", "a: [b\n")
    write(f / "list.yaml", "- a\n- b\n")
    write(f / "empty.yaml", "")
    write(f / "binary.yaml", bytes(range(256)) * 4)
    write(f / "data_no_train.yaml", yaml.safe_dump({k: v for k, v in data.items() if k != "train"}))
    write(f / "data_train_missing.yaml", yaml.safe_dump({**data, "train": "images/nowhere"}))
    write(f / "data_val_missing.yaml", yaml.safe_dump({**data, "val": "images/nowhere"}))
    write(f / "data_no_names.yaml", yaml.safe_dump({k: v for k, v in data.items() if k not in ("names", "nc")}))
    write(f / "data_names_gap.yaml", yaml.safe_dump({**data, "nc": None, "names": {0: "a", 2: "b"}}))
    write(f / "data_nc_mismatch.yaml", yaml.safe_dump({**data, "nc": 3}))
    write(f / "data_nc_negative.yaml", yaml.safe_dump({**{k: v for k, v in data.items() if k != "names"}, "nc": -1}))
    write(f / "data_path_number.yaml", yaml.safe_dump({**data, "path": 5}))

    write(f / "random.pt", bytes((i * 97 + 13) % 256 for i in range(4096)))
    write(f / "text.pt", "not a checkpoint\n")
    with open(f / "malicious.pt", "wb") as file:
        pickle.dump(_Payload(os.system, f"touch {w / 'pwned'}"), file, protocol=2)
    torch.save(
        {"epoch": -1, "model": _Payload(eval, f"open({str(w / 'pwned')!r}, 'w').close()")}, f / "malicious_zip.pt"
    )
    torch.save([1, 2, 3], f / "list.pt")
    torch.save({"epoch": 3, "model": 5}, f / "no_model.pt")
    torch.save({"w": torch.zeros(3)}, f / "state_dict.pt")
    write(
        f / "cfg_module.yaml",
        "nc: 80\ndepth_multiple: 1\nwidth_multiple: 1\nanchors: 3\n"
        "backbone: [[-1, 1, Focus2, [64]]]\nhead: [[[0], 1, Detect, [nc, anchors]]]\n",
    )
    write(f / "cfg_no_anchors.yaml", "nc: 80\ndepth_multiple: 1\nwidth_multiple: 1\n")

    hyp = yaml.safe_load(DEFAULT_HYP.read_text())
    for name, change in {
        "lr0_nan": {"lr0": math.nan},
        "lr0_neg": {"lr0": -0.01},
        "momentum_1": {"momentum": 1.0},
        "mosaic": {"mosaic": 1.5},
        "fliplr": {"fliplr": -0.5},
        "scale": {"scale": 1.0},
        "wd": {"weight_decay": -1e-4},
        "hsv_inf": {"hsv_h": math.inf},
        "anchor_t": {"anchor_t": 0.5},
        "text": {"lr0": "fast"},
    }.items():
        write(f / f"hyp_{name}.yaml", yaml.safe_dump({**hyp, **change}, sort_keys=False))
    write(f / "hyp_partial.yaml", "lr0: 0.01\n")

    spaces = {
        "key": "lr9: [1, 0.00001, 0.1]\n",
        "pair": "lr0: [1, 0.1]\n",
        "order": "lr0: [1, 0.1, 0.001]\n",
        "nan": "lr0: [1, .nan, 0.1]\n",
        "gain": "lr0: [-1, 0.00001, 0.1]\n",
        "frozen": "lr0: [0, 0.00001, 0.1]\n",
        "text": "lr0: [one, 0.00001, 0.1]\n",
        "limit": "momentum: [0.3, 0.6, 1.2]\n",
    }
    for name, text in spaces.items():
        write(f / f"space_{name}.yaml", text)


class _Payload:
    """Unpickling this calls fn(arg): what a malicious checkpoint would do."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def evolve_csv_text(rows: int, hyp: dict) -> str:
    lines = [format_header([*EVOLVE_RESULT_KEYS, *hyp])]
    lines += [format_row([0.1 * (i + 1)] * len(EVOLVE_RESULT_KEYS) + list(hyp.values())) for i in range(rows)]
    return "\n".join(lines) + "\n"


def make_runs(w: Path) -> None:
    """Existing results a bad start must leave alone: training runs, evolutions, and broken ones."""
    hyp = {**yaml.safe_load(DEFAULT_HYP.read_text()), "anchors": 3.0}
    hyp = {k: float(v) for k, v in hyp.items()}
    train_run = w / "runs" / "train" / "exp"
    write(train_run / "opt.yaml", yaml.safe_dump({"epochs": 3, "cfg": "yolov5n.yaml", "batch_size": 4}))
    write(train_run / "hyp.yaml", yaml.safe_dump(hyp))
    write(train_run / "results.csv", "epoch,train/box_loss\n0,0.1\n")
    (train_run / "weights").mkdir()
    torch.save({"epoch": 1, "opt": {}}, train_run / "weights" / "last.pt")
    bad_opt_run = w / "runs" / "train" / "bad_opt"
    write(bad_opt_run / "opt.yaml", "epochs: [3\n")
    (bad_opt_run / "weights").mkdir()
    torch.save({"epoch": 1, "opt": {}}, bad_opt_run / "weights" / "last.pt")
    # checkpoints outside a run's weights/: a copy kept inside a finished run, a lone one among the runs
    (train_run / "backup").mkdir()
    torch.save({"epoch": 1, "opt": {}}, train_run / "backup" / "last.pt")
    (w / "runs" / "train" / "lone").mkdir()
    torch.save({"epoch": 1, "opt": {}}, w / "runs" / "train" / "lone" / "last.pt")
    write(w / "runs" / "train" / "no_weights" / "opt.yaml", "epochs: 3\n")
    torn_run = w / "runs" / "train" / "torn"
    write(torn_run / "opt.yaml", "epochs: 3\n")
    write(torn_run / "weights" / "last.pt", bytes((i * 97 + 13) % 256 for i in range(4096)))

    evolve_opt = {
        "generations": 5,
        "search_space": "yolov5",
        "data": str(w / "good" / "data.yaml"),
        "cfg": "yolov5n.yaml",
        "imgsz": 64,
        "epochs": 1,
        "batch_size": 4,
        "workers": 0,
    }
    good_csv = evolve_csv_text(2, hyp)
    evolutions = w / "runs" / "evolve"
    for name, csv_text, opt in [
        ("exp", good_csv, evolve_opt),
        ("short_last", good_csv + "0.5, 0.4, 0.3\n", evolve_opt),
        ("bad_header", "a,b,c\n1,2,3\n", evolve_opt),
        ("not_numbers", good_csv.replace("\n", "\nx" + ",x" * (len(hyp) + 6) + "\n", 1), evolve_opt),
        ("other_columns", evolve_csv_text(2, {"lr0": 0.01, "momentum": 0.9}), evolve_opt),
        ("data_gone", good_csv, {**evolve_opt, "data": str(w / "files" / "gone.yaml")}),
    ]:
        write(evolutions / name / "evolve.csv", csv_text)
        write(evolutions / name / "opt.yaml", yaml.safe_dump(opt))
    write(evolutions / "bad_opt" / "evolve.csv", good_csv)
    write(evolutions / "bad_opt" / "opt.yaml", "generations: [5\n")
    (evolutions / "empty").mkdir()
    write(w / "runs" / "stubs" / "exp" / "opt.yaml", yaml.safe_dump(evolve_opt))  # a start that died early
    write(w / "runs" / "stubs" / "exp2" / "evolve.csv", evolve_csv_text(0, hyp))  # header, no row yet
    (w / "runs" / "none").mkdir()
    readonly = w / "readonly"
    write(readonly / "evolution" / "evolve.csv", good_csv)
    write(readonly / "evolution" / "opt.yaml", yaml.safe_dump(evolve_opt))
    for folder in read_only_folders(w):
        folder.chmod(READ_ONLY)


def snapshot(w: Path) -> dict[str, str]:
    """Every file and folder of the world (label caches aside) with a hash of its content."""
    out = {}
    for path in sorted(w.rglob("*")):
        if path.name.endswith(CACHE_SUFFIX):
            continue
        key = str(path.relative_to(w))
        out[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


# ---- weights and sources for val.py, detect.py, export.py and the Python API

ENTRY_READ_ONLY = "readonly_models"  # a read-only folder holding a checkpoint: export cannot write beside it


def build_entry_world(w: Path) -> Path:
    """The training world plus models: a checkpoint, its exports and files of the wrong kind under model names."""
    build_world(w)
    make_model_files(w)
    make_entry_sources(w)
    return w


def save_untrained_checkpoint(path: Path, names: dict[int, str]) -> Path:
    """A yolov5n checkpoint as training leaves one (build_checkpoint, then stripped): weights never trained."""
    from yolo_ray.models import build_model
    from yolo_ray.training.checkpoint import build_checkpoint, save_checkpoint, strip_optimizer

    model = build_model("yolov5n.yaml", nc=len(names))
    model.names = names
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(build_checkpoint(0, 0.0, model, model, 0, optimizer, {"epochs": 1}, training_done=True), path)
    strip_optimizer(path)
    return path


def make_model_files(w: Path) -> None:
    """Real weights where a case runs them; where only the kind of file matters, small files of that
    kind (every case hashes the world twice, so its size is the table's time)."""
    from yolo_ray.infer.export import export_formats

    m = w / "models"
    names = yaml.safe_load((w / "good" / "data.yaml").read_text())["names"]
    best = save_untrained_checkpoint(m / "best.pt", names)
    export_formats(best, ["onnx"], (64, 64))  # fixed 64x64 input
    onnx_head = (m / "best.onnx").read_bytes()[:4096]
    write(m / "onnx_as.pt", onnx_head)
    write(m / "best_onnx.bin", onnx_head)
    with warnings.catch_warnings():  # torch 2.14 calls TorchScript deprecated; export.py still writes it
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 4, 1)), m / "torchscript_as.pt")
    for name in ("pt_as.onnx", "pt_as.torchscript", "outdir/best.pt"):
        write(m / name, b"")
        torch.save({"model": {"w": torch.zeros(2)}}, m / name)
    shutil.copy(best, (m / "warn").mkdir() or m / "warn" / "best.pt")
    shutil.copy(next((w / "good" / "images" / "val").iterdir()), m / "image_as.pt")
    shutil.copy(w / "good" / "data.yaml", m / "yaml_as.pt")
    (m / "folder.pt").mkdir()
    (m / "outdir" / "best.torchscript").mkdir()  # a folder where export would write its file
    write(m / "file_openvino_model", "not a folder\n")
    (m / "empty_openvino_model").mkdir()
    shutil.copy(best, (w / ENTRY_READ_ONLY).mkdir() or w / ENTRY_READ_ONLY / "best.pt")
    (w / ENTRY_READ_ONLY).chmod(READ_ONLY)


def make_entry_sources(w: Path) -> None:
    """Sources that fail only once a run has started: unreadable images, a val split of corrupt images."""
    write(w / "sources" / "broken" / "a.jpg", b"not an image")
    write(w / "sources" / "broken" / "b.png", b"not an image either")
    (w / "sources" / "empty").mkdir()
    copy_dataset(w / "good", w / "val_corrupt")
    for image in (w / "val_corrupt" / "images" / "val").iterdir():
        image.write_bytes(b"not an image")


# ---- what a table case's outcome must be (shared by the malformed-input tables)

SHOWN_BY_DEFAULT = (UserWarning, FutureWarning, RuntimeWarning, SyntaxWarning, UnicodeWarning, BytesWarning)


def stderr_of_process(caught: list, records: list, err: str) -> str:
    """What a real process would show on stderr: Python warnings and other libraries' WARNING records
    (which pytest intercepts in-process; the package's own records are on stdout) before err."""
    shown = [str(w.message) for w in caught if issubclass(w.category, SHOWN_BY_DEFAULT)]
    shown += [r.getMessage() for r in records if r.levelno >= logging.WARNING and not r.name.startswith("yolo_ray")]
    return "".join(f"{line}\n" for line in shown) + err


def check_one_line(expected: str, goes_on: bool, code: int, out: str, err: str) -> None:
    """No traceback; exit 2 with exactly one `error:` line holding expected, or (goes_on) exit 0 with one
    WARNING line holding it and no error line."""
    assert "Traceback" not in out + err, out + err
    err_lines = err.splitlines()
    if goes_on:
        assert code == 0, out[-2000:] + err[-2000:]
        warning_lines = [line for line in (out + err).splitlines() if "WARNING" in line]
        assert len(warning_lines) == 1 and expected in warning_lines[0], warning_lines
        assert not any(line.startswith("error:") for line in err_lines), err
    else:
        assert code == 2, out[-2000:] + err[-2000:]
        assert len(err_lines) == 1 and err_lines[0].startswith("error: "), err
        assert expected in err_lines[0], err_lines[0]


def run_as_process(script: Path, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """script run as a user's terminal runs it: a fresh Python process, one OpenMP thread."""
    return subprocess.run(
        [sys.executable, str(script), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
