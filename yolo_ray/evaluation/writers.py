"""Prediction files in upstream's formats: YOLO txt labels (val.py and detect.py), COCO json and its scoring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from yolo_ray.boxes import xyxy2xywh
from yolo_ray.console import LOGGER

# COCO's 80 detection classes among its 91 category ids (upstream's coco80_to_coco91_class).
COCO91_IDS = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)
COCO_ANNOTATIONS = Path("annotations") / "instances_val2017.json"


def yolo_lines(det: torch.Tensor, shape: tuple[int, int], save_conf: bool) -> list[str]:
    """'cls xc yc w h [conf]' rows (normalised to the image of shape (h, w)) for detections (k, 6) xyxy pixels."""
    gain = torch.tensor((shape[1], shape[0], shape[1], shape[0]), dtype=torch.float32)
    lines = []
    for *xyxy, conf, cls in det.detach().float().cpu().tolist():
        xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gain).view(-1).tolist()
        values = (cls, *xywh, conf) if save_conf else (cls, *xywh)
        lines.append(("%g " * len(values)).rstrip() % values + "\n")
    return lines


def append_labels(path: Path, det: torch.Tensor, shape: tuple[int, int], save_conf: bool) -> None:
    """Append detections to a YOLO label file (appending, so video frames or reruns accumulate, as upstream)."""
    with open(path, "a") as f:
        f.writelines(yolo_lines(det, shape, save_conf))


def coco_records(predn: torch.Tensor, path: str, class_ids: list[int] | tuple[int, ...] | None) -> list[dict]:
    """COCO result records of one image: top-left xywh boxes, the image id from a numeric file stem."""
    stem = Path(path).stem
    image_id: Any = int(stem) if stem.isnumeric() else stem
    boxes = xyxy2xywh(predn[:, :4].detach().float().cpu())
    boxes[:, :2] -= boxes[:, 2:] / 2
    records = []
    for p, b in zip(predn.detach().float().cpu().tolist(), boxes.tolist()):
        cls = int(p[5])
        records.append(
            {
                "image_id": image_id,
                "category_id": class_ids[cls] if class_ids else cls,
                "bbox": [round(x, 3) for x in b],
                "score": round(p[4], 5),
            }
        )
    return records


def _coco_api() -> tuple[Any, Any] | None:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        try:
            import faster_coco_eval
        except ImportError:
            return None
        faster_coco_eval.init_as_pycocotools()  # registers pycocotools-compatible modules
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    return COCO, COCOeval


def coco_evaluate(anno_json: Path, pred_json: Path, image_ids: list | None) -> tuple[float, float] | None:
    """(mAP@.5:.95, mAP@.5) from a COCO evaluator (prints its summary), or None with a message when unavailable."""
    api = _coco_api()
    if api is None:
        LOGGER.info(
            "COCO evaluation skipped: neither pycocotools nor faster-coco-eval is installed "
            "(pip install 'yolo_ray[coco]')"
        )
        return None
    COCO, COCOeval = api
    anno = COCO(str(anno_json))
    if not json.loads(pred_json.read_text()):
        LOGGER.info(f"COCO evaluation skipped: {pred_json} holds no predictions")
        return None
    pred = anno.loadRes(str(pred_json))
    evaluator = COCOeval(anno, pred, "bbox")
    if image_ids is not None:
        evaluator.params.imgIds = image_ids  # score only the images that were validated
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])
