"""Evolve YOLOv5 hyperparameters with its genetic algorithm, generations running in parallel on Ray.

    python scripts/evolve.py --generations 8 --epochs 3 --imgsz 160      # built-in synthetic data
    python scripts/evolve.py --data coco128.yaml --weights yolov5s.pt --epochs 10 --address auto
    python scripts/evolve.py --strategy population --population 8 --generations 32 --epochs 3 --imgsz 160
    python scripts/evolve.py --resume                                    # newest runs/evolve/exp*
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray evolve
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.evolve import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
