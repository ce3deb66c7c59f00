"""detect.py's run, as upstream v7.0's: detections on images and videos, annotated copies, YOLO txt labels,
crops, a line per image or frame and the speed summary."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from torch import nn

from yolo_ray.config import UserError
from yolo_ray.infer.outputs import append_labels, detection_summary, draw_detections, save_crop
from yolo_ray.infer.predictor import predict
from yolo_ray.infer.sources import Frame, Skipped, iterate_frames


class _VideoWriters:
    """One mp4 writer per source video, opened at its first frame."""

    def __init__(self) -> None:
        self.writers: dict[str, cv2.VideoWriter] = {}

    def write(self, frame: Frame, image: np.ndarray, save_path: Path) -> None:
        writer = self.writers.get(frame.path)
        if writer is None:
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(str(save_path.with_suffix(".mp4")), cv2.VideoWriter_fourcc(*"mp4v"),
                                     frame.fps, (w, h))
            self.writers[frame.path] = writer
        writer.write(image)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.release()


def run(
    model: nn.Module,
    files: list[str],
    save_dir: Path,
    imgsz: int = 640,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 1000,
    classes: list[int] | None = None,
    agnostic_nms: bool = False,
    save_txt: bool = False,
    save_conf: bool = False,
    save_crop_images: bool = False,
    nosave: bool = False,
    line_thickness: int = 3,
    hide_labels: bool = False,
    hide_conf: bool = False,
    half: bool = False,
    vid_stride: int = 1,
) -> int:
    """Detect on every image and video frame of `files`; returns the number of frames processed."""
    names = model.names
    if save_txt:
        (save_dir / "labels").mkdir(parents=True, exist_ok=True)
    skipped = Skipped()
    writers = _VideoWriters()
    seen = 0
    totals = [0.0, 0.0, 0.0]
    shape: tuple[int, ...] = ()
    try:
        for frame in iterate_frames(files, skipped, vid_stride):
            rgb = np.ascontiguousarray(frame.image[..., ::-1])
            preds, times, shape = predict(model, [rgb], imgsz, conf_thres, iou_thres, classes, agnostic_nms,
                                          max_det=max_det, half=half)
            det = preds[0]
            det[:, :4] = det[:, :4].round()  # whole pixels, as upstream's detect.py writes them
            seen += 1
            totals = [a + b for a, b in zip(totals, times)]
            stem = Path(frame.path).stem
            if save_txt and len(det):
                label_name = stem if not frame.is_video else f"{stem}_{frame.frame}"
                append_labels(save_dir / "labels" / f"{label_name}.txt", det, frame.image.shape[:2], save_conf)
            if save_crop_images:
                for *xyxy, _, cls in det.tolist():
                    save_crop(xyxy, frame.image, save_dir / "crops" / names[int(cls)] / f"{stem}.jpg")
            if not nosave:
                annotated = draw_detections(frame.image.copy(), det, names, line_thickness, hide_labels, hide_conf)
                target = save_dir / Path(frame.path).name
                if frame.is_video:
                    writers.write(frame, annotated, target)
                else:
                    cv2.imwrite(str(target), annotated)
            counts = detection_summary(det, names) + ", " if len(det) else "(no detections), "
            print(f"{frame.describe()}{shape[2]}x{shape[3]} {counts}{times[1] * 1e3:.1f}ms")
    finally:
        writers.close()
    if not seen:
        raise UserError(f"no readable images or videos among {len(files)} source files")
    per_image = tuple(t / seen * 1e3 for t in totals)
    print(("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image" % per_image) + f" at shape {shape}")
    if skipped.files:
        print(f"WARNING: {len(skipped.files)} of {len(files)} source files could not be read and were skipped")
    if save_txt or not nosave:
        labels = f"\n{len(list(save_dir.glob('labels/*.txt')))} labels saved to {save_dir / 'labels'}" if save_txt else ""
        print(f"Results saved to {save_dir}{labels}")
    return seen
