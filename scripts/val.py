"""Validate trained YOLOv5 weights (one model, or several as an ensemble) on a dataset split.

    python scripts/val.py --weights runs/train/exp/weights/best.pt                    # built-in data
    python scripts/val.py --weights best.pt --data coco128.yaml --imgsz 640 --verbose
    python scripts/val.py --weights a.pt b.pt --data coco128.yaml                      # ensemble
    python scripts/val.py --weights best.pt --task speed                               # timing only
    python scripts/val.py --weights best.pt --prune 0.3                                # mAP after pruning
    python scripts/val.py --weights best.pt --augment                                  # test-time augmentation
    python scripts/val.py --weights best.onnx --imgsz 640                              # an export
    python scripts/val.py --weights best.pt --task study                               # mAP and speed by size
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray val
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.val import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
