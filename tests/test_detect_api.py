"""scripts/detect.py on images, a folder with an unreadable file and a video; the Python API on numpy
arrays, paths, PIL images and lists; both give the same boxes."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import yolo_ray
from infer_helpers import IMGSZ, load_script, trained_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
CONF = 0.003  # the short run is barely trained: its confidences sit just above the 0.001 val threshold


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def detect_cli():
    return load_script("detect")


@pytest.fixture(scope="module")
def model(run):
    m = yolo_ray.load(run.last, device="cpu")
    m.conf = CONF
    return m


def write_video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (IMGSZ, IMGSZ))
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.mark.timeout(300)
def test_detect_folder_with_video_and_unreadable_image(run, detect_cli, model, tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    images = run.val_images[:2]
    for f in images:
        (source / f.name).write_bytes(f.read_bytes())
    (source / "broken.jpg").write_bytes(b"not an image")
    write_video(source / "clip.mp4", [cv2.imread(str(f)) for f in run.val_images[:3]])
    args = ["--weights", str(run.last), "--source", str(source), "--imgsz", str(IMGSZ), "--conf-thres", str(CONF),
            "--save-txt", "--save-conf", "--save-crop", "--project", str(tmp_path / "runs")]
    assert detect_cli.main(args) == 0
    out = capsys.readouterr().out
    save_dir = tmp_path / "runs" / "exp"

    assert re.search(rf"image 3/4 {re.escape(str(source / images[0].name))}: {IMGSZ}x{IMGSZ} .*\d+\.\dms", out)
    assert re.search(rf"video 2/4 \(3/3\) {re.escape(str(source / 'clip.mp4'))}: ", out)
    assert f"WARNING: {source / 'broken.jpg'}: not a readable image, skipped" in out
    assert "1 of 4 source files could not be read" in out
    assert re.search(rf"Speed: .* per image at shape \(1, 3, {IMGSZ}, {IMGSZ}\)", out)
    for f in images:
        annotated = cv2.imread(str(save_dir / f.name))
        assert annotated is not None and annotated.shape == (IMGSZ, IMGSZ, 3)
        assert not np.array_equal(annotated, cv2.imread(str(f)))  # boxes were drawn
    video = cv2.VideoCapture(str(save_dir / "clip.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    video.release()
    assert {p.name for p in (save_dir / "labels").glob("clip_*.txt")} == {"clip_1.txt", "clip_2.txt", "clip_3.txt"}
    assert any((save_dir / "crops").rglob("*.jpg"))

    # the API on the same files gives the same boxes (detect.py rounds them to whole pixels)
    for f in images:
        rows = np.array([list(map(float, line.split())) for line in (save_dir / "labels" / f"{f.stem}.txt")
                         .read_text().splitlines()])
        api = model(str(f), size=IMGSZ).xywhn[0].numpy()
        assert len(rows) == len(api) > 0
        theirs = list(api[:, [5, 0, 1, 2, 3, 4]])
        for row in rows:  # pair each label row with the API box it came from (order may differ by rounding)
            gaps = [np.abs(row[1:5] - t[1:5]).max() if t[0] == row[0] else np.inf for t in theirs]
            match = theirs.pop(int(np.argmin(gaps)))
            assert np.abs(row[1:5] - match[1:5]).max() <= 1 / IMGSZ  # half a pixel each side
            assert row[5] == pytest.approx(match[5], rel=1e-4)


@pytest.mark.timeout(300)
def test_api_on_numpy_path_pil_and_list(run, model, tmp_path, capsys):
    path = run.val_images[0]
    rgb = cv2.imread(str(path))[..., ::-1]
    from_path = model(str(path), size=IMGSZ)
    from_numpy = model(rgb, size=IMGSZ)
    from_pil = model(Image.open(path), size=IMGSZ)
    assert len(from_path.xyxy[0]) > 0
    assert torch.allclose(from_numpy.xyxy[0], from_path.xyxy[0])
    assert torch.allclose(from_pil.xyxy[0], from_path.xyxy[0])

    # a batch of different sizes: boxes come back in each image's own pixels
    big = cv2.resize(rgb, (IMGSZ * 2, IMGSZ * 2))
    batch = model([str(path), big, rgb[:, : IMGSZ // 2]], size=IMGSZ * 2)
    assert len(batch) == 3 and batch.files == [path.with_suffix(".jpg").name, "image1.jpg", "image2.jpg"]
    for im, boxes in zip(batch.ims, batch.xyxy):
        assert (boxes[:, [0, 2]] <= im.shape[1]).all() and (boxes[:, [1, 3]] <= im.shape[0]).all()
    assert torch.allclose(batch.xywhn[0][:, :4], batch.xywh[0][:, :4] / IMGSZ)

    frame = from_path.pandas().xyxy[0]
    assert list(frame.columns) == ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]
    assert set(frame["name"]) <= {"circle", "square", "triangle", "cross"}
    assert list(from_path.pandas().xywhn[0].columns)[:4] == ["xcenter", "ycenter", "width", "height"]

    from_path.print()
    out = capsys.readouterr().out
    assert re.search(rf"image 1/1: {IMGSZ}x{IMGSZ} \d+ \w+", out) and "Speed:" in out
    saved = from_path.save(save_dir=tmp_path / "exp")
    assert (saved / path.with_suffix(".jpg").name).is_file()
    crops = from_path.crop(save_dir=tmp_path / "exp")
    assert len(crops) == len(from_path.xyxy[0]) and crops[0]["im"].ndim == 3
    assert any((tmp_path / "exp2" / "crops").rglob("*.jpg"))


@pytest.mark.timeout(120)
def test_api_settings_fresh_models_and_devices(run, tmp_path):
    m = yolo_ray.load(run.last, device="cpu")
    m.conf, m.classes, m.max_det = CONF, [1], 2
    det = m(str(run.val_images[0]), size=IMGSZ).xyxy[0]
    assert len(det) <= 2 and (det[:, 5] == 1).all()
    assert m.to("cpu") is m and m.cpu() is m

    fresh = yolo_ray.load("yolov5n", classes=10, channels=4, weights=run.last, device="cpu", fuse=False)
    assert fresh.nc == 10 and fresh.model.model[0].conv.weight.shape[1] == 4
    source = yolo_ray.load(run.last, device="cpu", fuse=False, autoshape=False)
    same = source.model[1].conv.weight  # shapes match: transferred
    assert torch.equal(fresh.model.model[1].conv.weight, same)
    raw, _ = fresh(torch.zeros(1, 4, IMGSZ, IMGSZ))  # tensors go to the model as they are
    assert raw.shape[-1] == 5 + 10


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args, expected", [
    (["--weights", "{tmp}/missing.pt", "--source", "{img}"], "missing.pt: weights file not found"),
    (["--weights", "{last}", "--source", "{tmp}/nowhere"], "nowhere: does not exist"),
    (["--weights", "{last}", "--source", "{tmp}"], "no images or videos found"),
    (["--weights", "{last}", "--source", "{img}", "--classes", "7"], "--classes [7]"),
])
def test_bad_inputs_print_one_error_line_and_exit_2(run, detect_cli, tmp_path, capsys, args, expected):
    args = [a.format(tmp=tmp_path, last=run.last, img=run.val_images[0]) for a in args]
    assert detect_cli.main(args + ["--project", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(60)
def test_all_sources_unreadable_is_an_error(run, detect_cli, tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert detect_cli.main(["--weights", str(run.last), "--source", str(tmp_path / "*.jpg"),
                            "--project", str(tmp_path / "runs")]) == 2
    assert "no readable images or videos among 1 source files" in capsys.readouterr().err
