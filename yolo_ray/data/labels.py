"""Finding images and their label files, verifying both, and caching the result of the scan."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from yolo_ray.boxes import segments2boxes
from yolo_ray.config import UserError, replacing
from yolo_ray.paths import cache_home, is_writable_dir

LOGGER = logging.getLogger("yolo_ray.data")

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")
# Our own cache name and version: upstream's "<name>.cache" files may sit beside the labels and must
# neither be read (their pickled layout differs) nor overwritten.
CACHE_SUFFIX = ".yolo_ray.cache"
CACHE_VERSION = "yolo_ray-labels-2"  # 2: a bad label row excludes its image
EXIF_ORIENTATION = 0x0112
NUM_THREADS = min(8, max(1, os.cpu_count() or 1))
# Images without a label file train as background; beyond this share they are more likely a wrong
# folder layout than deliberate backgrounds (deliberate ones usually get an empty label file).
MISSING_LABELS_WARN_SHARE = 0.05


def writable_sibling(path: Path, kind: str) -> Path:
    """`path` itself when its folder is writable, else the same name under cache_home()/kind/<hash of folder>."""
    if is_writable_dir(path.parent):
        return path
    folder_key = hashlib.sha1(str(path.parent.resolve()).encode()).hexdigest()[:16]
    return cache_home() / kind / folder_key / path.name


def list_image_files(sources: str | Path | list, prefix: str = "") -> list[str]:
    """Sorted image paths from folders (recursive), .txt lists of images, or single files."""
    files: list[str] = []
    for source in sources if isinstance(sources, (list, tuple)) else [sources]:
        p = Path(source).expanduser()
        if p.is_dir():
            files += [str(f) for f in p.rglob("*.*")]
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                line = line.strip()
                if line:
                    entry = Path(line).expanduser()
                    files.append(str(entry if entry.is_absolute() else (p.parent / entry).resolve()))
        elif p.is_file():
            files.append(str(p))
        else:
            raise UserError(f"{prefix}{p}: does not exist")
    images = sorted(f for f in files if f.rsplit(".", 1)[-1].lower() in IMG_FORMATS)
    if not images:
        raise UserError(f"{prefix}{sources}: no images found (formats: {', '.join(IMG_FORMATS)})")
    return images


def img2label_paths(img_paths: list[str]) -> list[str]:
    """Label file of each image: the last /images/ becomes /labels/ and the extension .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return [sb.join(x.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt" for x in img_paths]


def exif_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, i.e. swapped for EXIF orientations 6 and 8 (90-degree rotations)."""
    w, h = img.size
    try:
        if img.getexif().get(EXIF_ORIENTATION) in (6, 8):
            return h, w
    except Exception:  # a malformed EXIF block leaves the stored size as it is
        pass
    return w, h


@dataclass
class LabelCheck:
    """Result of verifying one image and its label file; counts feed the one summary warning."""

    im_file: str
    labels: np.ndarray | None = None  # (k, 5) cls xc yc w h normalised; None when the image is dropped
    shape: tuple[int, int] = (0, 0)  # (width, height)
    segments: list[np.ndarray] = field(default_factory=list)
    missing: int = 0
    found: int = 0
    empty: int = 0
    corrupt: int = 0  # 1 when the image is excluded: it does not decode, or its label file has a bad row
    bad_rows: int = 0
    duplicates: int = 0
    msg: str = ""


def _parse_row(tokens: list[str]) -> tuple[float, np.ndarray | None, np.ndarray] | None:
    """(class, polygon or None, xywh box) of one label row, or None when the row is malformed."""
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float32)
    except ValueError:
        return None
    if not np.isfinite(values).all():
        return None
    cls, coords = values[0], values[1:]
    if cls < 0 or cls != int(cls):
        return None
    if len(coords) == 4:
        return (float(cls), None, coords) if (coords >= 0).all() and (coords <= 1).all() else None
    if len(coords) >= 6 and len(coords) % 2 == 0:
        polygon = coords.reshape(-1, 2)
        if (polygon < 0).any() or (polygon > 1).any():
            return None
        return float(cls), polygon, segments2boxes([polygon])[0]
    return None


def verify_image_label(im_file: str, lb_file: str) -> LabelCheck:
    """Check that the image decodes and is >= 10 px, and parse its label file.

    Any malformed or out-of-range row excludes the whole image, as upstream ("ignoring corrupt
    image/label"): keeping the image without that row would teach the model its object is background.
    """
    check = LabelCheck(im_file)
    try:
        with Image.open(im_file) as im:
            im.verify()  # structure check without decoding every pixel
        with Image.open(im_file) as im:
            shape = exif_size(im)
            fmt = (im.format or "").lower()
        if shape[0] < 10 or shape[1] < 10:
            raise ValueError(f"image size {shape} < 10 pixels")
        if fmt not in IMG_FORMATS:
            raise ValueError(f"invalid image format {fmt}")
        if fmt in ("jpeg", "jpg"):
            with open(im_file, "rb") as f:
                f.seek(-2, 2)
                if f.read() != b"\xff\xd9":
                    check.msg = f"{im_file}: corrupt JPEG tail (image still used)"
    except Exception as e:
        check.corrupt, check.msg = 1, f"{im_file}: ignoring corrupt image ({e})"
        return check
    check.shape = shape

    if not os.path.isfile(lb_file):
        check.missing, check.labels = 1, np.zeros((0, 5), dtype=np.float32)
        return check
    check.found = 1
    text = Path(lb_file).read_text(errors="replace")
    parsed = [_parse_row(line.split()) for line in text.splitlines() if line.strip()]
    good = [p for p in parsed if p is not None]
    check.bad_rows = len(parsed) - len(good)
    if check.bad_rows:
        # As upstream, a BOM makes the first row unreadable; saying so spares a user a hunt for an invisible byte.
        bom = " (it starts with a UTF-8 byte-order mark: save it as plain UTF-8)" if text.startswith("\ufeff") else ""
        check.corrupt = 1
        check.msg = (
            f"{im_file}: ignoring corrupt image/label: {lb_file} has {check.bad_rows} malformed or "
            f"out-of-range rows{bom}"
        )
        return check
    labels = np.array([[c, *box] for c, _, box in good], dtype=np.float32).reshape(-1, 5)
    has_polygons = any(poly is not None for _, poly, _ in good)
    segments = [poly if poly is not None else box_polygon(box) for _, poly, box in good] if has_polygons else []
    if len(labels):
        _, keep = np.unique(labels, axis=0, return_index=True)
        if len(keep) < len(labels):
            keep = np.sort(keep)
            check.duplicates = len(labels) - len(keep)
            labels = labels[keep]
            segments = [segments[i] for i in keep] if segments else []
    else:
        check.empty = 1
    check.labels, check.segments = labels, segments
    return check


def box_polygon(box: np.ndarray) -> np.ndarray:
    """A plain box row as a 4-corner polygon, so files mixing boxes and polygons keep one segment per label."""
    x, y, w, h = box
    return np.array(
        [[x - w / 2, y - h / 2], [x + w / 2, y - h / 2], [x + w / 2, y + h / 2], [x - w / 2, y + h / 2]],
        dtype=np.float32,
    )


def files_hash(paths: list[str]) -> str:
    """Hash of the paths and their sizes: changes when a file is added, removed, renamed or rewritten."""
    size = sum(os.path.getsize(p) for p in paths if os.path.exists(p))
    h = hashlib.sha256(str(size).encode())
    h.update("".join(paths).encode())
    return h.hexdigest()


def label_cache_path(label_files: list[str]) -> Path:
    """<labels dir parent>/<labels dir name>.yolo_ray.cache (saved under cache_home() when that is read-only)."""
    labels_dir = Path(label_files[0]).parent
    return labels_dir.parent / f"{labels_dir.name}{CACHE_SUFFIX}"


def _load_cache(path: Path, expected_hash: str) -> dict | None:
    for candidate in dict.fromkeys([path, writable_sibling(path, "labels")]):
        try:
            cache = np.load(candidate, allow_pickle=True).item()
        except Exception:  # absent, truncated or foreign: scanning again is always safe
            continue
        if cache.get("version") == CACHE_VERSION and cache.get("hash") == expected_hash:
            return cache
    return None


def _save_cache(path: Path, cache: dict, prefix: str) -> None:
    target = writable_sibling(path, "labels")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target, ".npy") as tmp:  # concurrent trials never read half a file
            np.save(tmp, cache, allow_pickle=True)
        LOGGER.info(f"{prefix}New label cache created: {target}")
    except OSError as e:
        LOGGER.warning(f"{prefix}WARNING: label cache not saved, {target.parent} is not writable ({e})")


def scan_labels(im_files: list[str], label_files: list[str], prefix: str = "", verbose: bool = True) -> dict:
    """Verified labels of every image, from the cache when its hash matches, else by scanning (and caching).

    Returns {"labels": {im_file: (labels, shape, segments)}, "counts": {...}, "msgs": [...]}.
    """
    cache_path = label_cache_path(label_files)
    expected = files_hash(label_files + im_files)
    cache = _load_cache(cache_path, expected)
    if cache is None:
        cache = {"hash": expected, "version": CACHE_VERSION, "labels": {}, "msgs": []}
        counts = dict.fromkeys(("found", "missing", "empty", "corrupt", "bad_rows", "duplicates"), 0)
        desc = f"{prefix}Scanning {Path(label_files[0]).parent}"
        with ThreadPool(NUM_THREADS) as pool:
            results = list(
                tqdm(
                    pool.imap(_verify_pair, zip(im_files, label_files)),
                    desc=desc,
                    total=len(im_files),
                    disable=not verbose,
                    file=sys.stdout,  # the console's bars go to stdout: stderr holds only warnings and errors
                )
            )
        for check in results:
            for key in counts:
                counts[key] += getattr(check, key)
            if check.labels is not None:
                cache["labels"][check.im_file] = (check.labels, check.shape, check.segments)
            if check.msg:
                cache["msgs"].append(check.msg)
        cache["counts"] = counts
        _save_cache(cache_path, cache, prefix)
    _report(cache, cache_path, prefix, verbose)
    return cache


def _verify_pair(pair: tuple[str, str]) -> LabelCheck:
    return verify_image_label(*pair)


def _report(cache: dict, cache_path: Path, prefix: str, verbose: bool) -> None:
    """One line of counts: a warning when something was dropped, info when only background images lack labels."""
    if not verbose:
        return
    c = cache["counts"]
    labels_dir = cache_path.parent / cache_path.name[: -len(CACHE_SUFFIX)]
    line = f"{prefix}{labels_dir}: {count_summary(c)}"
    images = c["found"] + c["missing"] + c["corrupt"]
    many_missing = c["missing"] > MISSING_LABELS_WARN_SHARE * images
    if many_missing:
        line += f" ({c['missing']} of {images} images have no label file and train as background)"
    if c["corrupt"] or c["bad_rows"] or c["duplicates"] or cache["msgs"] or many_missing:
        examples = "; ".join(cache["msgs"][:3])
        LOGGER.warning(f"WARNING: {line}" + (f" (e.g. {examples})" if examples else ""))
    else:
        LOGGER.info(line)


def count_summary(counts: dict) -> str:
    """The scan's counts in words, for the summary line and for errors about the labels."""
    return (
        f"{counts['found']} label files found, {counts['missing']} missing, {counts['empty']} empty, "
        f"{counts['corrupt']} corrupt images/labels ignored ({counts['bad_rows']} bad label rows), "
        f"{counts['duplicates']} duplicate labels dropped"
    )


def find_class_row(lb_file: str, nc: int) -> tuple[int, str]:
    """(1-based line number, text) of the first valid row in a label file whose class id is >= nc."""
    for number, line in enumerate(Path(lb_file).read_text(errors="replace").splitlines(), 1):
        parsed = _parse_row(line.split()) if line.strip() else None
        if parsed is not None and parsed[0] >= nc:
            return number, line.strip()
    return 0, ""
