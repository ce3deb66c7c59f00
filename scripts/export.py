"""Export trained weights beside themselves: yolov5 (a .pt upstream YOLOv5 loads), torchscript, onnx, openvino.

    python scripts/export.py --weights runs/train/exp/weights/best.pt --include yolov5 onnx torchscript
    python scripts/export.py --weights best.pt --include onnx --dynamic --simplify --imgsz 320
    python scripts/export.py --weights best.pt --include openvino                  # best_openvino_model/
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray export
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.export import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
