"""Files val.py and detect.py write, in upstream's formats: YOLO txt labels, crops, COCO json and its scoring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from yolo_ray.boxes import clip_boxes, xywh2xyxy, xyxy2xywh
from yolo_ray.data.plots import class_color, draw_box_label

# COCO's 80 detection classes among its 91 category ids (upstream's coco80_to_coco91_class).
COCO91_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)
COCO_ANNOTATIONS = Path("annotations") / "instances_val2017.json"
CROP_GAIN, CROP_PAD = 1.02, 10  # crops are a little larger than the box, as upstream's save_one_box


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


def crop_box(xyxy: torch.Tensor | list, im: np.ndarray, gain: float = CROP_GAIN, pad: int = CROP_PAD) -> np.ndarray:
    """The image region of one box, enlarged by gain and pad pixels, clipped to the image."""
    b = xyxy2xywh(torch.tensor([float(v) for v in xyxy], dtype=torch.float32).view(-1, 4))
    b[:, 2:] = b[:, 2:] * gain + pad
    box = xywh2xyxy(b).long()
    clip_boxes(box, im.shape[:2])
    x1, y1, x2, y2 = box[0].tolist()
    return im[y1:y2, x1:x2]


def unique_path(path: Path) -> Path:
    """path, or path with 2, 3, ... appended to its stem when it exists (crops of one class in one image)."""
    candidate, n = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}{n}{path.suffix}")
        n += 1
    return candidate


def save_crop(xyxy: torch.Tensor | list, im: np.ndarray, file: Path) -> Path:
    """The box's crop of im (BGR) as a JPEG (quality 95, no chroma subsampling, as upstream's save_one_box)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file = unique_path(file.with_suffix(".jpg"))
    Image.fromarray(np.ascontiguousarray(crop_box(xyxy, im)[..., ::-1])).save(file, quality=95, subsampling=0)
    return file


def coco_records(predn: torch.Tensor, path: str, class_ids: list[int] | tuple[int, ...] | None) -> list[dict]:
    """COCO result records of one image: top-left xywh boxes, the image id from a numeric file stem."""
    stem = Path(path).stem
    image_id: Any = int(stem) if stem.isnumeric() else stem
    boxes = xyxy2xywh(predn[:, :4].detach().float().cpu())
    boxes[:, :2] -= boxes[:, 2:] / 2
    records = []
    for p, b in zip(predn.detach().float().cpu().tolist(), boxes.tolist()):
        cls = int(p[5])
        records.append({"image_id": image_id, "category_id": class_ids[cls] if class_ids else cls,
                        "bbox": [round(x, 3) for x in b], "score": round(p[4], 5)})
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
        print("COCO evaluation skipped: neither pycocotools nor faster-coco-eval is installed "
              "(pip install 'yolo_ray[coco]')")
        return None
    COCO, COCOeval = api
    anno = COCO(str(anno_json))
    if not json.loads(pred_json.read_text()):
        print(f"COCO evaluation skipped: {pred_json} holds no predictions")
        return None
    pred = anno.loadRes(str(pred_json))
    evaluator = COCOeval(anno, pred, "bbox")
    if image_ids is not None:
        evaluator.params.imgIds = image_ids  # score only the images that were validated
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])


def draw_detections(im: np.ndarray, det: torch.Tensor, names: dict[int, str], line_width: int | None = None,
                    hide_labels: bool = False, hide_conf: bool = False, bgr: bool = True) -> np.ndarray:
    """Draw boxes with 'name conf' tags on im (HWC uint8) in place; line width from the image size by default."""
    lw = line_width or max(round(sum(im.shape[:2]) / 2 * 0.003), 2)
    for *xyxy, conf, cls in reversed(det.detach().float().cpu().tolist()):
        c = int(cls)
        label = None if hide_labels else (names.get(c, str(c)) if hide_conf else f"{names.get(c, str(c))} {conf:.2f}")
        color = class_color(c)
        draw_box_label(im, np.array(xyxy), label or "", color[::-1] if bgr else color, lw, lw / 3)
    return im


def detection_summary(det: torch.Tensor, names: dict[int, str]) -> str:
    """'2 circles, 1 square' (upstream's per-image count text), '' without detections."""
    parts = []
    for c in det[:, 5].unique().tolist():
        n = int((det[:, 5] == c).sum())
        parts.append(f"{n} {names.get(int(c), str(int(c)))}{'s' * (n > 1)}")
    return ", ".join(parts)
