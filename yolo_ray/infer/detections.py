"""Detections: what the API returns for a batch of images, with upstream's attributes and methods."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageShow

from yolo_ray.boxes import xyxy2xywh
from yolo_ray.infer.outputs import crop_box, detection_summary, draw_detections, save_crop
from yolo_ray.paths import increment_path

XYXY_COLUMNS = ("xmin", "ymin", "xmax", "ymax", "confidence", "class", "name")
XYWH_COLUMNS = ("xcenter", "ycenter", "width", "height", "confidence", "class", "name")


class Detections:
    """Per-image detections (k, 6) [box, conf, cls] in each image's own pixels.

    xyxy / xywh: pixel corners / centre-size; xyxyn / xywhn: the same normalised to the image size.
    ims: the input images (HWC RGB uint8); files: names used by save(); t: ms per image for
    pre-process, inference, NMS; s: the batch's input shape.
    """

    def __init__(
        self,
        ims: list[np.ndarray],
        pred: list[torch.Tensor],
        files: list[str],
        times: tuple[float, float, float],
        names: dict[int, str],
        shape: tuple[int, ...],
    ):
        self.ims, self.pred, self.files, self.names = ims, pred, files, names
        self.n = len(pred)
        gains = [
            torch.tensor([im.shape[1], im.shape[0], im.shape[1], im.shape[0], 1.0, 1.0], device=p.device)
            for im, p in zip(ims, pred)
        ]
        self.xyxy = pred
        self.xywh = [torch.cat((xyxy2xywh(p[:, :4]), p[:, 4:]), 1) for p in pred]
        self.xyxyn = [p / g for p, g in zip(self.xyxy, gains)]
        self.xywhn = [p / g for p, g in zip(self.xywh, gains)]
        self.times = times
        self.t = tuple(x / max(self.n, 1) * 1e3 for x in times)
        self.s = tuple(shape)

    def __len__(self) -> int:
        return self.n

    def __str__(self) -> str:
        lines = []
        for i, (im, pred) in enumerate(zip(self.ims, self.pred)):
            counts = detection_summary(pred, self.names) if len(pred) else "(no detections)"
            lines.append(f"image {i + 1}/{self.n}: {im.shape[0]}x{im.shape[1]} {counts}")
        speed = "Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image" % self.t
        return "\n".join(lines) + f"\n{speed} at shape {self.s}"

    def __repr__(self) -> str:
        return f"YOLOv5 {self.__class__} instance\n{self}"

    def print(self) -> None:
        print(self)

    def _annotated(self, labels: bool) -> list[np.ndarray]:
        return [
            draw_detections(im.copy(), pred, self.names, hide_labels=not labels, bgr=False)
            for im, pred in zip(self.ims, self.pred)
        ]

    def render(self, labels: bool = True) -> list[np.ndarray]:
        """The images (RGB) with their boxes drawn; they replace `ims`, as upstream's render."""
        self.ims = self._annotated(labels)
        return self.ims

    def show(self, labels: bool = True) -> None:
        """Open each annotated image in the system's image viewer (or the notebook)."""
        for im, f in zip(self._annotated(labels), self.files):
            image = Image.fromarray(im)
            try:
                from IPython import get_ipython
                from IPython.display import display

                if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
                    display(image)
                    continue
            except ImportError:
                pass
            if not ImageShow.show(image, title=f):
                print("WARNING: showing images is not supported in this environment (no image viewer)")
                return

    def save(self, labels: bool = True, save_dir: str | Path = "runs/detect/exp", exist_ok: bool = False) -> Path:
        """Write the annotated images into save_dir (incremented: exp, exp2, ...); returns the folder."""
        save_dir = increment_path(save_dir, exist_ok=exist_ok, mkdir=True)
        for im, f in zip(self._annotated(labels), self.files):
            Image.fromarray(im).save(save_dir / f)  # PIL's default JPEG quality, as upstream
        print(f"Saved {self.n} image{'s' * (self.n > 1)} to {save_dir}")
        return save_dir

    def crop(self, save: bool = True, save_dir: str | Path = "runs/detect/exp", exist_ok: bool = False) -> list[dict]:
        """One dict per detection, lowest confidence first as upstream: box (4 tensors), conf and cls
        (tensors), label and the cropped image (BGR, ready for cv2.imwrite); saved under
        save_dir/crops/<class name>/ when save."""
        folder = increment_path(save_dir, exist_ok=exist_ok, mkdir=True) if save else None
        crops = []
        for im, pred, f in zip(self.ims, self.pred, self.files):
            bgr = np.ascontiguousarray(im[..., ::-1])
            for *box, conf, cls in reversed(pred):
                name = self.names.get(int(cls), str(int(cls)))
                if folder is not None:
                    save_crop(box, bgr, folder / "crops" / name / f)
                crops.append(
                    {"box": box, "conf": conf, "cls": cls, "label": f"{name} {conf:.2f}", "im": crop_box(box, bgr)}
                )
        if folder is not None:
            print(f"Saved results to {folder}")
        return crops

    def pandas(self) -> Detections:
        """A copy whose xyxy, xyxyn, xywh, xywhn are lists of DataFrames (upstream's column names)."""
        new = copy.copy(self)
        for key, columns in (
            ("xyxy", XYXY_COLUMNS),
            ("xyxyn", XYXY_COLUMNS),
            ("xywh", XYWH_COLUMNS),
            ("xywhn", XYWH_COLUMNS),
        ):
            frames = []
            for rows in getattr(self, key):
                records = [[*r[:5], int(r[5]), self.names.get(int(r[5]), str(int(r[5])))] for r in rows.tolist()]
                frames.append(pd.DataFrame(records, columns=list(columns)))
            setattr(new, key, frames)
        return new

    def tolist(self) -> list[Detections]:
        """One Detections per image."""
        return [
            Detections([im], [p], [f], self.times, self.names, self.s)
            for im, p, f in zip(self.ims, self.pred, self.files)
        ]
