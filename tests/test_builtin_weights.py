"""The shipped starting checkpoint for the built-in data, and the evolution default that picks it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import yolo_ray
from yolo_ray.metrics import box_iou
from yolo_ray.data.synthetic import CLASS_NAMES, builtin_weights, make_dataset, render_scene
from yolo_ray.options import DEFAULT_CFG
from yolo_ray.evolution.run_options import resolve_options
from yolo_ray.models.yolo import build_model


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_builtin_data_without_weights_or_cfg_starts_from_the_shipped_checkpoint(tmp_path):
    opt = resolve_options({"project": str(tmp_path / "runs"), "generations": 2})
    assert opt["weights"] == str(builtin_weights()) and opt["cfg"] is None
    assert opt["imgsz"] == 640  # the user's settings stay theirs

    chosen = resolve_options({"project": str(tmp_path / "runs"), "cfg": "yolov5s.yaml"})
    assert chosen["weights"] is None and chosen["cfg"] == "yolov5s.yaml"

    user_data = make_dataset(tmp_path / "user", n_train=4, n_val=2, size=64)
    user = resolve_options({"project": str(tmp_path / "runs"), "data": str(user_data)})
    assert user["weights"] is None and user["cfg"] == DEFAULT_CFG  # user data: from scratch, as before


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_shipped_checkpoint_is_a_stripped_yolov5n_that_detects_the_builtin_shapes():
    path = builtin_weights()
    assert path.stat().st_size < 6e6
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["optimizer"] is None and ckpt["ema"] is None and ckpt["epoch"] == -1
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert dict(ckpt["names"]) == dict(enumerate(CLASS_NAMES))
    model = build_model(ckpt["yaml"], nc=4)
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})  # strict: every key, every shape
    assert model.nc == 4 and ckpt["yaml"]["depth_multiple"] == 0.33 and ckpt["yaml"]["width_multiple"] == 0.25

    # Trained, not just loadable: on unseen scenes most shapes are found with the right class.
    detector = yolo_ray.load(path, device="cpu")
    detector.conf = 0.25
    found = total = 0
    for i in range(24):
        image, objects = render_scene(np.random.default_rng([12345, i]), 160)
        pred = detector(np.ascontiguousarray(image[..., ::-1]), size=160).xyxy[0]
        truth = torch.tensor([o.xyxy for o in objects], dtype=torch.float32)
        iou = box_iou(truth, pred[:, :4])
        same_class = torch.tensor([o.cls for o in objects])[:, None] == pred[:, 5].long()[None]
        found += int(((iou > 0.5) & same_class).any(1).sum())
        total += len(objects)
    assert found / total > 0.5, f"{found}/{total} shapes found"
