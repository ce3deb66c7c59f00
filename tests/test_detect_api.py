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
from yolo_ray.infer.outputs import crop_box
from infer_helpers import IMGSZ, load_script, serve_folder, trained_run

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
    args = [
        "--weights",
        str(run.last),
        "--source",
        str(source),
        "--imgsz",
        str(IMGSZ),
        "--conf-thres",
        str(CONF),
        "--save-txt",
        "--save-conf",
        "--save-crop",
        "--project",
        str(tmp_path / "runs"),
    ]
    assert detect_cli.main(args) == 0
    out = capsys.readouterr().out
    save_dir = tmp_path / "runs" / "exp"

    # images first, then videos, as upstream's LoadImages
    assert re.search(rf"image 2/4 {re.escape(str(source / images[0].name))}: {IMGSZ}x{IMGSZ} .*\d+\.\dms", out)
    assert re.search(rf"video 4/4 \(3/3\) {re.escape(str(source / 'clip.mp4'))}: ", out)
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
        rows = np.array(
            [
                list(map(float, line.split()))
                for line in (save_dir / "labels" / f"{f.stem}.txt").read_text().splitlines()
            ]
        )
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
    assert fresh.nc == 10 and fresh.model.model.model[0].conv.weight.shape[1] == 4  # upstream's nesting
    source = yolo_ray.load(run.last, device="cpu", fuse=False, autoshape=False)
    same = source.model[1].conv.weight  # shapes match: transferred
    assert torch.equal(fresh.model.model.model[1].conv.weight, same)
    raw = fresh(torch.zeros(1, 4, IMGSZ, IMGSZ))  # tensors go to the model as they are: predictions back
    assert raw.shape[-1] == 5 + 10


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--weights", "{tmp}/missing.pt", "--source", "{img}"], "missing.pt: weights file not found"),
        (["--weights", "{last}", "--source", "{tmp}/nowhere"], "nowhere: does not exist"),
        (["--weights", "{last}", "--source", "{tmp}"], "no images or videos found"),
        (["--weights", "{last}", "--source", "{img}", "--classes", "7"], "--classes [7]"),
    ],
)
def test_bad_inputs_print_one_error_line_and_exit_2(run, detect_cli, tmp_path, capsys, args, expected):
    args = [a.format(tmp=tmp_path, last=run.last, img=run.val_images[0]) for a in args]
    assert detect_cli.main(args + ["--project", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(60)
def test_all_sources_unreadable_is_an_error(run, detect_cli, tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert (
        detect_cli.main(
            ["--weights", str(run.last), "--source", str(tmp_path / "*.jpg"), "--project", str(tmp_path / "runs")]
        )
        == 2
    )
    assert "no readable images or videos among the sources" in capsys.readouterr().err


def label_rows(path):
    return [list(map(float, line.split())) for line in path.read_text().splitlines()]


@pytest.mark.timeout(300)
def test_off_a_terminal_detect_logs_progress_lines_and_lines_per_image_with_verbose(run, detect_cli, tmp_path, capsys):
    args = [
        "--weights",
        str(run.last),
        "--source",
        str(run.val_images[0].parent),
        "--imgsz",
        str(IMGSZ),
        "--nosave",
        "--project",
        str(tmp_path / "runs"),
    ]
    n = len(run.val_images)
    assert detect_cli.main(args) == 0
    out = capsys.readouterr().out  # not a terminal: the progress, not a line per image
    assert not re.search(r"^image \d", out, re.M)
    assert re.search(rf"^detect  {n}/{n} images, [\d.]+ img/s", out, re.M) and "Speed:" in out
    assert detect_cli.main([*args, "--verbose"]) == 0
    assert len(re.findall(r"^image \d+/\d+ ", capsys.readouterr().out, re.M)) == n


@pytest.mark.timeout(300)
def test_vid_stride_txt_order_relative_lists_and_nominal_shape_as_upstream(
    run, detect_cli, tmp_path, capsys, monkeypatch
):
    frames = [cv2.imread(str(f)) for f in run.val_images[:5]]
    write_video(tmp_path / "clip.mp4", frames)
    args = [
        "--weights",
        str(run.last),
        "--source",
        str(tmp_path / "clip.mp4"),
        "--imgsz",
        str(IMGSZ),
        "128",
        "--conf-thres",
        str(CONF),
        "--vid-stride",
        "2",
        "--save-txt",
        "--save-conf",
        "--save-crop",
        "--project",
        str(tmp_path / "runs"),
    ]
    assert detect_cli.main(args) == 0
    out = capsys.readouterr().out
    # frames 2 and 4 of 5 (upstream grabs vid_stride frames, then reads), counted (k/2) with no overrun
    assert re.findall(r"video 1/1 \((\d)/(\d)\)", out) == [("1", "2"), ("2", "2")]
    assert re.search(rf"Speed: .* at shape \(1, 3, {IMGSZ}, 128\)", out)  # the nominal shape, as upstream
    save_dir = tmp_path / "runs" / "exp"
    strided = label_rows(save_dir / "labels" / "clip_1.txt")
    assert [r[5] for r in strided] == sorted(r[5] for r in strided)  # lowest confidence first, as upstream

    # the second labelled frame is the video's 4th: the same boxes as that frame on its own
    monkeypatch.chdir(tmp_path)
    cap = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    for _ in range(4):
        ok, frame4 = cap.read()
    cap.release()
    cv2.imwrite(str(tmp_path / "frame4.png"), frame4)
    (tmp_path / "list.txt").write_text("frame4.png\n")  # relative to the working directory, as upstream
    args[args.index("--source") + 1] = "list.txt"
    assert detect_cli.main(args) == 0
    capsys.readouterr()
    alone = sorted(label_rows(tmp_path / "runs" / "exp2" / "labels" / "frame4.txt"))
    assert alone == sorted(label_rows(save_dir / "labels" / "clip_2.txt"))
    assert not (tmp_path / "runs" / "exp2" / "frame4.png").exists()  # a .txt source saves no images, as upstream


@pytest.mark.timeout(300)
def test_http_video_stream_and_streams_file(run, detect_cli, tmp_path, capsys):
    served = tmp_path / "served"
    served.mkdir()
    write_video(served / "clip.mp4", [cv2.imread(str(f)) for f in run.val_images[:4]])
    (served / "live").write_bytes((served / "clip.mp4").read_bytes())  # no media suffix: read as a stream
    common = [
        "--weights",
        str(run.last),
        "--imgsz",
        str(IMGSZ),
        "--conf-thres",
        str(CONF),
        "--save-txt",
        "--project",
        str(tmp_path / "runs"),
    ]
    with serve_folder(served) as url:
        assert detect_cli.main([*common, "--source", f"{url}/clip.mp4"]) == 0  # a video URL: every frame
        out = capsys.readouterr().out
        assert re.findall(r"video 1/1 \((\d)/4\)", out) == ["1", "2", "3", "4"]
        (tmp_path / "cams.streams").write_text(f"{url}/live\n")
        assert detect_cli.main([*common, "--source", str(tmp_path / "cams.streams")]) == 0
        out = capsys.readouterr().out
    assert f"1/1: {url}/live...  Success (4 frames {IMGSZ}x{IMGSZ} at 5.00 FPS)" in out
    lines = re.findall(rf"^0: {IMGSZ}x{IMGSZ} .*ms$", out, re.M)
    assert 1 <= len(lines) <= 4  # the newest frame each step, none twice
    stream_dir = tmp_path / "runs" / "exp2"
    video = cv2.VideoCapture(str(stream_dir / "live.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(lines)
    video.release()
    assert (stream_dir / "labels" / "live_0.txt").is_file()


@pytest.mark.timeout(120)
def test_an_unopenable_webcam_or_stream_is_one_error_line(run, detect_cli, tmp_path, capsys):
    for source in ("9", "rtsp://127.0.0.1:1/none"):
        args = ["--weights", str(run.last), "--source", source, "--project", str(tmp_path / "runs")]
        assert detect_cli.main(args) == 2
        err = capsys.readouterr().err
        assert err == f"error: --source {source}: cannot be opened (webcam index, stream URL or video)\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(300)
def test_api_tensor_crops_render_repr_and_augment_as_upstream(run, model, tmp_path):
    path = run.val_images[0]
    rgb = np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float()[None] / 255
    raw = model(x)
    assert isinstance(raw, torch.Tensor) and raw.shape == (1, 3 * (12 * 12 + 6 * 6 + 3 * 3), 9)

    results = model(rgb, size=IMGSZ)
    assert repr(results).startswith("YOLOv5 <class 'yolo_ray.infer.detections.Detections'> instance\nimage 1/1")
    crops = results.crop(save=False)
    assert len(crops) == len(results.xyxy[0]) > 0
    first = crops[0]
    assert isinstance(first["conf"], torch.Tensor) and isinstance(first["cls"], torch.Tensor)
    assert first["conf"] == results.xyxy[0][-1, 4]  # lowest confidence first, as upstream
    assert np.array_equal(first["im"], crop_box(first["box"], rgb)[..., ::-1])  # BGR, ready for cv2.imwrite
    annotated = results.render()
    assert results.ims is annotated and not np.array_equal(annotated[0], rgb)

    augmented = model(rgb, size=IMGSZ, augment=True)
    assert augmented.xyxy[0].shape[1] == 6 and not torch.equal(augmented.xyxy[0], model(rgb, size=IMGSZ).xyxy[0])


@pytest.mark.timeout(120)
def test_visualize_saves_every_layer_but_detect_and_returns_the_predictions(run, tmp_path, monkeypatch):
    from yolo_ray.infer import visualize
    from yolo_ray.infer.backends import load_backend

    backend = load_backend(run.last)
    saved = []
    monkeypatch.setattr(visualize, "save_feature_maps", lambda x, kind, i, folder: saved.append((i, kind, x.shape)))
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        got = backend(x, visualize=tmp_path / "maps")
        expected = backend(x)
    assert torch.equal(got, expected)
    layers = list(backend.model.model)
    assert [i for i, _, _ in saved] == list(range(len(layers) - 1))  # every layer but Detect, in order
    assert saved[0][1].endswith(".Conv") and saved[0][2] == (1, 16, IMGSZ // 2, IMGSZ // 2)

    monkeypatch.undo()
    visualize.save_feature_maps(torch.rand(1, 4, 6, 6), saved[0][1], 0, tmp_path)  # upstream's file names
    assert (tmp_path / "stage0_Conv_features.png").stat().st_size > 1000
    assert np.load(tmp_path / "stage0_Conv_features.npy").shape == (4, 6, 6)
