"""Label files and image checks: parsing, dropping and counting bad input, the label cache."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from yolo_ray.config import UserError
from yolo_ray.data import labels as labels_mod
from yolo_ray.data.dataset import LoadImagesAndLabels
from yolo_ray.data.labels import exif_size, img2label_paths, scan_labels, verify_image_label


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))


def make_image(path, h=40, w=60):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return str(path)


def make_label(image_path, text):
    lb = img2label_paths([image_path])[0]
    os.makedirs(os.path.dirname(lb), exist_ok=True)
    with open(lb, "w") as f:
        f.write(text)
    return lb


@pytest.mark.timeout(10)
def test_img2label_paths_swaps_last_images_folder():
    assert img2label_paths(["/d/images/x/images/a.b.jpg"]) == ["/d/images/x/labels/a.b.txt"]


@pytest.mark.timeout(10)
def test_box_and_polygon_rows(tmp_path):
    im = make_image(tmp_path / "images" / "a.png")
    make_label(im, "0 0.5 0.5 0.2 0.4\n3 0.1 0.2 0.5 0.2 0.3 0.6\n")
    check = verify_image_label(im, img2label_paths([im])[0])
    assert check.shape == (60, 40) and check.found == 1 and check.bad_rows == 0
    # the polygon's box is derived from its extreme points: x 0.1..0.5, y 0.2..0.6
    np.testing.assert_allclose(check.labels, [[0, 0.5, 0.5, 0.2, 0.4], [3, 0.3, 0.4, 0.4, 0.4]], atol=1e-6)
    assert len(check.segments) == 2
    np.testing.assert_allclose(check.segments[1], [[0.1, 0.2], [0.5, 0.2], [0.3, 0.6]])
    np.testing.assert_allclose(check.segments[0], [[0.4, 0.3], [0.6, 0.3], [0.6, 0.7], [0.4, 0.7]], atol=1e-6)


@pytest.mark.timeout(10)
def test_box_only_files_have_no_segments(tmp_path):
    im = make_image(tmp_path / "images" / "a.png")
    make_label(im, "1 0.5 0.5 0.2 0.4\n")
    check = verify_image_label(im, img2label_paths([im])[0])
    assert check.segments == [] and check.labels.shape == (1, 5)


@pytest.mark.timeout(10)
def test_bad_rows_exclude_the_image_and_duplicates_are_removed(tmp_path):
    im = make_image(tmp_path / "images" / "a.png")
    make_label(im, "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n4 0.1 0.1 0.3 0.3\n")  # one duplicate
    check = verify_image_label(im, img2label_paths([im])[0])
    assert check.duplicates == 1 and check.corrupt == 0
    np.testing.assert_allclose(check.labels, [[0, 0.5, 0.5, 0.2, 0.2], [4, 0.1, 0.1, 0.3, 0.3]])

    make_label(
        im,
        "\n".join(
            [
                "0 0.5 0.5 0.2 0.2",
                "1 0.5 0.5 1.5 0.2",  # not normalised
                "-1 0.5 0.5 0.2 0.2",  # negative class
                "2 0.5 0.5 0.2",  # too few columns
                "2 0.5 0.5 0.2 0.2 0.3",  # 6 columns: neither box nor polygon
                "a b c d e",  # not numbers
                "1.5 0.5 0.5 0.2 0.2",  # fractional class
                "4 0.1 0.1 0.3 0.3",
            ]
        ),
    )
    check = verify_image_label(im, img2label_paths([im])[0])
    assert check.bad_rows == 6 and check.corrupt == 1 and check.labels is None
    assert "ignoring corrupt image/label" in check.msg


@pytest.mark.timeout(10)
def test_a_byte_order_mark_is_named_as_the_reason_the_images_are_dropped(tmp_path):
    """Upstream drops such files too (the BOM glues onto the first class id); the error says why."""
    for name in ("a", "b"):
        im = make_image(tmp_path / "images" / f"{name}.png")
        lb = make_label(im, "0 0.5 0.5 0.2 0.2\n")
        with open(lb, "rb") as f:
            text = f.read()
        with open(lb, "wb") as f:
            f.write(b"\xef\xbb\xbf" + text)
    with pytest.raises(UserError, match=r"No usable images .*byte-order mark"):
        LoadImagesAndLabels(str(tmp_path / "images"), img_size=64, nc=1, verbose=False)


@pytest.mark.timeout(10)
def test_scan_counts_in_one_warning_line(tmp_path, caplog):
    one_bad_row = make_image(tmp_path / "images" / "one_bad_row.png")
    make_label(one_bad_row, "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 9 9\n")
    background = make_image(tmp_path / "images" / "background.png")  # no label file
    empty = make_image(tmp_path / "images" / "empty.png")
    make_label(empty, "")
    broken = tmp_path / "images" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    make_label(str(broken), "0 0.5 0.5 0.2 0.2\n")
    tiny = make_image(tmp_path / "images" / "tiny.png", h=8, w=30)
    files = sorted([one_bad_row, background, empty, str(broken), tiny])
    with caplog.at_level(logging.INFO, logger="yolo_ray.data"):
        cache = scan_labels(files, img2label_paths(files), verbose=True)
    assert cache["counts"] == {"found": 2, "missing": 1, "empty": 1, "corrupt": 3, "bad_rows": 1, "duplicates": 0}
    assert sorted(cache["labels"]) == sorted([background, empty])  # a bad row excludes its whole image
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 corrupt images/labels ignored (1 bad label rows)" in warnings[0]


@pytest.mark.timeout(10)
def test_corrupt_jpeg_tail_warns_but_keeps_image(tmp_path):
    im = tmp_path / "images" / "cut.jpg"
    make_image(im, h=64, w=64)
    data = im.read_bytes()
    im.write_bytes(data[:-2])  # lose the end-of-image marker
    check = verify_image_label(str(im), img2label_paths([str(im)])[0])
    assert check.corrupt == 0 and check.missing == 1 and "corrupt JPEG" in check.msg


@pytest.mark.timeout(10)
def test_exif_rotation_swaps_size(tmp_path):
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (40, 20)).save(path, exif=exif.tobytes())
    with Image.open(path) as im:
        assert exif_size(im) == (20, 40)
    assert verify_image_label(str(path), str(tmp_path / "none.txt")).shape == (20, 40)


@pytest.mark.timeout(10)
def test_class_beyond_nc_names_file_and_row(tmp_path):
    im = make_image(tmp_path / "images" / "a.png")
    lb = make_label(im, "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.1 0.1\n5 0.2 0.2 0.1 0.1\n")
    with pytest.raises(UserError, match=r"row 3 .*class 5 .*nc=3") as info:
        LoadImagesAndLabels(str(tmp_path / "images"), img_size=64, nc=3, verbose=False)
    assert lb in str(info.value)
    ds = LoadImagesAndLabels(str(tmp_path / "images"), img_size=64, nc=3, single_cls=True, verbose=False)
    assert ds.labels[0][:, 0].tolist() == [0, 0, 0]


@pytest.mark.timeout(10)
def test_cache_reused_until_files_change(tmp_path, monkeypatch):
    ims = [make_image(tmp_path / "images" / f"{i}.png") for i in range(3)]
    for im in ims:
        make_label(im, "0 0.5 0.5 0.2 0.2\n")
    first = scan_labels(ims, img2label_paths(ims), verbose=False)
    assert (tmp_path / "labels.yolo_ray.cache").is_file()  # beside the labels folder, under our own name

    def must_not_run(*args):
        raise AssertionError("verification ran although the cache matches")

    monkeypatch.setattr(labels_mod, "verify_image_label", must_not_run)
    second = scan_labels(ims, img2label_paths(ims), verbose=False)
    np.testing.assert_array_equal(second["labels"][ims[0]][0], first["labels"][ims[0]][0])
    make_label(ims[1], "0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n")  # a changed file size changes the hash
    with pytest.raises(AssertionError, match="verification ran"):
        scan_labels(ims, img2label_paths(ims), verbose=False)


@pytest.mark.timeout(10)
def test_read_only_dataset_caches_elsewhere(tmp_path):
    ims = [make_image(tmp_path / "ds" / "images" / "a.png")]
    make_label(ims[0], "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "ds").chmod(0o555)
    try:
        scan_labels(ims, img2label_paths(ims), verbose=False)
        assert not (tmp_path / "ds" / "labels.yolo_ray.cache").exists()
        assert list((tmp_path / "home" / "labels").rglob("labels.yolo_ray.cache"))
    finally:
        (tmp_path / "ds").chmod(0o755)


@pytest.mark.timeout(20)
def test_coco128_labels(coco128):
    ds = LoadImagesAndLabels(str(coco128.parent / "images" / "train2017"), img_size=320, nc=80, verbose=False)
    assert ds.n == 128 and len(ds.labels) == 128
    all_labels = np.concatenate(ds.labels)
    assert len(all_labels) == 929  # coco128 train: 929 boxes (1,839 over both splits)
    assert ((all_labels[:, 1:] >= 0) & (all_labels[:, 1:] <= 1)).all()
    assert len(np.unique(all_labels[:, 0])) == 71
