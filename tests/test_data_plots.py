"""labels.jpg and the batch mosaic: files of the expected size, with the boxes really drawn."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from yolo_ray.data.plots import class_color, plot_images, plot_labels


def _near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    """Which BGR pixels (as cv2 reads them) are within tol of an RGB colour."""
    return np.abs(pixels.astype(int) - np.array(rgb[::-1])).max(axis=-1) <= tol


@pytest.mark.timeout(30)
def test_plot_labels_writes_a_jpeg_with_bars_only_for_present_classes(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    labels = np.column_stack([rng.choice([0, 2], n), rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))])
    path = plot_labels(labels, ["a", "b", "c", "d"], tmp_path / "run")
    assert path == tmp_path / "run" / "labels.jpg" and path.stat().st_size > 10_000
    image = cv2.imread(str(path))
    assert image.shape == (800, 800, 3)
    bars = image[:400, :400]  # the class histogram is the top-left panel
    for present in (0, 2):
        assert _near(bars, class_color(present)).sum() > 5000
    for absent in (1, 3):
        assert _near(bars, class_color(absent), tol=25).sum() < 20


@pytest.mark.timeout(30)
def test_plot_images_draws_each_box_in_its_tile(tmp_path):
    images = np.full((4, 3, 64, 64), 128, np.uint8)
    # One box in image 1 (top-right tile), centred, half the image wide and tall; class 3.
    targets = np.array([[1, 3, 0.5, 0.5, 0.5, 0.5]])
    path = plot_images(images, targets, fname=tmp_path / "train_batch0.jpg", names=["a", "b", "c", "d"])
    mosaic = cv2.imread(str(path))
    # 2x2 grid, 64 px images enlarged 2x so labels stay legible.
    assert mosaic.shape == (256, 256, 3)
    color = class_color(3)
    # Tile 1 spans x 128..256; the box spans tile pixels 32..96 -> mosaic x 160..224, y 32..96.
    assert _near(mosaic[60:70, 158:163], color).any(axis=1).all()  # left edge, mid height
    assert _near(mosaic[60:70, 222:227], color).any(axis=1).all()  # right edge
    assert _near(mosaic[94:99, 180:200], color).any(axis=0).all()  # bottom edge
    assert not _near(mosaic[110:120, 150:240], color).any()  # below the box: untouched grey
    assert not _near(mosaic[:, :128], color).any()  # image 0 has no boxes
    assert np.abs(mosaic[64, 64].astype(int) - 128).max() < 10


@pytest.mark.timeout(30)
def test_plot_images_accepts_float_tensors_and_hides_low_confidence_predictions(tmp_path):
    images = torch.full((2, 3, 32, 48), 0.5)
    preds = torch.tensor(
        [
            [0, 0, 0.5, 0.5, 0.5, 0.5, 0.9],  # drawn
            [1, 1, 0.5, 0.5, 0.5, 0.5, 0.1],
        ]
    )  # below 0.25: not drawn
    path = plot_images(images, preds, paths=["a.jpg", "b.jpg"], fname=tmp_path / "pred.jpg")
    mosaic = cv2.imread(str(path))
    # 2 images -> 2x2 grid with one row used; tiles 96x64 (2x).
    assert mosaic.shape == (64, 192, 3)
    assert _near(mosaic[:, :96], class_color(0)).sum() > 50
    assert not _near(mosaic[:, 96:], class_color(1), tol=30).any()


@pytest.mark.timeout(30)
def test_plot_images_shows_at_most_16_images_and_large_ones_shrink(tmp_path):
    images = np.zeros((20, 3, 640, 640), np.uint8)
    images[16:] = 255  # images past the 16th would show up as white tiles
    path = plot_images(images, np.zeros((0, 6)), fname=tmp_path / "big.jpg")
    mosaic = cv2.imread(str(path))
    assert mosaic.shape == (1920, 1920, 3)  # 4x4 grid of 640 px shrunk to fit 1920
    assert mosaic[200:280, 200:280].max() < 10
