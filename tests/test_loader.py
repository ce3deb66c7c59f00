"""The loader: batches, rect shapes, DDP shards, seeding, image caches, class/image weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from yolo_ray.config import load_hyp
from yolo_ray.data import (
    DecodedImages,
    create_dataloader,
    labels_to_class_weights,
    labels_to_image_weights,
    load_data_config,
)
from yolo_ray.data import dataset as dataset_mod
from yolo_ray.data.loader import ShardSampler


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))


def write_dataset(root, sizes, classes=None):
    """One image per (h, w) with a centred box of class i (or classes[i]); returns the images folder."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(root / "images" / f"im{i:02d}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        cls = i if classes is None else classes[i]
        (root / "labels" / f"im{i:02d}.txt").write_text(f"{cls} 0.5 0.5 0.25 0.25\n")
    return str(root / "images")


@pytest.mark.timeout(20)
def test_rect_batches_sorted_by_aspect_with_padded_shapes(tmp_path):
    # (h, w): aspect h/w 0.5, 2, 0.75, 1.333 -> sorted 0.5, 0.75 | 1.333, 2
    path = write_dataset(tmp_path, [(32, 64), (64, 32), (48, 64), (64, 48)])
    loader, ds = create_dataloader(path, 64, 2, 32, rect=True, pad=0.5, workers=0)
    # batch 0: max aspect 0.75 -> [0.75, 1] * 64 / 32 + 0.5 = [2, 2.5] -> ceil * 32 = [64, 96]
    # batch 1: min aspect 1.333 -> [1, 0.75] -> [2.5, 2] -> [96, 64]
    np.testing.assert_array_equal(ds.batch_shapes, [[64, 96], [96, 64]])
    assert [f[-8:] for f in ds.im_files] == ["im00.png", "im02.png", "im03.png", "im01.png"]
    shapes = [tuple(imgs.shape) for imgs, *_ in loader]
    assert shapes == [(2, 3, 64, 96), (2, 3, 96, 64)]


@pytest.mark.timeout(20)
def test_collate_fills_image_index_and_shapes(tmp_path):
    path = write_dataset(tmp_path, [(40, 80)] * 3)
    loader, _ = create_dataloader(path, 64, 3, 32, workers=0)
    imgs, targets, paths, shapes = next(iter(loader))
    assert imgs.dtype == torch.uint8 and imgs.shape == (3, 3, 64, 64) and imgs.is_contiguous()
    assert targets.dtype == torch.float32 and targets[:, 0].tolist() == [0, 1, 2]
    assert targets[:, 1].tolist() == [0, 1, 2]
    # 80x40 -> 64x32 letterboxed into 64x64: 16 rows of padding on top, box centre stays at 0.5
    np.testing.assert_allclose(targets[:, 2:].numpy(), [[0.5, 0.5, 0.25, 0.125]] * 3, atol=1e-6)
    assert shapes[0] == ((40, 80), ((0.8, 0.8), (0.0, 16.0)))
    assert len(paths) == 3 and paths[0].endswith("im00.png")


@pytest.mark.timeout(10)
def test_shard_sampler_disjoint_and_reshuffled_per_epoch():
    samplers = [ShardSampler(12, world_size=3, rank=r, shuffle=True, seed=5) for r in range(3)]
    shards = [list(s) for s in samplers]
    assert sorted(sum(shards, [])) == list(range(12))  # disjoint and complete
    for s in samplers:
        s.set_epoch(1)
    again = [list(s) for s in samplers]
    assert sorted(sum(again, [])) == list(range(12)) and again != shards
    for s in samplers:
        s.set_epoch(0)
    assert [list(s) for s in samplers] == shards  # the order is a function of (seed, epoch)


@pytest.mark.timeout(10)
def test_shard_sampler_pads_uneven_and_advances_without_set_epoch():
    shards = [list(ShardSampler(10, world_size=4, rank=r, seed=0)) for r in range(4)]
    assert [len(s) for s in shards] == [3, 3, 3, 3]
    assert set(sum(shards, [])) == set(range(10))
    s = ShardSampler(20, seed=1)
    assert list(s) != list(s)  # a plain loop without set_epoch still reshuffles
    assert list(ShardSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


@pytest.mark.timeout(20)
def test_distributed_loaders_see_disjoint_images(tmp_path):
    path = write_dataset(tmp_path, [(32, 32)] * 8)
    seen = []
    for rank in range(2):
        loader, _ = create_dataloader(path, 32, 2, 32, rank=rank, world_size=2, shuffle=True, workers=0, seed=3)
        loader.sampler.set_epoch(4)
        seen.append([p for _, _, paths, _ in loader for p in paths])
    assert len(seen[0]) == len(seen[1]) == 4 and not set(seen[0]) & set(seen[1])


@pytest.mark.timeout(60)
def test_seeded_augmented_loader_is_reproducible(tmp_path):
    path = write_dataset(tmp_path, [(48, 64), (64, 48), (64, 64), (40, 64), (56, 56)], classes=[0, 1, 2, 0, 1])
    hyp = load_hyp()

    def first_batches(seed):
        loader, _ = create_dataloader(path, 64, 2, 32, augment=True, hyp=hyp, shuffle=True, workers=2, seed=seed)
        out = [(imgs.clone(), targets.clone()) for epoch in range(2) for imgs, targets, _, _ in loader]
        del loader
        return out

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))
    assert not torch.equal(a[0][0], a[3][0])  # epochs differ


