"""create_dataloader: batches of (images, targets, paths, shapes), sharded per rank, seeded per worker."""

from __future__ import annotations

import math
import os
import random

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, default_collate

from yolo_ray.data.dataset import DecodedImages, LoadImagesAndLabels
from yolo_ray.data.labels import LOGGER


class ShardSampler(Sampler[int]):
    """Dataset positions for one rank: a disjoint shard (every world_size-th of a seeded permutation).

    The list is padded by wrapping around so all ranks see the same number of batches (DDP needs that).
    The order depends only on (seed, epoch): set_epoch(e) picks epoch e; without it, each new pass
    advances the epoch by itself so a plain loop still reshuffles.
    """

    def __init__(self, n: int, world_size: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.n, self.world_size, self.rank = n, world_size, rank
        self.shuffle, self.seed = shuffle, seed
        self.epoch = 0
        self._epoch_set = False
        self.num_samples = math.ceil(n / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._epoch_set = True

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.num_samples * self.world_size
        order += (order * math.ceil(total / max(self.n, 1)))[: total - self.n]
        if not self._epoch_set:
            self.epoch += 1
        self._epoch_set = False
        return iter(order[self.rank : total : self.world_size])

    def __len__(self) -> int:
        return self.num_samples


class RectBatchSampler(Sampler[list[int]]):
    """Whole rectangular batches for one rank.

    With rect the dataset sorts images by aspect ratio and gives each consecutive block of batch_size
    images one padded shape, so a rank must take whole blocks (block k goes to rank k % world_size);
    interleaving single images across ranks would mix shapes inside a batch. Blocks repeat from the
    start until every rank has as many batches as the others (DDP needs equal counts).
    """

    def __init__(self, n: int, batch_size: int, world_size: int = 1, rank: int = 0):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        blocks = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
        total = math.ceil(len(blocks) / world_size) * world_size
        self.batches = [blocks[k % len(blocks)] for k in range(rank, total, world_size)] if blocks else []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate_fn(batch: list) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], tuple]:
    """Stack images to (B, 3, H, W) uint8 and concatenate targets with column 0 = index in the batch."""
    images, labels, paths, shapes = zip(*batch)
    for i, lb in enumerate(labels):
        lb[:, 0] = i
    # default_collate stacks straight into shared memory inside a worker, saving the copy that sending
    # an ordinary tensor to the main process would make
    return default_collate(images), torch.cat(labels, 0), paths, shapes


def seed_worker(worker_id: int) -> None:
    """Seed `random` and numpy in each worker from torch's per-worker seed (itself from the loader generator),
    and keep OpenCV single-threaded there: the workers already use the cores, extra threads only contend."""
    cv2.setNumThreads(0)
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def create_dataloader(
    path: str | list[str],
    imgsz: int,
    batch_size: int,
    stride: int,
    single_cls: bool = False,
    hyp: dict | None = None,
    augment: bool = False,
    cache: str | None = None,
    pad: float = 0.0,
    rect: bool = False,
    rank: int = -1,
    world_size: int = 1,
    workers: int = 8,
    image_weights: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    decoded: DecodedImages | None = None,
    prefix: str = "",
    nc: int | None = None,
    pin_memory: bool = False,
    ram_copies: int = 1,
) -> tuple[DataLoader, LoadImagesAndLabels]:
    """The (loader, dataset) pair of one rank; batch_size is per rank. See LoadImagesAndLabels for items.

    Workers persist across epochs, except with image_weights: the training loop rewrites
    dataset.indices each epoch and fresh workers must see the new indices. pin_memory only pays off
    when batches go to a CUDA device (and costs a CUDA context on the first GPU otherwise).
    """
    if world_size > 1 and not 0 <= rank < world_size:
        raise ValueError(f"distributed loading needs 0 <= rank < world_size={world_size}, got rank={rank}")
    if rect and shuffle:
        LOGGER.warning(f"{prefix}WARNING: rect is incompatible with shuffle, setting shuffle=False")
        shuffle = False
    dataset = LoadImagesAndLabels(
        path,
        imgsz,
        batch_size,
        augment=augment,
        hyp=hyp,
        rect=rect,
        image_weights=image_weights,
        cache_images=cache,
        single_cls=single_cls,
        stride=int(stride),
        pad=pad,
        prefix=prefix,
        decoded=decoded,
        nc=nc,
        verbose=rank in (-1, 0),
        ram_copies=ram_copies,
    )
    batch_size = min(batch_size, len(dataset))
    nw = min(os.cpu_count() or 1, batch_size if batch_size > 1 else 0, workers)
    generator = torch.Generator()
    generator.manual_seed(seed * 1000 + max(rank, 0))  # distinct augmentation streams per rank
    if rect:
        batching = {"batch_sampler": RectBatchSampler(len(dataset), batch_size, world_size, max(rank, 0))}
    else:
        batching = {
            "batch_size": batch_size,
            "sampler": ShardSampler(len(dataset), world_size, max(rank, 0), shuffle=shuffle, seed=seed),
        }
    loader = DataLoader(
        dataset,
        **batching,
        num_workers=nw,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=nw > 0 and not image_weights,
    )
    return loader, dataset


def labels_to_class_weights(labels: list[np.ndarray], nc: int = 80) -> np.ndarray:
    """Inverse class frequency over all labels, normalised to sum 1 (absent classes count as 1 object)."""
    if not len(labels) or labels[0] is None:
        return np.zeros(0)
    classes = np.concatenate(labels, 0)[:, 0].astype(int)
    weights = np.bincount(classes, minlength=nc).astype(np.float64)
    weights[weights == 0] = 1
    weights = 1 / weights
    return weights / weights.sum()


def labels_to_image_weights(
    labels: list[np.ndarray], nc: int = 80, class_weights: np.ndarray | None = None
) -> np.ndarray:
    """Per-image sampling weight: the sum of its objects' class weights (images without objects weigh 0)."""
    class_weights = np.ones(nc) if class_weights is None else np.asarray(class_weights)
    counts = np.array([np.bincount(lb[:, 0].astype(int), minlength=nc) for lb in labels]).reshape(-1, nc)
    return (class_weights.reshape(1, nc) * counts).sum(1)
