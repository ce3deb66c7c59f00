"""The built-in synthetic dataset: determinism, labels that match the pixels, caching, the CLI."""

from __future__ import annotations

import filecmp
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_ray.config import UserError
from yolo_ray.data import synthetic
from yolo_ray.data.synthetic import CLASS_NAMES, default_data_yaml, make_dataset, render_scene

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _read_labels(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2).reshape(-1, 5)


def _object_like(image: np.ndarray) -> np.ndarray:
    """Saturated pixels: the shapes are saturated, the backgrounds nearly grey."""
    spread = image.max(axis=2).astype(int) - image.min(axis=2).astype(int)
    return spread > 55


@pytest.mark.timeout(30)
def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    a = make_dataset(tmp_path / "a", seed=3, n_train=6, n_val=3).parent
    b = make_dataset(tmp_path / "b", seed=3, n_train=6, n_val=3).parent
    c = make_dataset(tmp_path / "c", seed=4, n_train=6, n_val=3).parent
    assert _files(a) == _files(b) == _files(c)
    assert len(list((a / "images" / "train").glob("*.jpg"))) == 6
    assert len(list((a / "labels" / "val").glob("*.txt"))) == 3
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in _files(a)], shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, _ = filecmp.cmpfiles(a, c, [str(f) for f in _files(a) if f.suffix == ".jpg"], shallow=False)
    assert len(mismatch) == 9


@pytest.mark.timeout(30)
def test_labels_are_valid_and_tight_to_the_drawn_shapes(tmp_path):
    root = make_dataset(tmp_path / "d", seed=0, n_train=24, n_val=2).parent
    counts = np.zeros(len(CLASS_NAMES), int)
    for label_file in sorted((root / "labels" / "train").glob("*.txt")):
        labels = _read_labels(label_file)
        image = cv2.imread(str(root / "images" / "train" / f"{label_file.stem}.jpg"))
        h, w = image.shape[:2]
        assert (h, w) == (160, 160)
        assert 1 <= len(labels) <= 4
        cls = labels[:, 0]
        assert np.all(cls == cls.astype(int)) and cls.min() >= 0 and cls.max() < len(CLASS_NAMES)
        np.add.at(counts, cls.astype(int), 1)
        x1 = (labels[:, 1] - labels[:, 3] / 2) * w
        y1 = (labels[:, 2] - labels[:, 4] / 2) * h
        x2 = (labels[:, 1] + labels[:, 3] / 2) * w
        y2 = (labels[:, 2] + labels[:, 4] / 2) * h
        assert x1.min() >= 0 and y1.min() >= 0 and x2.max() <= w and y2.max() <= h
        assert (labels[:, 3:] * 160).min() >= 14 and (labels[:, 3:] * 160).max() <= 66

        shape_pixels = _object_like(image)
        inside_any = np.zeros((h, w), bool)
        for bx1, by1, bx2, by2 in zip(
            x1.round().astype(int), y1.round().astype(int), x2.round().astype(int), y2.round().astype(int)
        ):
            # Every box holds a shape: at least the triangle's half of it is shape-coloured.
            assert shape_pixels[by1:by2, bx1:bx2].mean() > 0.4
            inside_any[max(by1 - 2, 0) : by2 + 2, max(bx1 - 2, 0) : bx2 + 2] = True
        assert shape_pixels[~inside_any].mean() < 0.01  # no unlabelled shape anywhere

        # The last row is drawn last, so nothing covers it: its pixels' extent must be the box.
        bx1, by1, bx2, by2 = int(round(x1[-1])), int(round(y1[-1])), int(round(x2[-1])), int(round(y2[-1]))
        cx, cy = (bx1 + bx2) // 2, (by1 + by2) // 2
        color = np.median(image[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3), axis=0)
        close = (np.linalg.norm(image.astype(float) - color, axis=2) < 70) & shape_pixels
        _, components = cv2.connectedComponents(close.astype(np.uint8))
        ys, xs = np.nonzero(components == components[cy, cx])
        assert abs(xs.min() - bx1) <= 3 and abs(xs.max() + 1 - bx2) <= 3, label_file.name
        assert abs(ys.min() - by1) <= 3 and abs(ys.max() + 1 - by2) <= 3, label_file.name
    assert counts.min() >= 3  # every class occurs


