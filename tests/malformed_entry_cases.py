"""The entry-point table's rows: bad files, options and calls given to val.py, detect.py, export.py,
bench_search.py and the Python API, and what each one's error (or warning) line must say.
tests/test_malformed_entry_points.py runs them; tests/malformed_world.py builds the files they name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import yolo_ray
from malformed_world import ENTRY_READ_ONLY

M = "{w}/models"
F = "{w}/files"
# What every case starts from; a case's own arguments come after and override these.
BASE_ARGS = {
    "val": ["--weights", f"{M}/best.pt", "--data", "{w}/good/data.yaml", "--imgsz", "64", "--batch-size", "4"]
    + ["--workers", "0", "--device", "cpu", "--project", "{w}/runs/val"],
    "detect": ["--weights", f"{M}/best.pt", "--source", "{w}/good/images/val", "--imgsz", "64", "--device", "cpu"]
    + ["--project", "{w}/runs/detect"],
    "export": ["--weights", f"{M}/best.pt", "--include", "torchscript", "--imgsz", "64", "--device", "cpu"],
    "bench_search": ["--data", "{w}/good/data.yaml", "--out", "{w}/runs/bench", "--imgsz", "64", "--epochs", "1"]
    + ["--trials", "1", "--seeds", "1", "--noise-seeds", "1", "--strategies", "classic", "random"],
}


@dataclass(frozen=True)
class Case:
    id: str
    script: str  # a key of SCRIPTS, or "api"
    args: tuple[str, ...] = ()  # "{w}" is the world folder
    expected: str = ""  # in the error (or warning) line: names the file or option, and the problem
    call: Callable[[Path, Any], Any] | None = None  # api: call(world, loaded model)
    may_write: str = ""  # a case that goes on (exit 0, one WARNING line) may write under this world folder


def cli(script: str, id_: str, args: list[str], expected: str, may_write: str = "") -> Case:
    return Case(f"{script}-{id_}", script, tuple(args), expected, may_write=may_write)


def api(id_: str, call: Callable[[Path, Any], Any], expected: str) -> Case:
    return Case(f"api-{id_}", "api", expected=expected, call=call)


def weights_cases(script: str, extra: list[str] = ()) -> list[Case]:
    """The wrong files given as --weights: every script that reads weights says what the file is."""
    rows = [
        ("onnx-named-pt", "onnx_as.pt", "onnx_as.pt: is an ONNX model, expected a PyTorch .pt checkpoint"),
        ("torchscript-named-pt", "torchscript_as.pt", "torchscript_as.pt: is a TorchScript model, expected a PyTorch"),
        ("image-named-pt", "image_as.pt", "image_as.pt: is a JPEG image, expected a PyTorch .pt checkpoint"),
        ("yaml-named-pt", "yaml_as.pt", "yaml_as.pt: not a readable PyTorch checkpoint"),
        ("folder-named-pt", "folder.pt", "folder.pt: is a folder, expected a weights file"),
        ("missing", "missing.pt", "missing.pt: weights file not found"),
    ]
    return [cli(script, f"weights-{i}", ["--weights", f"{M}/{f}", *extra], e) for i, f, e in rows]


def inference_weights_cases(script: str) -> list[Case]:
    """val and detect also run exports, so a model file under the wrong suffix is named by what it is."""
    return [
        cli(script, "weights-onnx-named-bin", ["--weights", f"{M}/best_onnx.bin"], "is an ONNX model, but its name"),
        cli(
            script,
            "weights-pt-named-onnx",
            ["--weights", f"{M}/pt_as.onnx"],
            "pt_as.onnx: is a PyTorch checkpoint, expected an ONNX model",
        ),
        cli(
            script,
            "weights-pt-named-torchscript",
            ["--weights", f"{M}/pt_as.torchscript"],
            "pt_as.torchscript: is a PyTorch checkpoint, expected a TorchScript model",
        ),
        cli(
            script,
            "weights-openvino-a-file",
            ["--weights", f"{M}/file_openvino_model"],
            "file_openvino_model: is a file, expected an OpenVINO *_openvino_model folder",
        ),
        cli(script, "weights-openvino-empty", ["--weights", f"{M}/empty_openvino_model"], "no .xml model"),
        cli(
            script, "weights-ensemble-of-an-export", ["--weights", f"{M}/best.pt", f"{M}/best.onnx"], "needs .pt files"
        ),
    ]


def project_cases(script: str) -> list[Case]:
    return [
        cli(script, "project-is-a-file", ["--project", f"{F}/empty.yaml"], "empty.yaml is not a folder"),
        cli(script, "project-under-a-file", ["--project", f"{F}/empty.yaml/runs"], "empty.yaml is not a folder"),
        cli(script, "project-read-only", ["--project", "{w}/readonly/runs"], "{w}/readonly is not writable"),
        cli(script, "name-empty", ["--name", ""], "--name '': expected a folder name inside --project"),
    ]


VAL = [
    *weights_cases("val"),
    *inference_weights_cases("val"),
    *project_cases("val"),
    cli("val", "data-missing", ["--data", f"{F}/missing.yaml"], "missing.yaml: file not found"),
    cli("val", "data-is-a-folder", ["--data", "{w}/good"], "good: is a folder, expected a YAML file"),
    cli("val", "data-invalid-yaml", ["--data", f"{F}/invalid.yaml"], "invalid.yaml: not valid YAML"),
    cli("val", "data-nc-mismatch", ["--data", f"{F}/data_nc_mismatch.yaml"], "nc=3 but 'names' has 4 entries"),
    cli("val", "conf-thres-2", ["--conf-thres", "2"], "--conf-thres must be in [0, 1], got 2"),
    cli("val", "conf-thres-nan", ["--conf-thres", "nan"], "--conf-thres must be in [0, 1], got nan"),
    cli("val", "iou-thres-negative", ["--iou-thres", "-0.1"], "--iou-thres must be in [0, 1], got -0.1"),
    cli("val", "prune-1", ["--prune", "1"], "--prune must be in [0, 1), got 1"),
    cli("val", "batch-size-0", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    cli("val", "imgsz-0", ["--imgsz", "0"], "--imgsz must be at least 1, got 0"),
    cli("val", "max-det-0", ["--max-det", "0"], "--max-det must be at least 1, got 0"),
    cli("val", "workers-negative", ["--workers", "-1"], "--workers must be at least 0, got -1"),
    cli("val", "imgsz-not-int", ["--imgsz", "big"], "argument --imgsz/--img/--img-size: invalid int value: 'big'"),
    cli("val", "task-choice", ["--task", "bench"], "argument --task: invalid choice: 'bench'"),
    cli("val", "device-garbage", ["--device", "banana"], "--device 'banana': expected '', 'cpu' or CUDA indices"),
    cli("val", "unknown-option", ["--bogus"], "unrecognized arguments: --bogus"),
    cli("val", "augment-onnx", ["--weights", f"{M}/best.onnx", "--augment"], "--augment and --prune need PyTorch"),
    cli("val", "onnx-other-size", ["--weights", f"{M}/best.onnx", "--imgsz", "128"], "exported for 64x64"),
    # fails once the run has started: the run folder it made is removed again
    cli("val", "val-images-all-corrupt", ["--data", "{w}/val_corrupt/data.yaml"], "val_corrupt"),
    cli(
        "val",
        "imgsz-70-rounds-up",
        ["--imgsz", "70"],
        "WARNING: --img-size 70 must be multiple of max stride 32, updating to 96",
        may_write="runs/val",
    ),
]

DETECT = [
    *weights_cases("detect"),
    *inference_weights_cases("detect"),
    *project_cases("detect"),
    cli("detect", "source-missing", ["--source", "{w}/sources/nowhere.jpg"], "nowhere.jpg: does not exist"),
    cli("detect", "source-empty-folder", ["--source", "{w}/sources/empty"], "no images or videos found"),
    cli("detect", "source-a-checkpoint", ["--source", f"{M}/best.pt"], "best.pt: no images or videos found"),
    cli("detect", "source-streams-missing", ["--source", "{w}/sources/cams.streams"], "cams.streams: does not exist"),
    # every file unreadable: found out while running, and the run folder it made is removed again
    cli("detect", "source-all-unreadable", ["--source", "{w}/sources/broken"], "no readable images or videos"),
    cli("detect", "classes-above-nc", ["--classes", "7"], "--classes [7]: the model has classes 0..3"),
    cli("detect", "classes-negative", ["--classes", "-1"], "--classes [-1]: the model has classes 0..3"),
    cli("detect", "conf-thres-1.5", ["--conf-thres", "1.5"], "--conf-thres must be in [0, 1], got 1.5"),
    cli("detect", "iou-thres-negative", ["--iou-thres", "-1"], "--iou-thres must be in [0, 1], got -1"),
    cli("detect", "imgsz-0", ["--imgsz", "0"], "--imgsz must be at least 1, got 0"),
    cli("detect", "imgsz-three-sides", ["--imgsz", "64", "64", "64"], "--imgsz 64 64 64: give one size or height"),
    cli("detect", "max-det-0", ["--max-det", "0"], "--max-det must be at least 1, got 0"),
    cli("detect", "line-thickness-0", ["--line-thickness", "0"], "--line-thickness must be at least 1, got 0"),
    cli("detect", "vid-stride-0", ["--vid-stride", "0"], "--vid-stride must be at least 1, got 0"),
    cli("detect", "device-absent-gpu", ["--device", "7"], "--device '7': CUDA device 7 is not available"),
    cli("detect", "unknown-option", ["--bogus"], "unrecognized arguments: --bogus"),
    cli("detect", "visualize-onnx", ["--weights", f"{M}/best.onnx", "--visualize"], "--visualize need PyTorch"),
]

EXPORT = [
    *weights_cases("export"),
    cli("export", "weights-an-onnx-export", ["--weights", f"{M}/best.onnx"], "best.onnx: is an ONNX model, expected"),
    cli(
        "export",
        "beside-read-only-weights",
        ["--weights", f"{{w}}/{ENTRY_READ_ONLY}/best.pt"],
        f"{{w}}/{ENTRY_READ_ONLY}: is not writable (export writes its files beside the weights)",
    ),
    cli(
        "export",
        "output-is-a-folder",
        ["--weights", f"{M}/outdir/best.pt"],
        "outdir/best.torchscript: is a folder, where the export would write its file",
    ),
    cli("export", "include-unknown", ["--include", "pdf"], "--include pdf: unknown format"),
    cli("export", "include-not-built", ["--include", "engine"], "--include engine: TensorRT engines are not built"),
    cli("export", "imgsz-0", ["--imgsz", "0"], "--imgsz [0]: give one size or height and width, all positive"),
    cli("export", "imgsz-three-sides", ["--imgsz", "64", "64", "64"], "give one size or height and width"),
    cli("export", "batch-size-0", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    cli("export", "opset-99", ["--include", "onnx", "--opset", "99"], "--opset 99: the ONNX exporter writes opsets"),
    cli("export", "opset-3", ["--include", "onnx", "--opset", "3"], "--opset 3: the ONNX exporter writes opsets"),
    cli("export", "half-on-cpu", ["--half"], "--half only compatible with GPU export"),
    cli("export", "half-and-dynamic", ["--half", "--dynamic"], "--half not compatible with --dynamic"),
    cli("export", "device-garbage", ["--device", "gpu0"], "--device 'gpu0': expected '', 'cpu' or CUDA indices"),
    cli("export", "opset-not-int", ["--opset", "twelve"], "argument --opset: invalid int value: 'twelve'"),
    cli("export", "unknown-option", ["--bogus"], "unrecognized arguments: --bogus"),
    cli(
        "export",
        "imgsz-100-rounds-up",
        ["--weights", f"{M}/warn/best.pt", "--include", "yolov5", "torchscript", "--imgsz", "100"],
        "WARNING: --img-size 100 must be multiple of max stride 32, updating to 128",
        may_write="models/warn/",
    ),
]

B = "bench_search"
BENCH = [
    cli(B, "trials-0", ["--trials", "0"], "--trials must be at least 1, got 0"),
    cli(B, "seeds-0", ["--seeds", "0"], "--seeds must be at least 1, got 0"),
    cli(B, "noise-seeds-negative", ["--noise-seeds", "-1"], "--noise-seeds must be at least 1, got -1"),
    cli(B, "cpus-0", ["--cpus", "0"], "--cpus must be at least 1, got 0"),
    cli(B, "epochs-0", ["--epochs", "0"], "--epochs 0 is out of range (valid: [1, inf))"),
    cli(B, "imgsz-negative", ["--imgsz", "-3"], "--imgsz -3 is out of range"),
    cli(B, "batch-size-0", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    cli(B, "concurrency-0", ["--concurrency", "0"], "--concurrency 0 is out of range"),
    cli(B, "population-1", ["--strategies", "population", "--population", "1"], "a population needs at least 2"),
    cli(B, "strategy-choice", ["--strategies", "bogus"], "argument --strategies: invalid choice: 'bogus'"),
    cli(B, "trials-not-int", ["--trials", "many"], "argument --trials: invalid int value: 'many'"),
    cli(B, "out-is-a-file", ["--out", f"{F}/empty.yaml"], "--out {w}/files/empty.yaml: {w}/files/empty.yaml is not"),
    cli(B, "out-under-a-file", ["--out", f"{F}/empty.yaml/bench"], "empty.yaml is not a folder"),
    cli(B, "out-read-only", ["--out", "{w}/readonly/bench"], "{w}/readonly is not writable"),
    cli(B, "data-missing", ["--data", f"{F}/missing.yaml"], "missing.yaml: file not found"),
    cli(B, "data-is-a-folder", ["--data", "{w}/good"], "good: is a folder, expected a YAML file"),
    cli(B, "weights-onnx-named-pt", ["--weights", f"{M}/onnx_as.pt"], "onnx_as.pt: is an ONNX model, expected"),
    cli(B, "cfg-unknown", ["--cfg", "yolov9q.yaml"], "yolov9q.yaml: model yaml not found"),
    cli(B, "unknown-option", ["--bogus"], "unrecognized arguments: --bogus"),
]


def image(w: Path) -> str:
    return str(sorted((w / "good" / "images" / "val").iterdir())[0])


def load(model: Any, **options: Any) -> Callable[[Path, Any], Any]:
    """yolo_ray.load of model ('{w}' in a string is the world) with options."""
    return lambda w, _: yolo_ray.load(model.replace("{w}", str(w)) if isinstance(model, str) else model, **options)


def call(ims: Any, **options: Any) -> Callable[[Path, Any], Any]:
    """The loaded model called on ims (a function of the world folder when callable)."""
    return lambda w, model: model(ims(w) if callable(ims) else ims, **options)


def train(**options: Any) -> Callable[[Path, Any], Any]:
    return lambda w, _: yolo_ray.train(**_in_world({**TRAIN_BASE, "project": "{w}/runs/api", **options}, w))


def evolve(**options: Any) -> Callable[[Path, Any], Any]:
    base = {**TRAIN_BASE, "generations": 2, "project": "{w}/runs/api"}
    return lambda w, _: yolo_ray.evolve(**_in_world({**base, **options}, w))


def at(relative: str) -> Callable[[Path], str]:
    """A path in the world, once the world's folder is known."""
    return lambda w: f"{w}/{relative}"


