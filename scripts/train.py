"""Train a YOLOv5 detector: in this process, or as N DDP workers under Ray Train.

    python scripts/train.py --cfg yolov5n.yaml --epochs 3 --imgsz 160            # built-in data
    python scripts/train.py --data coco128.yaml --weights runs/train/exp/weights/best.pt
    python scripts/train.py --cfg yolov5s.yaml --ray-workers 2 --batch-size 32   # DDP via Ray Train
    python scripts/train.py --resume                                             # newest last.pt
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray train
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.train import (  # noqa: E402,F401  (tests reach the driver's steps here)
    build_parser, claim_run_dir, fresh_run_options, main, resume_options,
)

if __name__ == "__main__":
    sys.exit(main())
