"""The formats scripts/export.py builds, and its --include check (no torch: --help stays fast)."""

from __future__ import annotations

import importlib.util

from yolo_ray.config import UserError

FORMATS = ("yolov5", "torchscript", "onnx", "openvino")
NOT_BUILT = {
    "engine": "TensorRT engines are not built here (they need a CUDA GPU and TensorRT)",
    "coreml": "CoreML models are not built here",
    "saved_model": "TensorFlow formats are not built here",
    "pb": "TensorFlow formats are not built here",
    "tflite": "TensorFlow formats are not built here",
    "edgetpu": "TensorFlow formats are not built here",
    "tfjs": "TensorFlow formats are not built here",
    "paddle": "PaddlePaddle models are not built here",
}
ONNX_OPSET = 12  # upstream's default


def check_include(include: list[str]) -> list[str]:
    """The formats to build, lower-cased; a UserError naming an unknown or unbuilt one."""
    include = [f.lower() for f in include]
    for f in include:
        if f in NOT_BUILT:
            raise UserError(f"--include {f}: {NOT_BUILT[f]} (formats built: {', '.join(FORMATS)})")
    unknown = [f for f in include if f not in FORMATS]
    if unknown:
        raise UserError(f"--include {' '.join(unknown)}: unknown format (choose from {', '.join(FORMATS)})")
    return include


# The packages each format needs, and the extra that brings them.
NEEDS = {"onnx": (("onnx", "export"),), "openvino": (("onnx", "export"), ("openvino", "openvino"))}


def check_packages(include: list[str], simplify: bool) -> None:
    """A UserError naming the first package a chosen format (or --simplify) needs and cannot import."""
    needed = [need for f in include for need in NEEDS.get(f, ())]
    if simplify and ("onnx" in include or "openvino" in include):
        needed.append(("onnxslim", "export"))
    for package, extra in needed:
        if importlib.util.find_spec(package) is None:
            what = "--simplify" if package == "onnxslim" else f"--include {' '.join(include)}"
            raise UserError(f"{what} needs the {package} package: pip install 'yolo_ray[{extra}]'")
