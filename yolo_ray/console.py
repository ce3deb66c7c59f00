"""What a user reads: logging set up once, progress that fits where it goes, and commands to copy.

The package logs through the `yolo_ray` logger, as upstream's LOGGER: INFO to the console (stdout,
the bare message) and, during a run, to the run folder's log file. --quiet keeps warnings and errors
only, --verbose adds debug records and Ray's own INFO lines; upstream's YOLOv5_VERBOSE=False means quiet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("yolo_ray")
LEVELS = {"quiet": logging.WARNING, "info": logging.INFO, "verbose": logging.DEBUG}
FILE_ONLY = {"console": False}  # extra= for a record the log file keeps but the console already shows otherwise
# Ray's own loggers: only errors unless --verbose. Its INFO lines ("Started a local Ray instance", "Wrote the
# latest version of all result files ...") and the token-authentication WARNING of every local cluster are
# nothing a user of these scripts acts on.
RAY_LOGGERS = ("ray", "ray.tune", "ray.train")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BAR_FORMAT = "{l_bar}{bar:10}{r_bar}"  # upstream's TQDM_BAR_FORMAT
TRAIN_LOG = "train.log"  # in a training's run folder: what its console showed, with times
EVOLVE_LOG = "evolve.log"  # the same for an evolution


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (pytest's capture, a redirect made after setup)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _PlainFormatter(logging.Formatter):
    """Log files hold text: no terminal colour codes (Ray's records carry them)."""

    def format(self, record: logging.LogRecord) -> str:
        return ANSI_ESCAPE.sub("", super().format(record))


def verbosity(quiet: bool = False, verbose: bool = False) -> str:
    """'quiet', 'info' or 'verbose' from the options, upstream's YOLOv5_VERBOSE=False meaning quiet."""
    if verbose:
        return "verbose"
    if quiet or os.environ.get("YOLOv5_VERBOSE", "true").strip().lower() in ("false", "0", "no"):
        return "quiet"
    return "info"


def setup_logging(level: str = "info") -> None:
    """Configure the `yolo_ray` logger for a script or a Ray worker; calling it again only changes the level."""
    LOGGER.setLevel(LEVELS[level])
    if not any(getattr(h, "yolo_ray_console", False) for h in LOGGER.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_ConsoleFilter())
        handler.yolo_ray_console = True  # type: ignore[attr-defined]
        LOGGER.addHandler(handler)


class _NoColour(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = ANSI_ESCAPE.sub("", record.getMessage()), None
        return True


def quiet_ray() -> int:
    """Ray's loggers at our verbosity, and no colour codes in its lines unless stderr is a terminal; the level
    to give ray.init, which resets them. Call after `import ray`: importing it configures its loggers."""
    level = logging.INFO if LOGGER.isEnabledFor(logging.DEBUG) else logging.ERROR
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    if not sys.stderr.isatty():
        for handler in logging.getLogger("ray").handlers:
            if not any(isinstance(f, _NoColour) for f in handler.filters):
                handler.addFilter(_NoColour())
    return level


def log_level() -> str:
    """The level setup_logging was given (for workers that configure their own process alike)."""
    return next((name for name, value in LEVELS.items() if value == LOGGER.level), "info")


@contextlib.contextmanager
def log_file(path: str | Path, also: tuple[str, ...] = ()) -> Iterator[None]:
    """Append the `yolo_ray` records (and those of the `also` loggers) to path while the body runs."""
    path = os.path.abspath(path)
    if any(getattr(h, "baseFilename", None) == path for h in LOGGER.handlers):  # already written (train.py's own)
        yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_PlainFormatter("%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    loggers = [LOGGER, *(logging.getLogger(name) for name in also)]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


def console_is_terminal() -> bool:
    """Whether the console is a terminal a live bar can redraw (not a file, pipe or Ray job log)."""
    return sys.stdout.isatty() and LOGGER.isEnabledFor(logging.INFO)


def format_duration(seconds: float) -> str:
    """Short human form: 45 s, 12 min, 3.4 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Progress through `total` items (batches, images): a live bar on a terminal, otherwise lines.

    Off a terminal (a file, a pipe, a Ray job log) a line comes at the end (final_line) and, in a long
    pass, at each further tenth (every `every` items when given) once min_interval_s has passed since
    the last line, so a log holds a few lines per pass however many batches it has. Lines say items/s
    (images/s when update is told the images), the time taken and the ETA; passes_left: how many more
    passes like this one follow (epochs), for the ETA of the whole run in the final line. own_counts:
    the description already says all that (the evolution's line); it is the whole line. bar=False: lines
    even on a terminal, for a caller that shows its own progress there (detect.py's line per image).
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        unit: str = "batch",
        final_line: bool = True,
        min_interval_s: float = 30.0,
        passes_left: int = 0,
        initial: int = 0,
        every: int | None = None,
        own_counts: bool = False,
        bar: bool = True,
    ):
        self.total, self.desc, self.unit = max(int(total), 0), desc, unit
        self.final_line, self.min_interval_s, self.passes_left = final_line, min_interval_s, passes_left
        self.every, self.own_counts = every, own_counts
        self.done, self.images = initial, 0
        self.seconds = 0.0
        self.t0 = self.last_line = time.perf_counter()
        self.next_tenth = 1
        self.bar = None
        self.live = bar and console_is_terminal()  # a bar the terminal redraws, else lines
        if self.live:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=initial, desc=desc, bar_format=BAR_FORMAT, file=sys.stdout)

    def update(self, n: int = 1, images: int = 0, desc: str | None = None) -> None:
        self.done += n
        self.images += images
        if desc is not None:
            self.desc = desc
        if self.bar is not None:
            if desc is not None:
                self.bar.set_description(desc, refresh=False)
            self.bar.update(n)
            return
        if (self.done >= self.total and self.final_line) or not self.at_step(self.done):
            return  # the final line comes from close()
        self.next_tenth = self.done * 10 // max(self.total, 1) + 1
        if time.perf_counter() - self.last_line >= self.min_interval_s:
            self._emit(self.line())

    def at_step(self, done: int) -> bool:
        """Whether a line may come after `done` items: at every `every`-th, else at each further tenth."""
        if self.every:
            return done % self.every == 0
        return done * 10 >= self.next_tenth * self.total

    def line(self) -> str:
        """The progress so far in words: '  12/40 batches, 35.1 img/s, 8 s, ETA 19 s'."""
        if self.own_counts:
            return self.desc
        elapsed = time.perf_counter() - self.t0
        count = self.images if self.images else self.done
        rate = f"{count / elapsed:.1f} {'img' if self.images else self.unit}/s" if elapsed > 0 else ""
        if self.done < self.total:
            eta = elapsed / max(self.done, 1) * (self.total - self.done)
        else:
            eta = elapsed * self.passes_left
        parts = [
            f"{self.done}/{self.total} {self.unit}{'es' if self.unit.endswith('ch') else 's'}",
            rate,
            f"{format_duration(elapsed)}",
        ]
        if eta > 0:
            parts.append(f"ETA {format_duration(eta)}")
        return f"{self.desc}  " + ", ".join(p for p in parts if p)

    def _emit(self, text: str, **kwargs: Any) -> None:
        LOGGER.info(text, **kwargs)
        self.last_line = time.perf_counter()

    def close(self) -> None:
        """End of the pass: the bar stays on the terminal (the log file gets its line); a line elsewhere."""
        self.seconds = time.perf_counter() - self.t0
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            if self.final_line:
                self._emit(self.line(), extra=FILE_ONLY)
        elif self.final_line:
            self._emit(self.line())

    def iterate(self, items: Iterable) -> Iterator:
        """The items, counted as they are taken; closed at the end."""
        try:
            for item in items:
                yield item
                self.update()
        finally:
            self.close()


def track(
    items: Iterable, total: int | None = None, desc: str = "", unit: str = "batch", final_line: bool = True
) -> Iterator:
    """Iterate items with a Progress (total from len(items) when not given)."""
    total = len(items) if total is None else total  # type: ignore[arg-type]
    return Progress(total, desc, unit, final_line).iterate(items)


def python_executable() -> str:
    """This Python as a user would type it: `python` when that is what the shell finds, else a path
    relative to the working directory when it lies inside it (.venv/bin/python), else the full path."""
    exe = os.path.abspath(sys.executable)
    for name in ("python", "python3"):
        found = shutil.which(name)
        if found and os.path.abspath(found) == exe:
            return name
    return short_path(exe)


def short_path(path: str | Path) -> str:
    """Relative to the working directory when inside it, else as given."""
    path, cwd = Path(path), Path.cwd()
    return str(path.relative_to(cwd)) if path.is_absolute() and cwd in path.parents else str(path)


def durable_path(path: str | Path) -> str:
    """A path that still names the file after this run. Inside a Ray job, a path in the job's working
    directory is a temporary copy deleted with the job: it is given relative to that directory, which is
    relative to the checkout the job was submitted from. Elsewhere the path as it is."""
    from yolo_ray.paths import in_ray_job

    return short_path(path) if in_ray_job() else str(path)


def shell_command(script: str, *args: Any) -> str:
    """A command line to copy from the output: this Python, the script (in the checkout's scripts/), and
    the arguments (Path arguments made durable), each shell-quoted where it needs to be."""
    from yolo_ray.paths import in_ray_job

    python = "python" if in_ray_job() else python_executable()
    script_path = short_path(Path(__file__).resolve().parents[1] / "scripts" / script)
    return shlex.join([python, script_path, *(durable_path(a) if isinstance(a, Path) else str(a) for a in args)])


class EpochProgress(Progress):
    """Rank 0's progress through one training epoch, as upstream's: the header, then the epoch, GPU memory,
    running losses, instances and image size of the latest batch, as the bar's text or in each line."""

    HEADER = ("%11s" * 7) % ("Epoch", "GPU_mem", "box_loss", "obj_loss", "cls_loss", "Instances", "Size")

    def __init__(self, epoch: int, epochs: int, nb: int):
        self.epoch_label = f"{epoch}/{epochs - 1}"
        LOGGER.info(self.HEADER)
        super().__init__(nb, self.epoch_label, passes_left=epochs - epoch - 1)

    def update(self, i: int, mloss: Any, images: int, instances: int, size: int) -> None:  # type: ignore[override]
        """Batch i done: mloss the running mean losses (a tensor, read only when shown: it syncs the device)."""
        shown = self.live or self.at_step(i + 1) or i + 1 == self.total
        super().update(1, images, self._row(mloss, instances, size) if shown else None)

    def _row(self, mloss: Any, instances: int, size: int) -> str:
        import torch

        mem = f"{torch.cuda.memory_reserved() / 1e9 if torch.cuda.is_available() else 0:.3g}G"
        return ("%11s" * 2 + "%11.4g" * 5) % (self.epoch_label, mem, *mloss.tolist(), instances, size)
