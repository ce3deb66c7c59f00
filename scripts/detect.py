"""Detect objects in images, videos and streams; options: `python scripts/detect.py --help`.

The command lives in yolo_ray/commands/detect.py (examples there); installed, it is `yolo-ray detect`.
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray detect
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.detect import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
