"""LoadImagesAndLabels: YOLOv5's training/validation dataset (mosaic, letterbox, rect batches, caches)."""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from yolo_ray.boxes import xywhn2xyxy, xyn2xy, xyxy2xywhn
from yolo_ray.config import UserError, load_hyp, replacing
from yolo_ray.data.augment import FILL, augment_hsv, copy_paste, letterbox, mixup, random_perspective
from yolo_ray.data.labels import (
    LOGGER,
    NUM_THREADS,
    box_polygon,
    count_summary,
    find_class_row,
    img2label_paths,
    list_image_files,
    scan_labels,
    writable_sibling,
)


@dataclass
class DecodedImages:
    """Every image of a dataset decoded once and resized so its long side is imgsz (BGR uint8).

    Shared between trials (Ray object store) or datasets in one process; `files` says which image each
    entry is, so a dataset in any order (rect sorting) finds its own.
    """

    images: list[np.ndarray]
    hw0: list[tuple[int, int]]
    hw: list[tuple[int, int]]
    imgsz: int
    files: list[str]


# Process-level store for cache="ram": a reused Ray actor's next trial finds its images here.
_DECODED_STORE: OrderedDict[tuple, DecodedImages] = OrderedDict()
_DECODED_STORE_SIZE = 4  # train + val at two image sizes


def _store_key(files: list[str], imgsz: int, augment: bool) -> tuple:
    return hashlib.sha1("\n".join(sorted(files)).encode()).hexdigest(), imgsz, augment


