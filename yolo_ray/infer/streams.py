"""Live sources for detect.py, as upstream's LoadStreams: webcams, RTSP/RTMP/HTTP streams and .streams files
(one source a line), each read by its own thread so inference always sees the newest frame.

Unlike upstream, a frame is never handed out twice: each step waits (boundedly) for every stream's next
frame, and the last frame of a finite stream is still processed before the loop ends.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from yolo_ray.config import UserError
from yolo_ray.infer.sources import Frame

STALL_S = 30.0  # a stream with no new frame for this long is treated as ended


def stream_sources(source: str) -> list[str]:
    """The sources a --source names: the lines of a .streams file, or the source itself."""
    if source.endswith(".streams"):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"--source {source}: does not exist")
        sources = path.read_text().split()
        if not sources:
            raise UserError(f"--source {source}: lists no streams")
        return sources
    return [source]


class _Reader(threading.Thread):
    """Grabs frames of one capture; keeps only the newest (every vid_stride-th) with its sequence number."""

    def __init__(self, cap: cv2.VideoCapture, first: np.ndarray, vid_stride: int):
        super().__init__(daemon=True)
        self.cap, self.vid_stride = cap, vid_stride
        self.cond = threading.Condition()
        self.image, self.seq, self.done, self.stop = first, 1, False, False

    def run(self) -> None:
        grabbed = 0
        try:
            while not self.stop and self.cap.grab():
                grabbed += 1
                if grabbed % self.vid_stride:
                    continue
                ok, image = self.cap.retrieve()
                if not ok:
                    break
                with self.cond:
                    self.image, self.seq = image, self.seq + 1
                    self.cond.notify_all()
        finally:
            self.cap.release()
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def next_after(self, seq: int) -> tuple[np.ndarray, int] | None:
        """The newest frame after `seq`, waiting for one; None once the stream ended or stalled."""
        with self.cond:
            self.cond.wait_for(lambda: self.seq > seq or self.done, timeout=STALL_S)
            return (self.image, self.seq) if self.seq > seq else None


class Streams:
    """Opened streams (the constructor fails with one UserError line when one cannot be opened or read);
    iterating gives one list of Frames per step, a frame of each stream."""

    def __init__(self, source: str, vid_stride: int = 1):
        self.sources = stream_sources(source)
        self.readers: list[_Reader] = []
        self.fps: list[float] = []
        try:
            for i, s in enumerate(self.sources):
                self._open(i, s, vid_stride)
        except UserError:
            self.close()
            raise
        print("")

    def _open(self, i: int, source: str, vid_stride: int) -> None:
        what = f"{i + 1}/{len(self.sources)}: {source}... "
        cap = cv2.VideoCapture(int(source) if source.isnumeric() else source)
        if not cap.isOpened():
            cap.release()
            raise UserError(f"--source {source}: cannot be opened (webcam index, stream URL or video)")
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise UserError(f"--source {source}: opened, but no frame could be read")
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps % 100 if np.isfinite(fps) and fps > 0 else 0
        self.fps.append(fps or 30.0)
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        h, w = first.shape[:2]
        print(f"{what} Success ({frames if frames > 0 else 'inf'} frames {w}x{h} at {self.fps[-1]:.2f} FPS)")
        reader = _Reader(cap, first, vid_stride)
        reader.start()
        self.readers.append(reader)

    def __len__(self) -> int:
        return len(self.sources)

    def __iter__(self) -> Iterator[list[Frame]]:
        seen = [0] * len(self.readers)
        count = 0
        try:
            while True:
                frames = []
                for i, (source, reader) in enumerate(zip(self.sources, self.readers)):
                    latest = reader.next_after(seen[i])
                    if latest is None:
                        return
                    image, seen[i] = latest
                    frames.append(Frame(source, image, f"{i}: ", "stream", count, self.fps[i]))
                yield frames
                count += 1
        finally:
            self.close()

    def close(self) -> None:
        for reader in self.readers:
            reader.stop = True
        for reader in self.readers:
            reader.join(timeout=STALL_S)
