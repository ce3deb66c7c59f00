"""detect.py's --source: an image, a video, a folder, a glob, or a .txt list of paths; frames one by one."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from yolo_ray.config import UserError
from yolo_ray.data.labels import IMG_FORMATS

VID_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv")


def _suffix(path: str) -> str:
    return path.rsplit(".", 1)[-1].lower() if "." in Path(path).name else ""


def list_sources(source: str | Path) -> list[str]:
    """The image and video files a --source names (folders: their files, not recursive, as upstream)."""
    text = str(source)
    p = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        files = sorted(glob.glob(str(p), recursive=True))
    elif p.is_dir():
        files = sorted(str(f) for f in p.glob("*.*"))
    elif p.is_file() and p.suffix == ".txt":
        files = []
        for line in p.read_text().splitlines():
            entry = Path(line.strip()).expanduser()
            if line.strip():
                files.append(str(entry if entry.is_absolute() else (p.parent / entry).resolve()))
    elif p.is_file():
        files = [str(p)]
    else:
        raise UserError(f"--source {text}: does not exist")
    media = [f for f in files if _suffix(f) in IMG_FORMATS + VID_FORMATS]
    if not media:
        raise UserError(f"--source {text}: no images or videos found (images: {', '.join(IMG_FORMATS)}; "
                        f"videos: {', '.join(VID_FORMATS)})")
    missing = [f for f in media if not Path(f).is_file()]
    if missing:
        raise UserError(f"--source {text}: {len(missing)} listed files do not exist, e.g. {missing[0]}")
    return media


@dataclass
class Frame:
    path: str
    image: np.ndarray  # HWC BGR uint8
    index: int  # 1-based position of the file among the sources
    total: int  # number of files
    frame: int = 0  # 1-based frame of a video (0 for an image)
    frames: int = 0  # frames in the video
    fps: float = 0.0

    @property
    def is_video(self) -> bool:
        return self.frames > 0

    def describe(self) -> str:
        """Upstream's per-frame prefix: 'image 1/2 path: ' or 'video 1/1 (3/30) path: '."""
        if self.is_video:
            return f"video {self.index}/{self.total} ({self.frame}/{self.frames}) {self.path}: "
        return f"image {self.index}/{self.total} {self.path}: "


class Skipped:
    """Files that could not be read: warned about one by one, counted at the end."""

    def __init__(self) -> None:
        self.files: list[str] = []

    def add(self, path: str, why: str) -> None:
        self.files.append(path)
        print(f"WARNING: {path}: {why}, skipped")


def iterate_frames(files: list[str], skipped: Skipped, vid_stride: int = 1) -> Iterator[Frame]:
    """Images and video frames in order; unreadable files are reported to `skipped` and passed over."""
    for index, path in enumerate(files, 1):
        if _suffix(path) in VID_FORMATS:
            yield from _video_frames(path, index, len(files), skipped, vid_stride)
            continue
        image = cv2.imread(path)
        if image is None:
            skipped.add(path, "not a readable image")
            continue
        yield Frame(path, image, index, len(files))


def _video_frames(path: str, index: int, total: int, skipped: Skipped, vid_stride: int) -> Iterator[Frame]:
    cap = cv2.VideoCapture(path)
    try:
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) / vid_stride)
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        ok, image = cap.read()
        if not cap.isOpened() or not ok:
            skipped.add(path, "not a readable video")
            return
        frame = 0
        while ok:
            frame += 1
            yield Frame(path, image, index, total, frame, max(frames, frame), fps)
            for _ in range(vid_stride - 1):
                cap.grab()
            ok, image = cap.read()
    finally:
        cap.release()
