"""Validate trained weights; options: `python scripts/val.py --help`.

The command lives in yolo_ray/commands/val.py (examples there); installed, it is `yolo-ray val`.
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray val
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.val import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
