"""Decode the dataset once in the driver and share it with every trial through the Ray object store.

Concurrent trials on a node then map one copy of the images (numpy buffers are zero-copy from the
object store) instead of each decoding and holding its own, and a trial starts training without a
decode pass. Skipped when the images would crowd the object store of any node that runs trials (each
keeps its own copy) or the driver's memory (it decodes them), with --cache disk, or --no-share-images.
"""

from __future__ import annotations

from typing import Any

import ray

from yolo_ray.console import LOGGER

# The decoded images may take at most this share of the object store (trials need the rest).
OBJECT_STORE_SHARE = 0.25


def sharing_budget(object_stores: list[float], driver_available: float) -> float:
    """Bytes of decoded images that may be shared: every trial node fetches a whole copy into its own
    object store, and the driver holds them all while it decodes and puts them."""
    smallest = min(object_stores, default=0.0)
    return min(smallest * OBJECT_STORE_SHARE, driver_available * 0.5)


def share_decoded_images(train_config: dict[str, Any], imgsz: int) -> ray.ObjectRef | None:
    """An ObjectRef to {"train": DecodedImages, "val": DecodedImages} at imgsz (on the stride grid) for
    the TRAIN CONFIG "decoded" key, or None when sharing does not pay (disk cache) or would not fit."""
    from yolo_ray.data import LoadImagesAndLabels, load_data_config
    from yolo_ray.data.dataset import available_memory

    if train_config.get("cache") == "disk":
        return None
    data = load_data_config(train_config["data"], train_config.get("cwd"))
    common = {"img_size": imgsz, "single_cls": bool(train_config.get("single_cls")), "verbose": False}
    train = LoadImagesAndLabels(data["train"], augment=True, hyp=train_config["hyp"], **common)
    val = LoadImagesAndLabels(data["val"], augment=False, **common)
    estimate = (train.n + val.n) * imgsz * imgsz * 3  # upper bound: long side = imgsz
    budget = sharing_budget(
        [
            n["Resources"].get("object_store_memory", 0)
            for n in ray.nodes()
            if n.get("Alive") and (n["Resources"].get("CPU", 0) or n["Resources"].get("GPU", 0))
        ],
        available_memory()[0],
    )
    if estimate > budget:
        LOGGER.warning(
            f"evolve: not sharing decoded images ({estimate / 1e9:.1f} GB would exceed "
            f"{budget / 1e9:.1f} GB: {OBJECT_STORE_SHARE:.0%} of the smallest node's object store, half "
            "the driver's free memory); each trial reads its own"
        )
        return None
    decoded = {"train": train.decoded_images(), "val": val.decoded_images()}
    LOGGER.info(f"evolve: shared {train.n} train + {val.n} val decoded images at {imgsz} px with all trials")
    return ray.put(decoded)
