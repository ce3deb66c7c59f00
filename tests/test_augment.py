"""Augmentations keep labels on the pixels they describe: draw a uniquely coloured box, transform, look."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from yolo_ray.config import load_hyp
from yolo_ray.data.augment import (
    augment_hsv,
    bbox_ioa,
    box_candidates,
    copy_paste,
    letterbox,
    mixup,
    random_perspective,
)
from yolo_ray.data.dataset import LoadImagesAndLabels

BACKGROUND = (40, 40, 40)
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255)]  # BGR, one per class


def colour_mask(img: np.ndarray, colour, tol: int = 60) -> np.ndarray:
    return np.abs(img.astype(int) - np.array(colour)).max(-1) <= tol


def mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


def image_with_box(h: int, w: int, box: tuple[int, int, int, int], colour=COLOURS[0]) -> np.ndarray:
    img = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = colour
    return img


def assert_box_fits(label_box: np.ndarray, mask: np.ndarray, tol: float = 2.5) -> None:
    """The label box and the bounding box of the object's pixels agree within tol pixels on every side."""
    np.testing.assert_allclose(label_box, mask_box(mask), atol=tol)


@pytest.mark.timeout(10)
def test_letterbox_scales_pads_and_maps_boxes():
    img = image_with_box(50, 100, (10, 20, 30, 40))
    out, ratio, pad = letterbox(img, 64, auto=False)
    assert out.shape == (64, 64, 3)
    assert ratio == (0.64, 0.64)
    assert pad == (0.0, 16.0)  # 100x50 -> 64x32, 32 rows of padding split 16/16
    assert (out[:16] == 114).all() and (out[-16:] == 114).all()
    box = np.array([10, 20, 30, 40]) * 0.64 + [0, 16, 0, 16]
    assert_box_fits(box, colour_mask(out, COLOURS[0]), tol=1.0)


@pytest.mark.timeout(10)
def test_letterbox_no_scaleup_and_auto_stride():
    img = image_with_box(20, 30, (0, 0, 5, 5))
    out, ratio, pad = letterbox(img, 64, auto=False, scaleup=False)
    assert ratio == (1.0, 1.0) and out.shape == (64, 64, 3) and pad == (17.0, 22.0)
    out, _, pad = letterbox(np.zeros((100, 200, 3), np.uint8), 640, auto=True, stride=32)
    assert out.shape == (320, 640, 3)  # padded only to the next multiple of 32: 320 is one already
    assert pad == (0.0, 0.0)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("seed", range(4))
def test_random_perspective_moves_box_with_pixels(seed):
    random.seed(seed)
    img = image_with_box(200, 200, (60, 80, 120, 130))
    targets = np.array([[3, 60, 80, 120, 130]], dtype=np.float32)
    out, new = random_perspective(img, targets, degrees=25, translate=0.1, scale=0.3, shear=5, perspective=0.0003)
    assert out.shape == img.shape and len(new) == 1 and new[0, 0] == 3
    # the warped rectangle's corners are exactly what the box is derived from: tight up to interpolation
    assert_box_fits(new[0, 1:], colour_mask(out, COLOURS[0]), tol=2.0)


@pytest.mark.timeout(10)
def test_random_perspective_border_shrinks_canvas_and_drops_lost_boxes():
    random.seed(0)
    img = image_with_box(200, 200, (90, 90, 110, 110))
    # the second box lies entirely in the 50 px border that is cut away: it must disappear
    targets = np.array([[0, 90, 90, 110, 110], [1, 0, 0, 20, 20]], dtype=np.float32)
    out, new = random_perspective(img, targets, degrees=0, translate=0, scale=0, shear=0, border=(-50, -50))
    assert out.shape == (100, 100, 3)
    np.testing.assert_allclose(new, [[0, 40, 40, 60, 60]], atol=1e-4)
    assert_box_fits(new[0, 1:], colour_mask(out, COLOURS[0]), tol=0.5)


