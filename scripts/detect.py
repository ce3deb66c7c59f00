"""Run a trained YOLOv5 model on images, videos and streams: annotated copies, YOLO txt labels, crops.

    python scripts/detect.py --weights runs/train/exp/weights/best.pt --source images/       # a folder
    python scripts/detect.py --weights best.pt --source 'frames/*.jpg' --save-txt --save-conf
    python scripts/detect.py --weights best.pt --source clip.mp4 --conf-thres 0.4
    python scripts/detect.py --weights a.pt b.pt --source list.txt --save-crop                # ensemble
    python scripts/detect.py --weights best.onnx --source 0                                    # webcam
    python scripts/detect.py --weights best.pt --source rtsp://host/stream --imgsz 480 640     # stream
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray detect
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.detect import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
