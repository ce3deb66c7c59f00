"""Train a YOLOv5 detector; options: `python scripts/train.py --help`.

The command lives in yolo_ray/commands/train.py (examples there); installed, it is `yolo-ray train`.
"""

import sys
from pathlib import Path

# From a checkout (or the copy of it a Ray job runs) the package beside this script; installed: yolo-ray train
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.commands.train import (  # noqa: E402,F401  (tests reach the driver's steps here)
    build_parser,
    claim_run_dir,
    fresh_run_options,
    main,
    resume_options,
)

if __name__ == "__main__":
    sys.exit(main())