def decode_image(
    path: str, imgsz: int, augment: bool, npy_file: str | None = None
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """(image resized so its long side is imgsz, (h0, w0), (h, w)); reads a .npy copy when given and present."""
    im = np.load(npy_file) if npy_file and Path(npy_file).is_file() else cv2.imread(path)
    if im is None:
        raise FileNotFoundError(f"image not readable: {path}")
    h0, w0 = im.shape[:2]
    r = imgsz / max(h0, w0)
    if r != 1:
        # INTER_AREA keeps detail when shrinking for validation; augmentation warps the image again anyway
        interp = cv2.INTER_LINEAR if (augment or r > 1) else cv2.INTER_AREA
        im = cv2.resize(im, (int(w0 * r), int(h0 * r)), interpolation=interp)
    return im, (h0, w0), im.shape[:2]


def available_memory() -> tuple[int, int]:
    """(available, total) bytes of this machine's memory, as the kernel estimates what can be allocated."""
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            info[name] = int(value.split()[0]) * 1024
    return info.get("MemAvailable", info.get("MemFree", 0)), info.get("MemTotal", 0)


def ram_cache_fits(
    shapes: np.ndarray, img_size: int, copies: int = 1, prefix: str = "", safety_margin: float = 0.1
) -> bool:
    """Whether `copies` decoded copies of images of these (w, h) shapes fit in this machine's available memory
    (upstream's check_cache_ram, counting the DDP ranks of this node: each caches the whole set).

    The size comes from the label scan's image shapes, resized as the cache holds them: nothing is decoded.
    """
    if not len(shapes):
        return True
    wh = np.asarray(shapes, dtype=np.float64).reshape(-1, 2)
    ratio = img_size / wh.max(axis=1)
    need = float((wh[:, 0] * wh[:, 1] * 3 * ratio**2).sum()) * copies
    available, total = available_memory()
    fits = need * (1 + safety_margin) < available
    gb = 1 << 30
    LOGGER.info(
        f"{prefix}{need / gb:.1f}GB RAM required for {copies} cached copies, {available / gb:.1f}/"
        f"{total / gb:.1f}GB available, {'caching images' if fits else 'not caching images'}"
    )
    return fits


class LoadImagesAndLabels(torch.utils.data.Dataset):
    """Images + YOLO labels; items are (image uint8 CHW RGB tensor, labels (n, 6) [0, cls, xc, yc, w, h]
    normalised, path, shapes) where shapes = ((h0, w0), ((h/h0, w/w0), (padw, padh))) or None for mosaics."""

    def __init__(
        self,
        path: str | list[str],
        img_size: int = 640,
        batch_size: int = 16,
        augment: bool = False,
        hyp: dict | None = None,
        rect: bool = False,
        image_weights: bool = False,
        cache_images: str | None = None,
        single_cls: bool = False,
        stride: int = 32,
        pad: float = 0.0,
        prefix: str = "",
        decoded: DecodedImages | None = None,
        nc: int | None = None,
        verbose: bool = True,
        ram_copies: int = 1,
    ):
        self.img_size = img_size
        self.augment = augment
        self.hyp = load_hyp(hyp) if augment else hyp
        self.image_weights = image_weights
        self.rect = False if image_weights else rect
        self.mosaic = augment and not self.rect  # mosaics are square: rect batches would not fit them
        self.mosaic_border = [-img_size // 2, -img_size // 2]
        self.stride = stride
        if cache_images not in (None, False, "ram", "disk"):
            raise UserError(f"cache must be None, 'ram' or 'disk', got {cache_images!r}")

        self.im_files = list_image_files(path, prefix)
        self.label_files = img2label_paths(self.im_files)
        scan = scan_labels(self.im_files, self.label_files, prefix, verbose)
        entries = scan["labels"]
        kept = [i for i, f in enumerate(self.im_files) if f in entries]
        if not kept:
            sources = ", ".join(map(str, path)) if isinstance(path, (list, tuple)) else path
            first_problem = f"; e.g. {scan['msgs'][0]}" if scan["msgs"] else ""
            raise UserError(
                f"{prefix}No usable images in {sources}, can not start training "
                f"({len(self.im_files)} images: {count_summary(scan['counts'])}{first_problem})"
            )
        self.im_files = [self.im_files[i] for i in kept]
        self.label_files = [self.label_files[i] for i in kept]
        self.labels = [entries[f][0].copy() for f in self.im_files]
        self.shapes = np.array([entries[f][1] for f in self.im_files], dtype=np.float64)
        self.segments = [list(entries[f][2]) for f in self.im_files]
        if augment and not any(len(lb) for lb in self.labels):  # as upstream: training on nothing is no training
            raise UserError(
                f"{prefix}No labels found in {Path(self.label_files[0]).parent}, can not start "
                f"training ({len(self.im_files)} images: {count_summary(scan['counts'])})"
            )
        self._check_classes(nc, single_cls)
        if single_cls:
            for lb in self.labels:
                lb[:, 0] = 0

        self.n = len(self.im_files)
        self.batch = np.floor(np.arange(self.n) / batch_size).astype(int)  # batch index of each image
        self.indices = range(self.n)
        self.batch_shapes = None
        if self.rect:
            self._sort_for_rect(batch_size, img_size, stride, pad)

        self.npy_files = [str(writable_sibling(Path(f).with_suffix(".npy"), "npy")) for f in self.im_files]
        self.cache_disk = cache_images == "disk"
        self.decoded = None
        self._decoded_index: list[int] | None = None
        if decoded is not None:
            self.use_decoded(decoded)
        elif cache_images == "ram" and ram_cache_fits(self.shapes, img_size, ram_copies, prefix):
            self.use_decoded(self.decoded_images(store=True))
        elif cache_images == "disk":
            self._write_npy(prefix)

    def _check_classes(self, nc: int | None, single_cls: bool) -> None:
        if nc is None or single_cls:
            return
        for lb, lb_file in zip(self.labels, self.label_files):
            if len(lb) and lb[:, 0].max() >= nc:
                row, text = find_class_row(lb_file, nc)
                raise UserError(
                    f"{lb_file}: row {row} has class {text.split()[0]} but the data has nc={nc} "
                    f"(classes are 0..{nc - 1}): {text!r}"
                )

    def _sort_for_rect(self, batch_size: int, img_size: int, stride: int, pad: float) -> None:
        """Sort images by aspect ratio so each batch gets the smallest padded shape that fits all of them."""
        ar = self.shapes[:, 1] / self.shapes[:, 0]  # h / w
        order = ar.argsort()
        self.im_files = [self.im_files[i] for i in order]
        self.label_files = [self.label_files[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        self.segments = [self.segments[i] for i in order]
        self.shapes = self.shapes[order]
        ar = ar[order]
        nb = self.batch[-1] + 1
        shapes = np.ones((nb, 2))
        for i in range(nb):
            ari = ar[self.batch == i]
            lo, hi = ari.min(), ari.max()
            if hi < 1:
                shapes[i] = [hi, 1]
            elif lo > 1:
                shapes[i] = [1, 1 / lo]
        self.batch_shapes = np.ceil(shapes * img_size / stride + pad).astype(int) * stride

    def __len__(self) -> int:
        return self.n

    def decoded_images(self, store: bool = False) -> DecodedImages:
        """All images decoded and resized once (threads: cv2 releases the GIL); reuses the process store."""
        if self.decoded is not None:
            return self.decoded
        key = _store_key(self.im_files, self.img_size, self.augment)
        if key in _DECODED_STORE:
            _DECODED_STORE.move_to_end(key)
            return _DECODED_STORE[key]
        npy = self.npy_files if self.cache_disk else [None] * self.n
        with ThreadPool(NUM_THREADS) as pool:
            results = list(
                tqdm(
                    pool.imap(
                        lambda i: decode_image(self.im_files[i], self.img_size, self.augment, npy[i]), range(self.n)
                    ),
                    total=self.n,
                    desc="Decoding images",
                    disable=self.n < 1000,
                )
            )
        decoded = DecodedImages(
            images=[r[0] for r in results],
            hw0=[r[1] for r in results],
            hw=[r[2] for r in results],
            imgsz=self.img_size,
            files=list(self.im_files),
        )
        if store:
            _DECODED_STORE[key] = decoded
            while len(_DECODED_STORE) > _DECODED_STORE_SIZE:
                _DECODED_STORE.popitem(last=False)
        return decoded

    def use_decoded(self, decoded: DecodedImages) -> None:
        """Serve images from already decoded ones (must hold every file of this dataset at this imgsz)."""
        if decoded.imgsz != self.img_size:
            raise ValueError(f"decoded images are at imgsz={decoded.imgsz}, dataset wants {self.img_size}")
        position = {f: i for i, f in enumerate(decoded.files)}
        missing = [f for f in self.im_files if f not in position]
        if missing:
            raise ValueError(f"decoded images lack {len(missing)} files of this dataset, e.g. {missing[0]}")
        self.decoded = decoded
        self._decoded_index = [position[f] for f in self.im_files]

    def _write_npy(self, prefix: str) -> None:
        todo = [i for i, f in enumerate(self.npy_files) if not Path(f).is_file()]

        def save(i: int) -> None:
            target = Path(self.npy_files[i])
            target.parent.mkdir(parents=True, exist_ok=True)
            with replacing(target, ".npy") as tmp:  # a concurrent trial never loads half an array
                np.save(tmp, cv2.imread(self.im_files[i]))

        with ThreadPool(NUM_THREADS) as pool:
            list(
                tqdm(
                    pool.imap(save, todo),
                    total=len(todo),
                    desc=f"{prefix}Caching images to disk",
                    disable=len(todo) < 1000,
                )
            )

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """(image resized to long side img_size, (h0, w0), (h, w)); the image must not be modified in place
        when it comes from decoded images (shared, possibly read-only)."""
        if self.decoded is not None:
            j = self._decoded_index[i]
            return self.decoded.images[j], self.decoded.hw0[j], self.decoded.hw[j]
        return decode_image(
            self.im_files[i], self.img_size, self.augment, self.npy_files[i] if self.cache_disk else None
        )

    def load_mosaic(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Four images around a random centre on a 2s canvas, then copy-paste and random perspective down to s."""
        s = self.img_size
        yc, xc = (int(random.uniform(-b, 2 * s + b)) for b in self.mosaic_border)
        indices = [index] + random.choices(self.indices, k=3)
        random.shuffle(indices)
        canvas = np.full((2 * s, 2 * s, 3), FILL, dtype=np.uint8)
        labels4, segments4 = [], []
        # Upstream warps through segments whenever any label has one; box-only images then take their
        # boxes as 4-corner polygons, so every label keeps its own polygon.
        any_segments = any(self.segments[i] for i in indices)
        for quadrant, i in enumerate(indices):
            img, _, (h, w) = self.load_image(i)
            if quadrant == 0:  # top left: the image's bottom-right corner sits at the centre
                x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
                x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
            elif quadrant == 1:  # top right
                x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
                x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
            elif quadrant == 2:  # bottom left
                x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
                x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
            else:  # bottom right
                x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
                x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
            canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
            padw, padh = x1a - x1b, y1a - y1b
            labels = self.labels[i].copy()
            if labels.size:
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], w, h, padw, padh)
            labels4.append(labels)
            segments = self.segments[i] or ([box_polygon(row[1:]) for row in self.labels[i]] if any_segments else [])
            segments4.extend(xyn2xy(seg, w, h, padw, padh) for seg in segments)
        labels4 = np.concatenate(labels4, 0)
        np.clip(labels4[:, 1:], 0, 2 * s, out=labels4[:, 1:])
        for seg in segments4:
            np.clip(seg, 0, 2 * s, out=seg)
        hyp = self.hyp
        canvas, labels4, segments4 = copy_paste(canvas, labels4, segments4, p=hyp["copy_paste"])
        return random_perspective(
            canvas,
            labels4,
            segments4,
            degrees=hyp["degrees"],
            translate=hyp["translate"],
            scale=hyp["scale"],
            shear=hyp["shear"],
            perspective=hyp["perspective"],
            border=self.mosaic_border,
        )

    def __getitem__(self, index: int):
        index = self.indices[index]  # image weights resample through indices
        hyp = self.hyp
        source = None  # a cached image that transforms may hand back unchanged
        if self.mosaic and random.random() < hyp["mosaic"]:
            img, labels = self.load_mosaic(index)
            shapes = None
            if random.random() < hyp["mixup"]:
                img, labels = mixup(img, labels, *self.load_mosaic(random.choice(self.indices)))
        else:
            source, (h0, w0), (h, w) = self.load_image(index)
            shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
            img, ratio, pad = letterbox(source, shape, auto=False, scaleup=self.augment)
            shapes = (h0, w0), ((h * ratio[1] / h0, w * ratio[0] / w0), (float(pad[0]), float(pad[1])))
            labels = self.labels[index].copy()
            if labels.size:
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, padw=pad[0], padh=pad[1])
            if self.augment:
                img, labels = random_perspective(
                    img,
                    labels,
                    degrees=hyp["degrees"],
                    translate=hyp["translate"],
                    scale=hyp["scale"],
                    shear=hyp["shear"],
                    perspective=hyp["perspective"],
                )
        nl = len(labels)
        if nl:
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
        if self.augment:
            if img is source:  # identity transforms: never recolour a cached image in place
                img = img.copy()
            augment_hsv(img, hgain=hyp["hsv_h"], sgain=hyp["hsv_s"], vgain=hyp["hsv_v"])
            # flips are strided views: the single contiguous copy below materialises them for free
            if random.random() < hyp["flipud"]:
                img = img[::-1]
                if nl:
                    labels[:, 2] = 1 - labels[:, 2]
            if random.random() < hyp["fliplr"]:
                img = img[:, ::-1]
                if nl:
                    labels[:, 1] = 1 - labels[:, 1]
        labels_out = torch.zeros((nl, 6), dtype=torch.float32)
        if nl:
            labels_out[:, 1:] = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))
        img = np.ascontiguousarray(img.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB, one copy
        return torch.from_numpy(img), labels_out, self.im_files[index], shapes


def check_training_data(data: dict, hyp: dict, single_cls: bool = False) -> None:
    """Scan the train and val sets of a load_data_config dict as training will (silently, filling the label
    caches), so missing images, no usable labels or class ids >= nc fail before a run folder exists."""
    nc = 1 if single_cls else data["nc"]
    LoadImagesAndLabels(
        data["train"], augment=True, hyp=hyp, single_cls=single_cls, prefix="train: ", nc=nc, verbose=False
    )
    LoadImagesAndLabels(data["val"], single_cls=single_cls, prefix="val: ", nc=nc, verbose=False)
