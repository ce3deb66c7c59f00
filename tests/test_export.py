"""scripts/export.py: the yolov5 pickle names only upstream classes and torch/builtins globals, and
ONNX / TorchScript outputs equal PyTorch's on real images."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

import yolo_ray
from infer_helpers import IMGSZ, load_script, trained_run
from yolo_ray.models.loading import load_models
from yolo_ray.infer.upstream_pickle import UPSTREAM_NAMES, foreign_globals, pickle_globals
from yolo_ray.models import load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = trained_run(tmp_path_factory)
    folder = tmp_path_factory.mktemp("export")
    weights = folder / "best.pt"
    shutil.copy(run.last, weights)
    args = [
        "--weights",
        str(weights),
        "--include",
        "yolov5",
        "onnx",
        "torchscript",
        "--imgsz",
        str(IMGSZ),
        "--dynamic",
        "--device",
        "cpu",
    ]
    assert load_script("export").main(args) == 0
    return run, weights


def real_batch(run, n=4) -> torch.Tensor:
    ims = [cv2.imread(str(f))[..., ::-1].transpose(2, 0, 1) for f in run.val_images[:n]]
    return torch.from_numpy(np.ascontiguousarray(np.stack(ims))).float() / 255


@pytest.mark.timeout(300)
def test_yolov5_export_pickles_only_upstream_paths(exported):
    run, weights = exported
    path = weights.with_name("best-yolov5.pt")
    names = pickle_globals(path)
    upstream = {f"{m}.{n}" for m, n in UPSTREAM_NAMES.values()}
    assert {n for n in names if n.startswith("models.")} == upstream
    assert not any("yolo_ray" in n for n in names)
    assert foreign_globals(path) == []
    assert {"torch._utils._rebuild_tensor_v2", "torch.nn.modules.conv.Conv2d", "collections.OrderedDict"} <= names

    # our restricted loader reads it as an upstream file: the same weights (fp16 storage), names and yaml
    ours, theirs = load_checkpoint(weights), load_checkpoint(path)
    assert theirs["state_dict"].keys() == ours["state_dict"].keys()
    assert all(torch.equal(theirs["state_dict"][k], ours["state_dict"][k]) for k in ours["state_dict"])
    assert theirs["names"] == ours["names"] and theirs["yaml"]["nc"] == 4

    # and the API takes it like any upstream .pt
    original, upstream_file = yolo_ray.load(weights, device="cpu"), yolo_ray.load(path, device="cpu")
    original.conf = upstream_file.conf = 0.003
    image = str(run.val_images[0])
    assert torch.equal(original(image, size=IMGSZ).xyxy[0], upstream_file(image, size=IMGSZ).xyxy[0])


@pytest.mark.timeout(300)
def test_onnx_and_torchscript_match_pytorch_on_real_images(exported):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'export' and 'test' extras")
    run, weights = exported
    x = real_batch(run)
    with torch.no_grad():
        expected = load_models(weights)(x)[0].numpy()

    session = ort.InferenceSession(str(weights.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]  # batch 4 through a batch-1 export: --dynamic
    assert got.shape == expected.shape
    onnx_diff = float(np.abs(got - expected).max())
    print(f"ONNX max abs difference: {onnx_diff:.2e}")
    assert onnx_diff <= TOLERANCE
    meta = {p.key: p.value for p in __import__("onnx").load(str(weights.with_suffix(".onnx"))).metadata_props}
    assert meta["stride"] == "32" and "circle" in meta["names"]

    files = {"config.txt": ""}
    scripted = torch.jit.load(str(weights.with_suffix(".torchscript")), _extra_files=files)
    assert json.loads(files["config.txt"])["names"]["0"] == "circle"
    with torch.no_grad():
        ts_diff = float((scripted(x[:1]) - torch.from_numpy(expected[:1])).abs().max())
    print(f"TorchScript max abs difference: {ts_diff:.2e}")
    assert ts_diff <= TOLERANCE


@pytest.mark.timeout(300)
def test_dynamic_onnx_runs_other_sizes_and_batches_as_pytorch(exported):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'export' and 'test' extras")
    run, weights = exported
    x = real_batch(run, 2)
    x = torch.nn.functional.interpolate(x, size=(160, 128), mode="bilinear")  # not the exported 96 x 96
    with torch.no_grad():
        expected = load_models(weights)(x)[0].numpy()
    session = ort.InferenceSession(str(weights.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    assert got.shape == expected.shape == (2, 3 * (20 * 16 + 10 * 8 + 5 * 4), 9)  # boxes axis dynamic too
    assert float(np.abs(got - expected).max()) <= TOLERANCE
    assert [o.opset_import[0].version for o in [__import__("onnx").load(str(weights.with_suffix(".onnx")))]] == [12]


@pytest.mark.timeout(300)
def test_simplify_opset_and_openvino_match_pytorch(exported, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'export' and 'test' extras")
    pytest.importorskip("onnxslim", reason="onnxslim is in the 'export' and 'test' extras")
    pytest.importorskip("openvino", reason="openvino is in the 'openvino' and 'test' extras")
    import onnx

    run, source = exported
    weights = tmp_path / "w.pt"
    shutil.copy(source, weights)
    args = [
        "--weights",
        str(weights),
        "--include",
        "onnx",
        "openvino",
        "--imgsz",
        str(IMGSZ),
        "--simplify",
        "--opset",
        "17",
    ]
    assert load_script("export").main(args) == 0
    assert "slimming with onnxslim" in capsys.readouterr().out
    slim = onnx.load(str(weights.with_suffix(".onnx")))
    plain = onnx.load(str(source.with_suffix(".onnx")))
    assert slim.opset_import[0].version == 17 and len(slim.graph.node) < len(plain.graph.node)
    assert {p.key for p in slim.metadata_props} == {"stride", "names"}

    x = real_batch(run, 1)
    with torch.no_grad():
        expected = load_models(weights)(x)[0].numpy()
    session = ort.InferenceSession(str(weights.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    assert float(np.abs(session.run(None, {"images": x.numpy()})[0] - expected).max()) <= TOLERANCE

    folder = tmp_path / "w_openvino_model"
    assert {p.name for p in folder.iterdir()} == {"w.xml", "w.bin", "w.yaml"}
    from yolo_ray.infer.backends import load_backend

    backend = load_backend(folder)
    assert backend.fmt == "openvino" and backend.names[0] == "circle" and backend.stride == 32
    openvino_diff = float(np.abs(backend(x).numpy() - expected).max())
    print(f"OpenVINO max abs difference: {openvino_diff:.2e}")
    assert openvino_diff <= TOLERANCE


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--include", "tflite"], "--include tflite: TensorFlow formats are not built here"),
        (["--include", "engine"], "--include engine: TensorRT engines are not built here"),
        (["--include", "pdf"], "--include pdf: unknown format"),
        (["--half"], "--half only compatible with GPU export, i.e. use --device 0"),
        (["--opset", "7", "--include", "onnx"], "--opset 7: the ONNX exporter refused it"),
    ],
)
def test_bad_options_print_one_error_line_and_exit_2(exported, tmp_path, capsys, args, expected):
    _, weights = exported
    copy = tmp_path / "w.pt"
    shutil.copy(weights, copy)
    assert load_script("export").main(["--weights", str(copy), "--imgsz", str(IMGSZ), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err


@pytest.mark.timeout(60)
def test_missing_weights_is_one_error_line(tmp_path, capsys):
    assert load_script("export").main(["--weights", str(tmp_path / "none.pt"), "--include", "onnx"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none.pt'}: weights file not found\n"