@pytest.mark.timeout(10)
def test_render_scene_boxes_are_exact_in_memory():
    image, objects = render_scene(np.random.default_rng(11), 160)
    top = objects[-1]
    x1, y1, x2, y2 = top.xyxy
    painted = np.linalg.norm(image.astype(float) - np.array(top.color, float), axis=2) < 40
    ys, xs = np.nonzero(painted[y1:y2, x1:x2])
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x2 - x1, y2 - y1)
    lines = synthetic.label_lines(objects, 160).splitlines()
    assert len(lines) == len(objects)
    cls, xc, yc, bw, bh = lines[-1].split()
    assert int(cls) == top.cls
    assert float(xc) == pytest.approx((x1 + x2) / 320, abs=1e-6) and float(bw) == pytest.approx((x2 - x1) / 160)


@pytest.mark.timeout(20)
def test_data_yaml_loads_with_the_data_config_reader(tmp_path):
    yaml_path = make_dataset(tmp_path / "moved-later", seed=1, n_train=2, n_val=1)
    moved = tmp_path / "elsewhere"
    yaml_path.parent.rename(moved)  # `path: .` keeps the dataset relocatable
    from yolo_ray.data.config import load_data_config

    config = load_data_config(moved / "data.yaml")
    assert config["names"] == dict(enumerate(CLASS_NAMES)) and config["nc"] == 4
    assert config["train"] == [str((moved / "images" / "train").resolve())]
    assert config["val"] == [str((moved / "images" / "val").resolve())]


@pytest.mark.timeout(10)
def test_make_dataset_refuses_a_non_empty_folder_and_bad_counts(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user data")
    with pytest.raises(UserError, match="not an empty folder"):
        make_dataset(tmp_path / "full")
    with pytest.raises(UserError, match="at least one"):
        make_dataset(tmp_path / "new", n_train=0)
    assert (tmp_path / "full" / "keep.txt").read_text() == "user data"


@pytest.mark.timeout(30)
def test_default_data_yaml_generates_once_even_when_called_concurrently(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))
    calls = []
    real_make = synthetic.make_dataset

    def small_make(out_dir):
        calls.append(out_dir)
        return real_make(out_dir, n_train=4, n_val=2)

    monkeypatch.setattr(synthetic, "make_dataset", small_make)
    results = []
    threads = [threading.Thread(target=lambda: results.append(default_data_yaml())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = tmp_path / "home" / "datasets" / synthetic.DATASET_VERSION / "data.yaml"
    assert results == [expected] * 3
    assert len(calls) == 1
    first_mtime = expected.stat().st_mtime_ns
    assert default_data_yaml() == expected
    assert len(calls) == 1 and expected.stat().st_mtime_ns == first_mtime
    # Only the finished dataset and the lock remain: no half-written temporary folder.
    assert sorted(p.name for p in expected.parent.parent.iterdir()) == [
        synthetic.DATASET_VERSION,
        f"{synthetic.DATASET_VERSION}.lock",
    ]
    assert len(list((expected.parent / "images" / "train").glob("*.jpg"))) == 4


@pytest.mark.timeout(30)
def test_cli_prints_the_yaml_path_and_exits_2_on_user_error(tmp_path, capsys):
    out = tmp_path / "cli"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "yolo_ray.data.synthetic",
            "--out",
            str(out),
            "--seed",
            "2",
            "--n-train",
            "3",
            "--n-val",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "data.yaml")
    assert len(list((out / "images" / "train").glob("*.jpg"))) == 3

    assert synthetic.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0]
