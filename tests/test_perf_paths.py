"""The speed paths give what the plain paths give: reused loader buffers, rows kept in memory, plots on a thread."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import yaml

from yolo_ray.config import load_hyp
from yolo_ray.data import LoadImagesAndLabels
from yolo_ray.evolve import EVOLVE_RESULT_KEYS, read_history, write_hyp_evolve
from yolo_ray.evolve.progress import EvolveProgress
from yolo_ray.evolve.searcher import COMPLETE_KEY, EvolveSearcher
from yolo_ray.evolve.space import load_search_space


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))


def write_images(root, n=6):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = 40 + 8 * i, 72 - 4 * i
        cv2.imwrite(str(root / "images" / f"im{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        (root / "labels" / f"im{i}.txt").write_text(f"{i % 3} 0.5 0.5 0.4 0.3\n0 0.3 0.3 0.2 0.2\n")
    return str(root / "images")


def fresh_buffers(self):
    """What _worker_buffers returned before buffers were reused: new arrays for every mosaic."""
    s = self.img_size
    return {"canvas": np.empty((2 * s, 2 * s, 3), np.uint8), "warped": np.empty((s, s, 3), np.uint8)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mixup", [0.0, 1.0])
def test_reused_mosaic_buffers_give_the_items_fresh_arrays_give(tmp_path, monkeypatch, mixup):
    path = write_images(tmp_path)
    hyp = {**load_hyp(), "mosaic": 1.0, "mixup": mixup, "degrees": 10.0}

    def items(dataset):
        out = []
        for k in range(8):
            random.seed(k)
            np.random.seed(k)
            image, labels = dataset[k % dataset.n][:2]
            out.append((image, labels))
        return out

    reused = items(LoadImagesAndLabels(path, 64, augment=True, hyp=hyp, cache_images="ram", verbose=False))
    kept = [(image.clone(), labels.clone()) for image, labels in reused]
    monkeypatch.setattr(LoadImagesAndLabels, "_worker_buffers", fresh_buffers)
    fresh = items(LoadImagesAndLabels(path, 64, augment=True, hyp=hyp, cache_images="ram", verbose=False))
    for (a, la), (b, lb), (c, lc) in zip(reused, fresh, kept):
        assert np.array_equal(a.numpy(), b.numpy()) and np.array_equal(la.numpy(), lb.numpy())
        assert np.array_equal(a.numpy(), c.numpy()) and np.array_equal(la.numpy(), lc.numpy())  # no aliasing
    assert len({bytes(image.numpy()) for image, _ in reused}) == len(reused)  # the items do differ


def results_for(i: int) -> dict[str, float]:
    m = 0.1 + (i * 37 % 11) / 20
    return dict(zip(EVOLVE_RESULT_KEYS, [0.5, 0.5, m, m / 2, 0.05, 0.04, 0.03]))


@pytest.mark.timeout(60)
def test_rows_in_memory_write_what_evolve_csv_gives_and_the_last_row_is_plotted(tmp_path):
    hyp = {**load_hyp(), "anchors": 3.0}
    generations = 12
    searcher = EvolveSearcher(tmp_path / "evolve.csv", hyp, load_search_space(), generations, seed=0)
    progress = EvolveProgress(tmp_path, generations, 0, history=lambda: searcher.history)
    searcher.on_row = progress
    for i in range(generations):
        searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), {**results_for(i), COMPLETE_KEY: True})
        if i == generations // 2:  # the frame built through numpy equals what evolve.csv reads back
            assert searcher.history.equals(read_history(tmp_path / "evolve.csv"))
    written = (tmp_path / "hyp_evolve.yaml").read_text()
    write_hyp_evolve(tmp_path / "evolve.csv", tmp_path / "from_csv.yaml")
    assert written == (tmp_path / "from_csv.yaml").read_text()
    assert "# Last generation: 11\n" in written and yaml.safe_load(written)
    progress.refresh()  # waits for the plot the last row started on its thread
    png = tmp_path / "evolve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = png.stat().st_mtime_ns
    progress.refresh()  # nothing new: not drawn again
    assert png.stat().st_mtime_ns == drawn
