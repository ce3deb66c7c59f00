"""detect.py's run, as upstream v7.0's: detections on images, videos and streams, annotated copies, YOLO txt
labels, crops, feature maps, a line per image or frame and the speed summary."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch

from yolo_ray.boxes import scale_boxes
from yolo_ray.config import UserError
from yolo_ray.console import LOGGER, Progress, console_is_terminal
from yolo_ray.data.augment import letterbox
from yolo_ray.infer.backends import Backend
from yolo_ray.metrics import nms_input
from yolo_ray.evaluation.writers import append_labels
from yolo_ray.infer.outputs import detection_summary, draw_detections, save_crop
from yolo_ray.infer.sources import Frame, Skipped, iterate_frames
from yolo_ray.metrics import non_max_suppression
from yolo_ray.paths import increment_path


@dataclass
class DetectOptions:
    """upstream detect.run's settings (its argument names and defaults)."""

    imgsz: tuple[int, int] = (640, 640)
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 1000
    classes: list[int] | None = None
    agnostic_nms: bool = False
    augment: bool = False
    visualize: bool = False
    view_img: bool = False
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False
    save_img: bool = True  # upstream: not --nosave and the source is not a .txt list
    line_thickness: int = 3
    hide_labels: bool = False
    hide_conf: bool = False
    vid_stride: int = 1


class _VideoWriters:
    """One mp4 writer per source video or stream, opened at its first frame."""

    def __init__(self) -> None:
        self.writers: dict[str, cv2.VideoWriter] = {}

    def write(self, frame: Frame, image: np.ndarray, save_path: Path) -> None:
        writer = self.writers.get(frame.path)
        if writer is None:
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(
                str(save_path.with_suffix(".mp4")), cv2.VideoWriter_fourcc(*"mp4v"), frame.fps, (w, h)
            )
            self.writers[frame.path] = writer
        writer.write(image)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.release()


class _Viewer:
    """--view-img windows, or one warning where this OpenCV build or session cannot show any."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and _can_show()
        if enabled and not self.enabled:
            print("WARNING: --view-img: this environment cannot show images (headless OpenCV or no display)")

    def show(self, name: str, image: np.ndarray) -> None:
        if self.enabled:
            cv2.imshow(name, image)
            cv2.waitKey(1)


def _can_show() -> bool:
    try:
        cv2.imshow("test", np.zeros((8, 8, 3), np.uint8))
        cv2.waitKey(1)
        cv2.destroyAllWindows()
        return True
    except cv2.error:
        return False


def single_frames(files: list[str], skipped: Skipped, vid_stride: int) -> Iterator[list[Frame]]:
    """Images and video frames one at a time, as one-frame batches."""
    for frame in iterate_frames(files, skipped, vid_stride):
        yield [frame]


def _input_batch(model: Backend, frames: list[Frame], imgsz: tuple[int, int]) -> torch.Tensor:
    """Upstream's loaders: letterboxed to imgsz (to the stride grid only for PyTorch and same-shape frames)."""
    auto = model.pt and (
        len(frames) == 1
        or len({letterbox(f.image, imgsz, stride=model.stride, auto=True)[0].shape for f in frames}) == 1
    )
    ims = np.stack([letterbox(f.image, imgsz, stride=model.stride, auto=auto)[0] for f in frames])
    ims = np.ascontiguousarray(ims[..., ::-1].transpose(0, 3, 1, 2))  # BGR to RGB, BHWC to BCHW
    x = torch.from_numpy(ims).to(model.device)
    return (x.half() if model.fp16 else x.float()) / 255


def _save_outputs(
    frame: Frame,
    det: torch.Tensor,
    opt: DetectOptions,
    names: dict[int, str],
    save_dir: Path,
    writers: _VideoWriters,
    viewer: _Viewer,
) -> None:
    ascending = det.flip(0)  # upstream writes rows and crops lowest confidence first
    if opt.save_txt and len(det):
        append_labels(save_dir / "labels" / f"{frame.label_stem}.txt", ascending, frame.image.shape[:2], opt.save_conf)
    if opt.save_crop:
        for *xyxy, _, cls in ascending.tolist():
            save_crop(xyxy, frame.image, save_dir / "crops" / names[int(cls)] / f"{Path(frame.name).stem}.jpg")
    if not (opt.save_img or viewer.enabled):
        return
    annotated = draw_detections(frame.image.copy(), det, names, opt.line_thickness, opt.hide_labels, opt.hide_conf)
    viewer.show(frame.path, annotated)
    if opt.save_img:
        target = save_dir / frame.name
        if frame.mode == "image":
            cv2.imwrite(str(target), annotated)
        else:
            writers.write(frame, annotated, target)


def run(
    model: Backend, batches: Iterable[list[Frame]], save_dir: Path, opt: DetectOptions, total: int | None = None
) -> int:
    """Detect on every batch of frames (total: how many, when known); returns the number of frames processed.

    A terminal shows upstream's line per image; a file or pipe gets progress lines with images/s and ETA
    instead (the lines per image with --verbose), so a log of 10,000 images stays readable.
    """
    names = model.names
    if opt.save_txt:
        (save_dir / "labels").mkdir(parents=True, exist_ok=True)
    writers, viewer = _VideoWriters(), _Viewer(opt.view_img)
    seen, totals = 0, [0.0, 0.0, 0.0]
    progress = Progress(total, "detect", "image", bar=False) if total and not console_is_terminal() else None
    try:
        for frames in batches:
            t0 = time.perf_counter()
            x = _input_batch(model, frames, opt.imgsz)
            t1 = time.perf_counter()
            visualize = increment_path(save_dir / Path(frames[0].name).stem, mkdir=True) if opt.visualize else None
            raw = model(x, augment=opt.augment, visualize=visualize)
            t2 = time.perf_counter()
            preds = non_max_suppression(
                nms_input(raw), opt.conf_thres, opt.iou_thres, opt.classes, opt.agnostic_nms, max_det=opt.max_det
            )
            totals = [a + b for a, b in zip(totals, (t1 - t0, t2 - t1, time.perf_counter() - t2))]
            line = ""
            for frame, det in zip(frames, preds):
                seen += 1
                det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], frame.image.shape[:2]).round()
                _save_outputs(frame, det, opt, names, save_dir, writers, viewer)
                counts = detection_summary(det, names) + ", " if len(det) else "(no detections), "
                line += f"{frame.prefix}{x.shape[2]}x{x.shape[3]} {counts}"
            LOGGER.log(logging.INFO if progress is None else logging.DEBUG, f"{line}{(t2 - t1) * 1e3:.1f}ms")
            if progress is not None:
                progress.update(len(frames), images=len(frames))
    finally:
        writers.close()
        if progress is not None:
            progress.close()
    if not seen:
        raise UserError("no readable images or videos among the sources")
    per_image = tuple(t / seen * 1e3 for t in totals)
    print(
        ("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image" % per_image)
        + f" at shape {(1, 3, *opt.imgsz)}"
    )
    if opt.save_txt or opt.save_img:
        count = len(list(save_dir.glob("labels/*.txt")))
        labels = f"\n{count} labels saved to {save_dir / 'labels'}" if opt.save_txt else ""
        print(f"Results saved to {save_dir}{labels}")
    return seen
