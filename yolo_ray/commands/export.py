"""Export trained weights beside themselves: yolov5 (a .pt upstream YOLOv5 loads), torchscript, onnx, openvino.

python scripts/export.py --weights runs/train/exp/weights/best.pt --include yolov5 onnx torchscript
python scripts/export.py --weights best.pt --include onnx --dynamic --simplify --imgsz 320
python scripts/export.py --weights best.pt --include openvino                  # best_openvino_model/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from yolo_ray.cli import (
    OneLineParser,
    add_console_options,
    add_model_options,
    check_minimums,
    run_script,
    start_logging,
)
from yolo_ray.config import UserError
from yolo_ray.infer.formats import FORMATS, ONNX_OPSET, check_include, check_packages
from yolo_ray.paths import is_writable_dir


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Export YOLOv5 (v7.0-compatible) weights.")
    add_model_options(
        p,
        None,
        "model.pt path(s), each exported beside itself",
        device_default="cpu",
        half_help="FP16 half-precision export (CUDA devices only)",
    )
    p.add_argument("--include", nargs="+", default=["torchscript"], help=f"formats: {', '.join(FORMATS)}")
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640, 640], help="image (h, w)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size")
    p.add_argument("--dynamic", action="store_true", help="ONNX: dynamic batch, height, width (and boxes)")
    p.add_argument("--simplify", action="store_true", help="ONNX: simplify the graph (onnxslim)")
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help="ONNX: opset version")
    add_console_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_script(lambda: _export(argv))


def _export(argv: list[str] | None) -> int:
    """Everything is checked (options, packages, each weights file, the folder beside it) before any file
    is written; then each weights file's formats are written together (see infer.export.StagedFiles)."""
    opt = build_parser().parse_args(argv)
    start_logging({"quiet": opt.quiet, "verbose": opt.verbose})
    imgsz = _check(opt)
    from yolo_ray.cluster.session import select_device
    from yolo_ray.infer.export import export_formats
    from yolo_ray.models.loading import model_stride
    from yolo_ray.training.model_setup import check_img_size

    device = select_device(opt.device)
    if opt.half and device.type == "cpu":
        raise UserError("--half only compatible with GPU export, i.e. use --device 0")
    models = [_load(w, opt.include) for w in opt.weights]
    for weights, model in models:
        stride = model_stride(model)
        rounded = {x: check_img_size(x, stride) for x in dict.fromkeys(imgsz)}  # one warning per size, not per side
        export_formats(
            weights,
            opt.include,
            tuple(rounded[x] for x in imgsz),
            opt.batch_size,
            opt.dynamic,
            opt.opset,
            device,
            half=opt.half,
            simplify=opt.simplify,
            model=model,
        )
    return 0


def _check(opt: argparse.Namespace) -> list[int]:
    """The options that need no model; returns --imgsz as [h, w]."""
    imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    if len(imgsz) != 2 or min(imgsz) < 1:
        raise UserError(f"--imgsz {opt.imgsz}: give one size or height and width, all positive")
    check_minimums(1, batch_size=opt.batch_size)
    opt.include = check_include(opt.include)
    check_packages(opt.include, opt.simplify)
    if "onnx" in opt.include or "openvino" in opt.include:
        from yolo_ray.infer.export import onnx_opsets

        opsets = onnx_opsets()
        if opt.opset not in opsets:
            raise UserError(f"--opset {opt.opset}: the ONNX exporter writes opsets {opsets[0]} to {opsets[-1]}")
    if opt.half and opt.dynamic:
        raise UserError("--half not compatible with --dynamic, i.e. use either --half or --dynamic but not both")
    return imgsz


def _load(weights: str, include: list[str]) -> tuple[Path, Any]:
    """The weights file and its model, once the folder beside it can take the exported files."""
    from yolo_ray.infer.backends import weights_file
    from yolo_ray.infer.export import output_paths
    from yolo_ray.models.loading import model_from_checkpoint

    path = weights_file(weights)  # an official name stays a name: its files go to the working directory
    if not is_writable_dir(path.parent):
        raise UserError(f"{path.parent}: is not writable (export writes its files beside the weights)")
    for output in output_paths(path, include).values():
        if output.is_dir() and not output.name.endswith("_openvino_model"):
            raise UserError(f"{output}: is a folder, where the export would write its file")
    model = model_from_checkpoint(path)
    return path, model