@pytest.mark.timeout(10)
def test_random_perspective_uses_segments_for_tight_boxes():
    random.seed(3)
    img = np.full((200, 200, 3), BACKGROUND, dtype=np.uint8)
    triangle = np.array([[100, 40], [160, 160], [40, 160]], dtype=np.float32)
    cv2.fillPoly(img, [triangle.astype(np.int32)], COLOURS[1])
    targets = np.array([[1, 40, 40, 160, 160]], dtype=np.float32)
    out, new = random_perspective(img, targets, [triangle], degrees=40, translate=0, scale=0, shear=0)
    assert_box_fits(new[0, 1:], colour_mask(out, COLOURS[1]), tol=2.0)


@pytest.mark.timeout(10)
def test_box_candidates_thresholds():
    before = np.array([[0, 0, 10, 10]] * 4, dtype=float).T
    after = np.array(
        [
            [0, 0, 10, 10],  # unchanged: kept
            [0, 0, 2, 10],  # 2 px wide: not > wh_thr
            [0, 0, 3, 3],  # 9% of the area left: below area_thr 0.1
            [0, 0, 4, 4],
        ],
        dtype=float,
    ).T  # 16%: kept
    assert box_candidates(before, after).tolist() == [True, False, False, True]
    thin_before = np.array([[0, 0, 1000, 1000]], dtype=float).T
    thin_after = np.array([[0, 0, 500, 4]], dtype=float).T  # aspect 125 >= ar_thr 100
    assert box_candidates(thin_before, thin_after, area_thr=0).tolist() == [False]


@pytest.mark.timeout(10)
def test_augment_hsv_matches_direct_computation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    np.random.seed(7)
    gains = np.random.uniform(-1, 1, 3) * [0.015, 0.7, 0.4] + 1
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(float)
    hsv[..., 0] = (hsv[..., 0] * gains[0]) % 180
    hsv[..., 1:] = np.clip(hsv[..., 1:] * gains[1:], 0, 255)
    expected = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    np.random.seed(7)
    out = img.copy()
    augment_hsv(out, 0.015, 0.7, 0.4)
    np.testing.assert_array_equal(out, expected)
    unchanged = img.copy()
    augment_hsv(unchanged, 0, 0, 0)
    np.testing.assert_array_equal(unchanged, img)


@pytest.mark.timeout(10)
def test_mixup_blends_images_and_joins_labels():
    np.random.seed(0)
    a, b = np.full((8, 8, 3), 200, np.uint8), np.full((8, 8, 3), 100, np.uint8)
    out, labels = mixup(a, np.ones((2, 5)), b, np.zeros((1, 5)))
    assert labels.shape == (3, 5) and labels[:2].sum() == 10
    assert 130 <= out.min() and out.max() <= 170  # beta(32, 32) keeps the ratio near 0.5


@pytest.mark.timeout(10)
def test_bbox_ioa_by_hand():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30]], dtype=float)
    np.testing.assert_allclose(bbox_ioa(np.array([0, 0, 10, 10.0]), boxes), [1.0, 0.25, 0.0], atol=1e-6)


@pytest.mark.timeout(10)
def test_copy_paste_mirrors_object_and_label():
    random.seed(0)
    img = np.full((100, 200, 3), BACKGROUND, dtype=np.uint8)
    square = np.array([[10, 20], [50, 20], [50, 60], [10, 60]], dtype=np.float32)
    cv2.fillPoly(img, [square.astype(np.int32)], COLOURS[2])
    labels = np.array([[2, 10, 20, 50, 60]], dtype=np.float32)
    original_pixels = colour_mask(img, COLOURS[2]).sum()
    out, new_labels, segments = copy_paste(img, labels, [square], p=1.0)
    assert len(new_labels) == 2 and len(segments) == 2
    np.testing.assert_allclose(new_labels[1], [2, 150, 20, 190, 60])
    mask = colour_mask(out, COLOURS[2])
    right = mask.copy()
    right[:, :100] = False
    assert_box_fits(new_labels[1, 1:], right, tol=1.5)
    assert mask[:, :100].sum() == original_pixels  # the original stays where it was


