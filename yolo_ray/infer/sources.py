"""detect.py's --source: image, video, folder, glob, .txt list of paths, image or video URL (LoadImages' way,
images before videos), or streams: a webcam index, an RTSP/RTMP/HTTP stream URL or a .streams file of them
(LoadStreams' way, read through OpenCV)."""

from __future__ import annotations

import glob
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from yolo_ray.config import UserError
from yolo_ray.data.labels import IMG_FORMATS

VID_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv")
URL_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")
URL_TIMEOUT_S = 30


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1].split("?")[0]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def is_url(source: str) -> bool:
    return source.lower().startswith(URL_SCHEMES)


def is_stream_source(source: str) -> bool:
    """Upstream's `webcam` test: a webcam index, a stream list, or a URL that does not name a media file."""
    media = _suffix(source) in IMG_FORMATS + VID_FORMATS
    return source.isnumeric() or source.endswith(".streams") or (is_url(source) and not media)


def _expand(entry: str, text: str) -> list[str]:
    if is_url(entry):
        return [entry]
    p = Path(entry).expanduser()
    if any(ch in entry for ch in "*?["):
        return sorted(glob.glob(str(p), recursive=True))
    if p.is_dir():
        return sorted(str(f) for f in p.glob("*.*"))
    if p.is_file():
        return [str(p)]
    raise UserError(f"--source {text}: does not exist" if entry == text else f"--source {text}: {entry} does not exist")


def list_sources(source: str | Path) -> list[str]:
    """The image and video files (or URLs) a --source names, images first then videos, as upstream's
    LoadImages. Folders: their files, not recursive. A .txt file lists paths, relative to the working
    directory as upstream's."""
    text = str(source)
    p = Path(text).expanduser()
    if p.is_file() and p.suffix == ".txt":
        entries = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    else:
        entries = [text]
    files = [f for entry in entries for f in _expand(entry, text)]
    images = [f for f in files if _suffix(f) in IMG_FORMATS]
    videos = [f for f in files if _suffix(f) in VID_FORMATS]
    if not images + videos:
        raise UserError(
            f"--source {text}: no images or videos found (images: {', '.join(IMG_FORMATS)}; "
            f"videos: {', '.join(VID_FORMATS)})"
        )
    return images + videos


@dataclass
class Frame:
    path: str  # the file, URL or stream it came from
    image: np.ndarray  # HWC BGR uint8
    prefix: str  # upstream's line prefix: 'image 1/2 path: ', 'video 1/1 (3/30) path: ' or '0: '
    mode: str = "image"  # image, video or stream
    frame: int = 0  # video: 1-based frame; stream: 0-based batch count (label file suffixes, as upstream)
    fps: float = 30.0

    @property
    def name(self) -> str:
        """The file name outputs are saved under (a stream's cleaned source name, as upstream)."""
        return Path(re.sub(r"[|@#!¡·$€%&()=?¿^*;:,¨´><+]", "_", self.path)).name

    @property
    def label_stem(self) -> str:
        stem = Path(self.name).stem
        return stem if self.mode == "image" else f"{stem}_{self.frame}"


class Skipped:
    """Files that could not be read: warned about one by one, counted at the end."""

    def __init__(self) -> None:
        self.files: list[str] = []

    def add(self, path: str, why: str) -> None:
        self.files.append(path)
        print(f"WARNING: {path}: {why}, skipped")


def _read_image(path: str) -> np.ndarray | None:
    if not is_url(path):
        return cv2.imread(path)
    try:
        with urllib.request.urlopen(path, timeout=URL_TIMEOUT_S) as response:
            data = np.frombuffer(response.read(), np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def iterate_frames(files: list[str], skipped: Skipped, vid_stride: int = 1) -> Iterator[Frame]:
    """Images and video frames in order; unreadable files are reported to `skipped` and passed over."""
    for index, path in enumerate(files, 1):
        if _suffix(path) in VID_FORMATS:
            yield from _video_frames(path, index, len(files), skipped, vid_stride)
            continue
        image = _read_image(path)
        if image is None:
            skipped.add(path, "not a readable image")
            continue
        yield Frame(path, image, f"image {index}/{len(files)} {path}: ")


def _video_frames(path: str, index: int, total: int, skipped: Skipped, vid_stride: int) -> Iterator[Frame]:
    """Frames vid_stride, 2 * vid_stride, ... (1-based), counted as upstream: (k/frames // vid_stride)."""
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            skipped.add(path, "not a readable video")
            return
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) / vid_stride)
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        count = 0
        while True:
            for _ in range(vid_stride):
                cap.grab()
            ok, image = cap.retrieve()
            if not ok:
                break
            count += 1
            yield Frame(path, image, f"video {index}/{total} ({count}/{frames}) {path}: ", "video", count, fps)
        if not count:
            skipped.add(path, "not a readable video")
    finally:
        cap.release()
