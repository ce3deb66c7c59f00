"""Export trained weights beside themselves: yolov5 (a .pt upstream YOLOv5 loads), torchscript, onnx, openvino.

python scripts/export.py --weights runs/train/exp/weights/best.pt --include yolov5 onnx torchscript
python scripts/export.py --weights best.pt --include onnx --dynamic --simplify --imgsz 320
python scripts/export.py --weights best.pt --include openvino                  # best_openvino_model/
"""

from __future__ import annotations

import argparse
import sys

from yolo_ray.cli import OneLineParser, add_console_options, add_model_options, start_logging
from yolo_ray.config import UserError
from yolo_ray.infer.formats import FORMATS, ONNX_OPSET, check_include


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
    try:
        opt = build_parser().parse_args(argv)
        start_logging({"quiet": opt.quiet, "verbose": opt.verbose})
        imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
        if len(imgsz) != 2 or min(imgsz) < 1:
            raise UserError(f"--imgsz {opt.imgsz}: give one size or height and width, all positive")
        if opt.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {opt.batch_size}")
        check_include(opt.include)
        from yolo_ray.infer.backends import weights_file
        from yolo_ray.infer.export import export_formats
        from yolo_ray.cluster.session import select_device

        weights = [weights_file(w) for w in opt.weights]
        device = select_device(opt.device)
        if opt.half and device.type == "cpu":
            raise UserError("--half only compatible with GPU export, i.e. use --device 0")
        if opt.half and opt.dynamic:
            raise UserError("--half not compatible with --dynamic, i.e. use either --half or --dynamic but not both")
        for w in weights:
            export_formats(
                w,
                opt.include,
                tuple(imgsz),
                opt.batch_size,
                opt.dynamic,
                opt.opset,
                device,
                half=opt.half,
                simplify=opt.simplify,
            )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