def write_coloured_dataset(root, sizes, boxes):
    """Images of the given (h, w) with one filled box each (class i, colour i) and YOLO labels."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, ((h, w), (x1, y1, x2, y2)) in enumerate(zip(sizes, boxes)):
        cv2.imwrite(str(root / "images" / f"im{i}.png"), image_with_box(h, w, (x1, y1, x2, y2), COLOURS[i]))
        xc, yc, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        (root / "labels" / f"im{i}.txt").write_text(f"{i} {xc:.6f} {yc:.6f} {bw:.6f} {bh:.6f}\n")
    return str(root / "images")


def quiet_hyp(**overrides) -> dict:
    hyp = load_hyp()
    for key in (
        "hsv_h",
        "hsv_s",
        "hsv_v",
        "degrees",
        "translate",
        "scale",
        "shear",
        "perspective",
        "flipud",
        "fliplr",
        "mosaic",
        "mixup",
        "copy_paste",
    ):
        hyp[key] = 0.0
    hyp.update(overrides)
    return hyp


def component_boxes(mask: np.ndarray, min_area: int = 1) -> list[np.ndarray]:
    """xyxy boxes of the connected blobs of a mask (a mosaic may show the same image twice)."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    return [np.array([x, y, x + w, y + h], dtype=float) for x, y, w, h, area in stats[1:] if area >= min_area]


def check_item(img_chw, labels, tol=2.5):
    """Every label box fits one blob of its class colour, and every sizeable blob has a label box."""
    img = np.ascontiguousarray(img_chw.numpy().transpose(1, 2, 0)[..., ::-1])  # back to HWC BGR
    h, w = img.shape[:2]
    assert len(labels)
    boxes = labels[:, 1:].numpy()
    for cls in range(len(COLOURS)):
        mask = colour_mask(img, COLOURS[cls])
        own = boxes[boxes[:, 0] == cls]
        label_boxes = [
            np.array([(xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h])
            for _, xc, yc, bw, bh in own
        ]
        blobs = component_boxes(mask)
        for box in label_boxes:
            assert any(np.abs(box - blob).max() <= tol for blob in blobs), (cls, box, blobs)
        for blob in component_boxes(mask, min_area=60):  # smaller remnants may be dropped by box_candidates
            assert any(np.abs(box - blob).max() <= tol for box in label_boxes), (cls, blob, label_boxes)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("flip", ["flipud", "fliplr"])
def test_dataset_flips_keep_boxes_on_pixels(tmp_path, flip):
    path = write_coloured_dataset(tmp_path, [(48, 64)], [(4, 6, 20, 30)])
    ds = LoadImagesAndLabels(path, img_size=64, augment=True, hyp=quiet_hyp(**{flip: 1.0}), verbose=False)
    img, labels, _, _ = ds[0]
    check_item(img, labels, tol=1.5)
    plain = LoadImagesAndLabels(path, img_size=64, augment=True, hyp=quiet_hyp(), verbose=False)[0][0]
    axis = 1 if flip == "flipud" else 2
    np.testing.assert_array_equal(img.numpy(), np.flip(plain.numpy(), axis))


@pytest.mark.timeout(20)
def test_dataset_letterbox_item_maps_boxes_and_shapes(tmp_path):
    path = write_coloured_dataset(tmp_path, [(40, 80)], [(10, 5, 50, 25)])
    ds = LoadImagesAndLabels(path, img_size=64, augment=False, verbose=False)
    img, labels, _, shapes = ds[0]
    assert img.shape == (3, 64, 64)
    assert shapes == ((40, 80), ((0.8, 0.8), (0.0, 16.0)))
    check_item(img, labels, tol=1.5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("seed", range(3))
def test_mosaic_keeps_every_box_on_its_pixels(tmp_path, seed):
    sizes = [(48, 64), (64, 48), (64, 64), (40, 64)]
    boxes = [(8, 8, 40, 30), (10, 20, 30, 50), (20, 20, 50, 44), (30, 4, 60, 30)]
    path = write_coloured_dataset(tmp_path, sizes, boxes)
    hyp = quiet_hyp(mosaic=1.0, degrees=10, translate=0.1, scale=0.3, shear=2)
    ds = LoadImagesAndLabels(path, img_size=64, augment=True, hyp=hyp, verbose=False)
    random.seed(seed)
    for i in range(4):
        img, labels, _, shapes = ds[i]
        assert shapes is None and img.shape == (3, 64, 64)
        check_item(img, labels, tol=2.5)
