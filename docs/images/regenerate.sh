#!/usr/bin/env bash
# Regenerates the README's pictures with the project's own commands on the built-in data (CPU is fine;
# about 15 minutes on 2 cores). Run from the checkout: bash docs/images/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=$(mktemp -d)
export OMP_NUM_THREADS=1

# evolve.png: the quick start's evolution
"$PY" scripts/evolve.py --generations 8 --epochs 3 --imgsz 160 --project "$OUT/evolve" --name exp
# results.png and confusion_matrix.png: a short training from the built-in checkpoint
"$PY" scripts/train.py --weights yolo_ray/data/builtin/yolov5n-synthetic.pt --epochs 10 --imgsz 160 \
    --project "$OUT/train" --name exp
# search_quality.png: every strategy at a small equal budget
"$PY" benchmarks/bench_search.py --trials 4 --seeds 1 --noise-seeds 2 --epochs 1 --imgsz 128 --out "$OUT/search"

"$PY" - "$OUT" <<'PYEOF'
import sys
from pathlib import Path

import cv2

out = Path(sys.argv[1])
pictures = {"evolve.png": out / "evolve/exp/evolve.png", "results.png": out / "train/exp/results.png",
            "confusion_matrix.png": out / "train/exp/confusion_matrix.png",
            "search_quality.png": out / "search/search_quality.png"}
for name, source in pictures.items():
    image = cv2.imread(str(source))
    scale = min(1.0, 900 / image.shape[1])  # small PNGs: the README shows them at page width
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(Path("docs/images") / name), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"docs/images/{name} <- {source}")
PYEOF