@pytest.mark.timeout(30)
def test_ram_cache_and_decoded_images_skip_decoding(tmp_path, monkeypatch):
    path = write_dataset(tmp_path, [(40, 80), (80, 40), (64, 64)])
    _, plain = create_dataloader(path, 64, 2, 32, workers=0)
    expected = [plain[i][0] for i in range(plain.n)]
    _, cached = create_dataloader(path, 64, 2, 32, cache="ram", workers=0)
    decoded = cached.decoded_images()
    assert isinstance(decoded, DecodedImages) and decoded.imgsz == 64
    assert decoded.hw0 == [(40, 80), (80, 40), (64, 64)] and decoded.hw == [(32, 64), (64, 32), (64, 64)]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image again")

    monkeypatch.setattr(dataset_mod.cv2, "imread", no_decoding)
    _, again = create_dataloader(path, 64, 2, 32, cache="ram", workers=0)  # from the process store
    _, shared = create_dataloader(path, 64, 2, 32, rect=True, decoded=decoded, workers=0)  # another order
    for ds in (again, shared):
        items = {ds.im_files[i]: ds[i] for i in range(ds.n)}
        for i, f in enumerate(plain.im_files):
            if ds is again:
                assert torch.equal(items[f][0], expected[i])
            assert items[f][1].shape == (1, 6)


@pytest.mark.timeout(30)
def test_disk_cache_writes_npy_outside_read_only_folder(tmp_path):
    path = write_dataset(tmp_path / "ds", [(40, 80), (64, 64)])
    _, plain = create_dataloader(path, 64, 2, 32, workers=0)
    (tmp_path / "ds" / "images").chmod(0o555)
    try:
        _, ds = create_dataloader(path, 64, 2, 32, cache="disk", workers=0)
        npy = sorted((tmp_path / "home" / "npy").rglob("*.npy"))
        assert [p.name for p in npy] == ["im00.npy", "im01.npy"]
        assert not list((tmp_path / "ds" / "images").glob("*.npy"))
        np.testing.assert_array_equal(np.load(npy[0]), cv2.imread(ds.im_files[0]))
        assert all(torch.equal(ds[i][0], plain[i][0]) for i in range(2))
    finally:
        (tmp_path / "ds" / "images").chmod(0o755)


@pytest.mark.timeout(10)
def test_class_and_image_weights_by_hand():
    labels = [
        np.array([[0, 0.5, 0.5, 0.1, 0.1], [0, 0.5, 0.5, 0.1, 0.1]]),
        np.array([[2, 0.5, 0.5, 0.1, 0.1]]),
        np.zeros((0, 5)),
    ]
    # counts [2, 0, 1] -> absent class counts 1 -> inverse [1/2, 1, 1] / 2.5
    np.testing.assert_allclose(labels_to_class_weights(labels, nc=3), [0.2, 0.4, 0.4])
    np.testing.assert_allclose(
        labels_to_image_weights(labels, nc=3, class_weights=np.array([1.0, 5.0, 3.0])), [2.0, 3.0, 0.0]
    )


@pytest.mark.timeout(20)
def test_image_weights_indices_steer_sampling_and_single_cls(tmp_path):
    path = write_dataset(tmp_path, [(32, 32)] * 4)
    loader, ds = create_dataloader(path, 32, 2, 32, image_weights=True, single_cls=True, workers=0)
    ds.indices = [3, 3, 3, 3]  # what the training loop sets from labels_to_image_weights each epoch
    paths = [p for _, _, batch_paths, _ in loader for p in batch_paths]
    assert paths == [ds.im_files[3]] * 4
    assert all(lb[:, 0].max() == 0 for lb in ds.labels)


@pytest.mark.timeout(40)
def test_coco128_train_and_val_loaders(coco128):
    cfg = load_data_config(coco128)
    loader, ds = create_dataloader(
        cfg["train"], 320, 8, 32, augment=True, hyp=load_hyp(), shuffle=True, workers=2, nc=cfg["nc"], seed=0
    )
    imgs, targets, paths, shapes = next(iter(loader))
    assert imgs.shape == (8, 3, 320, 320) and len(targets) and shapes == (None,) * 8
    assert ((targets[:, 2:] > 0) & (targets[:, 2:] <= 1)).all() and targets[:, 1].max() < 80
    del loader
    val_loader, val = create_dataloader(cfg["val"], 320, 32, 32, rect=True, pad=0.5, workers=0)
    assert val.batch_shapes.shape == (4, 2) and (val.batch_shapes % 32 == 0).all()
    imgs, targets, paths, shapes = next(iter(val_loader))
    assert tuple(imgs.shape[2:]) == tuple(val.batch_shapes[0])