def _in_world(options: dict[str, Any], w: Path) -> dict[str, Any]:
    return {k: v.replace("{w}", str(w)) if isinstance(v, str) else v for k, v in options.items()}


TRAIN_BASE = dict(
    cfg="yolov5n.yaml", data="{w}/good/data.yaml", imgsz=64, batch_size=4, workers=0, epochs=1, noautoanchor=True
)
CPU = dict(device="cpu")
API = [
    api("load-onnx-named-pt", load(f"{M}/onnx_as.pt", **CPU), "onnx_as.pt: is an ONNX model, expected a PyTorch"),
    api("load-onnx-named-bin", load(f"{M}/best_onnx.bin", **CPU), "best_onnx.bin: is an ONNX model, expected a .pt"),
    api("load-torchscript-named-pt", load(f"{M}/torchscript_as.pt", **CPU), "is a TorchScript model, expected"),
    api("load-image-named-pt", load(f"{M}/image_as.pt", **CPU), "image_as.pt: is a JPEG image, expected"),
    api("load-folder-named-pt", load(f"{M}/folder.pt", **CPU), "folder.pt: is a folder, expected a weights file"),
    api("load-missing", load(f"{M}/missing.pt", **CPU), "missing.pt: weights file not found"),
    api(
        "load-pt-named-onnx",
        load(f"{M}/pt_as.onnx", **CPU),
        "pt_as.onnx: is a PyTorch checkpoint, expected an ONNX model",
    ),
    api("load-openvino-a-file", load(f"{M}/file_openvino_model", **CPU), "is a file, expected an OpenVINO"),
    api("load-data-yaml", load("{w}/good/data.yaml", **CPU), "data.yaml: missing key 'depth_multiple'"),
    api("load-unknown-name", load("yolov5q", **CPU), "yolov5q: model yaml not found"),
    api("load-not-a-path", load(5, **CPU), "model: expected a path or a name, got int"),
    api("load-classes-0", load(f"{M}/best.pt", classes=0, **CPU), "classes: expected a positive integer, got 0"),
    api("load-classes-text", load(f"{M}/best.pt", classes="ten", **CPU), "classes: expected a positive integer"),
    api("load-channels-0", load(f"{M}/best.pt", channels=0, **CPU), "channels: expected a positive integer, got 0"),
    api("load-device-garbage", load(f"{M}/best.pt", device="banana"), "device: expected 'cpu', 'cuda', 'cuda:N'"),
    api("load-device-absent", load(f"{M}/best.pt", device="cuda:99"), "CUDA device is not available"),
    api("call-empty-list", call([]), "no images given"),
    api("call-missing-image", call(at("sources/none.jpg")), "none.jpg: image not found"),
    api("call-folder", call(at("sources")), "sources: is a folder, expected an image file"),
    api("call-a-checkpoint", call(at("models/best.pt")), "best.pt: not a readable image"),
    api("call-unreadable-image", call(at("sources/broken/a.jpg")), "a.jpg: not a readable image"),
    api("call-an-int", call(5), "input 0: expected a path, numpy array or PIL image, got int"),
    api("call-none-in-list", call(lambda w: [image(w), None]), "input 1: expected a path, numpy array or PIL"),
    api("call-4d-array", call(np.zeros((2, 8, 8, 3), dtype=np.uint8)), "input 0: expected an HWC image array"),
    api("call-url", call("https://example.com/a.jpg"), "URLs are not fetched"),
    api("call-tensor-3d", call(torch.zeros(3, 64, 64)), "a tensor input must be (batch, channels, height, width)"),
    api("call-tensor-channels", call(torch.zeros(1, 5, 64, 64)), "a tensor of shape (1, 5, 64, 64) does not fit"),
    api("call-size-0", call(image, size=0), "size: expected a positive integer or (height, width), got 0"),
    api("call-size-negative", call(image, size=-64), "size: expected a positive integer"),
    api("call-size-text", call(image, size="big"), "size: expected a positive integer or (height, width)"),
    api("call-size-three-sides", call(image, size=(64, 64, 64)), "got (64, 64, 64)"),
    api("call-size-float", call(image, size=64.5), "got 64.5"),
    api("train-epochs-0", train(epochs=0), "--epochs 0 is out of range (valid: [1, inf))"),
    api("train-imgsz-negative", train(imgsz=-1), "--imgsz -1 is out of range"),
    api("train-batch-size-0", train(batch_size=0), "--batch-size must be at least 1, got 0"),
    api("train-data-missing", train(data=f"{F}/missing.yaml"), "missing.yaml: file not found"),
    api("train-data-folder", train(data="{w}/good"), "good: is a folder, expected a YAML file"),
    api("train-weights-onnx", train(weights=f"{M}/onnx_as.pt", cfg=""), "onnx_as.pt: is an ONNX model, expected"),
    api("train-weights-folder", train(weights=f"{M}/folder.pt"), "folder.pt: is a folder, expected a weights file"),
    api("train-hyp-negative", train(hyp=f"{F}/hyp_lr0_neg.yaml"), "hyperparameter lr0 = -0.01 is out of range"),
    api("train-unknown-option", train(bogus=1), "train: unknown option bogus"),
    api("train-epochs-text", train(epochs="many"), "--epochs: expected an integer, got 'many'"),
    api("train-optimizer", train(optimizer="Lion"), "argument --optimizer: invalid choice: 'Lion'"),
    api("train-device-garbage", train(device="banana"), "--device 'banana': expected '', 'cpu' or CUDA indices"),
    api("evolve-generations-0", evolve(generations=0), "--generations 0 is out of range"),
    api("evolve-concurrency-0", evolve(concurrency=0), "--concurrency 0 is out of range"),
    api("evolve-strategy", evolve(strategy="annealing"), "invalid choice: 'annealing'"),
    api("evolve-space-missing", evolve(search_space=f"{F}/nope.yaml"), "nope.yaml: search space not found"),
    api("evolve-data-missing", evolve(data=f"{F}/missing.yaml"), "missing.yaml: file not found"),
    api("evolve-weights-image", evolve(weights=f"{M}/image_as.pt", cfg=""), "image_as.pt: is a JPEG image"),
    api("evolve-project-read-only", evolve(project="{w}/readonly/runs"), "{w}/readonly is not writable"),
    api("evolve-unknown-option", evolve(generation=2), "evolve: unknown option generation"),
    api("evolve-population-1", evolve(strategy="population", population=1), "a population needs at least 2"),
]

CASES: list[Case] = [*VAL, *DETECT, *EXPORT, *BENCH, *API]
