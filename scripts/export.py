"""Export trained weights; options: `python scripts/export.py --help`.

The command lives in yolo_ray/commands/export.py (examples there); installed, it is `yolo-ray export`.
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray export
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.export import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
