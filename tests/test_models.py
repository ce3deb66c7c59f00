"""YOLOv5 v7.0 models: sizes, keys, forward/decode, bias init, fusing, checkpoints and weight transfer."""

from __future__ import annotations

import copy
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from yolo_ray.config import UserError
from yolo_ray.models import (
    C3,
    SPPF,
    Bottleneck,
    Concat,
    Conv,
    Detect,
    DetectionModel,
    build_model,
    load_checkpoint,
    load_weights,
    transfer_weights,
)
from yolo_ray.models.yolo import parse_model, resolve_cfg, validate_cfg

COCO_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


@pytest.fixture(scope="module")
def nano3() -> DetectionModel:
    torch.manual_seed(0)
    return build_model("yolov5n", nc=3)


@pytest.fixture()
def model(nano3: DetectionModel) -> DetectionModel:
    return copy.deepcopy(nano3)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "size, params, c3_depth",
    [
        ("n", 1_872_157, 3),
        ("s", 7_235_389, 3),
        ("m", 21_190_557, 6),
        ("l", 46_563_709, 9),
        ("x", 86_749_405, 12),
    ],
)
def test_parameter_counts_match_upstream(size, params, c3_depth):
    # The layers alone (no stride-probe forward, the slow part for l/x); yolov5s is built whole below.
    cfg, source = resolve_cfg(f"yolov5{size}")
    validate_cfg(cfg, source)
    layers, _ = parse_model(cfg, [3], source)
    assert sum(p.numel() for p in layers.parameters()) == params
    # layer 6 is C3 with number 9: max(round(9 * depth_multiple), 1) bottlenecks inside
    assert len(layers[6].m) == c3_depth


@pytest.mark.timeout(30)
def test_state_dict_keys_and_shapes_match_upstream_yolov5s():
    model = build_model("yolov5s.yaml")
    assert sum(p.numel() for p in model.parameters()) == 7_235_389
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    sd = model.state_dict()
    assert len(sd) == 349  # upstream logs "Transferred 349/349 items" for yolov5s.pt
    keys = list(sd)
    assert keys[:6] == [
        "model.0.conv.weight",
        "model.0.bn.weight",
        "model.0.bn.bias",
        "model.0.bn.running_mean",
        "model.0.bn.running_var",
        "model.0.bn.num_batches_tracked",
    ]
    assert keys[-7:] == [
        "model.24.anchors",
        "model.24.m.0.weight",
        "model.24.m.0.bias",
        "model.24.m.1.weight",
        "model.24.m.1.bias",
        "model.24.m.2.weight",
        "model.24.m.2.bias",
    ]
    assert sd["model.0.conv.weight"].shape == (32, 3, 6, 6)  # 64 * 0.5, 6x6 stride-2 stem
    assert sd["model.9.cv2.conv.weight"].shape == (512, 1024, 1, 1)  # SPPF concat of 4 x 256
    assert sd["model.8.m.0.cv2.conv.weight"].shape == (256, 256, 3, 3)
    assert sd["model.24.anchors"].shape == (3, 3, 2)
    assert [sd[f"model.24.m.{i}.weight"].shape for i in range(3)] == [(255, c, 1, 1) for c in (128, 256, 512)]


@pytest.mark.timeout(20)
def test_conv_bn_settings_and_anchors_in_grid_units(model):
    bn = model.model[0].bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.03)
    assert isinstance(model.model[0].act, nn.SiLU) and model.model[0].act.inplace
    detect = model.model[-1]
    assert isinstance(detect, Detect) and (detect.nc, detect.no, detect.nl, detect.na) == (3, 8, 3, 3)
    pixels = detect.anchors * detect.stride.view(-1, 1, 1)
    assert torch.equal(pixels, torch.tensor(COCO_ANCHORS, dtype=torch.float32).view(3, 3, 2))
    assert model.yaml["nc"] == 3 and model.nc == 3 and model.names == ["0", "1", "2"]
    assert model.save == [4, 6, 10, 14, 17, 20, 23]


@pytest.mark.timeout(20)
def test_detect_bias_initialisation(model):
    detect = model.model[-1]
    for conv, s in zip(detect.m, (8, 16, 32)):
        b = conv.bias.detach().view(3, -1)
        bound = 1 / math.sqrt(conv.in_channels)  # PyTorch's default uniform bias init, before the prior shift
        obj_prior = math.log(8 / (640 / s) ** 2)
        cls_prior = math.log(0.6 / (3 - 0.99))
        assert (b[:, 4] - obj_prior).abs().max() <= bound
        assert (b[:, 5:] - cls_prior).abs().max() <= bound
        assert (b[:, :4]).abs().max() <= bound


@pytest.mark.timeout(20)
def test_train_and_eval_forward_shapes_and_decode(model):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 96)
    maps = model.train()(x)
    assert [tuple(m.shape) for m in maps] == [(2, 3, 8, 12, 8), (2, 3, 4, 6, 8), (2, 3, 2, 3, 8)]

    model.eval()
    with torch.no_grad():
        pred, raw = model(x)
    assert pred.shape == (2, 3 * (96 + 24 + 6), 8)
    assert len(raw) == 3 and raw[0].shape == (2, 3, 8, 12, 8)
    # decode one cell of level 0 by hand: anchor 2, row 5, column 7
    a, gy, gx = 2, 5, 7
    s = raw[0][1, a, gy, gx].sigmoid()
    xy = (s[:2] * 2 - 0.5 + torch.tensor([gx, gy], dtype=torch.float32)) * 8
    wh = (s[2:4] * 2) ** 2 * torch.tensor(COCO_ANCHORS[0][2 * a : 2 * a + 2], dtype=torch.float32)
    expected = torch.cat((xy, wh, s[4:]))
    torch.testing.assert_close(pred[1, (a * 8 + gy) * 12 + gx], expected)
    # a second size rebuilds the cached grids
    with torch.no_grad():
        pred2, _ = model(torch.rand(1, 3, 32, 32))
    assert pred2.shape == (1, 3 * (16 + 4 + 1), 8)
    assert 0 < pred2[0, -1, 0] < 32 + 16  # last cell of P5 is centred near pixel 16


@pytest.mark.timeout(20)
def test_fused_model_gives_the_same_outputs(model):
    gen = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics so fusing has something to fold
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
    x = torch.rand(1, 3, 64, 64, generator=gen)
    model.eval()
    with torch.no_grad():
        before, _ = model(x)
        after, _ = model.fuse()(x)
    assert not any(".bn." in k for k in model.state_dict())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


# A two-level toy layout (both levels at stride 8) that builds in a fraction of yolov5n's time.
TOY_CFG = {
    "nc": 80,
    "depth_multiple": 0.33,
    "width_multiple": 0.25,
    "anchors": 2,
    "backbone": [
        [-1, 1, "Conv", [64, 6, 2, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 3, "C3", [256]],
        [-1, 1, "SPPF", [256, 5]],
    ],
    "head": [[[3, 4], 1, "Detect", ["nc", "anchors"]]],
}


@pytest.mark.timeout(20)
def test_nc_and_anchor_overrides():
    m = build_model(TOY_CFG, nc=5)
    detect = m.model[-1]
    assert detect.anchors.shape == (2, 2, 2) and detect.na == 2
    assert detect.m[0].weight.shape == (2 * 10, 64, 1, 1)
    assert m.stride.tolist() == [8.0, 8.0] and m.yaml["ch"] == 3 and m.yaml["nc"] == 5
    assert TOY_CFG["nc"] == 80  # the caller's dict is left alone
    # a hyp's float anchor count rounds; a list replaces the yaml anchors
    assert build_model(TOY_CFG, anchors=4.0).model[-1].anchors.shape == (2, 4, 2)
    # equal mean areas: with equal strides any other order would make check_anchor_order flip the levels
    custom = [[5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5]]
    d = build_model(TOY_CFG, anchors=custom).model[-1]
    assert torch.equal(d.anchors * 8, torch.tensor(custom, dtype=torch.float32).view(2, 3, 2))


@pytest.mark.timeout(20)
def test_bad_cfgs_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="yolov9q.*not found.*yolov5n, yolov5s"):
        build_model("yolov9q")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "nc: 80\ndepth_multiple: 1\nwidth_multiple: 1\nanchors: 3\n"
        "backbone: [[-1, 1, Focus2, [64]]]\nhead: [[[0], 1, Detect, [nc, anchors]]]\n"
    )
    with pytest.raises(UserError, match=r"bad.yaml: layer 0 module 'Focus2' is not supported"):
        build_model(str(bad))
    bad.write_text("nc: 80\ndepth_multiple: 1\nwidth_multiple: 1\n")
    with pytest.raises(UserError, match=r"bad.yaml: missing key 'anchors'"):
        build_model(bad)
    bad.write_text(
        "nc: 80\ndepth_multiple: 1\nwidth_multiple: 1\nanchors: 3\n"
        "backbone: [[-1, 1, Conv, [16, 3, 2]], [[-1, 5], 1, Concat, [1]]]\n"
        "head: [[[1], 1, Detect, [nc, anchors]]]\n"
    )
    with pytest.raises(UserError, match=r"bad.yaml: layer 1 'from' must name earlier layers"):
        build_model(bad)
    bad.write_text("nc: [\n")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML"):
        build_model(bad)


def _our_checkpoint(model: DetectionModel, ema: DetectionModel) -> dict:
    half = lambda m: {k: v.half() if v.is_floating_point() else v for k, v in m.state_dict().items()}  # noqa: E731
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return {
        "epoch": 4,
        "best_fitness": 0.25,
        "model": half(model),
        "ema": half(ema),
        "updates": 40,
        "optimizer": optimizer.state_dict(),
        "opt": {"imgsz": 64},
        "yaml": model.yaml,
        "names": {0: "a", 1: "b", 2: "c"},
        "date": "2024-01-01",
    }


@pytest.mark.timeout(20)
def test_our_checkpoint_loads_ema_as_float32(model, tmp_path):
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.5)
    path = tmp_path / "last.pt"
    torch.save(_our_checkpoint(model, ema), path)
    ckpt = load_checkpoint(path)
    assert ckpt["yaml"] == model.yaml and ckpt["names"] == {0: "a", 1: "b", 2: "c"}
    assert ckpt["meta"] == {"epoch": 4, "best_fitness": 0.25, "updates": 40, "opt": {"imgsz": 64}, "date": "2024-01-01"}
    sd = ckpt["state_dict"]
    assert list(sd) == list(ema.state_dict())
    w = sd["model.24.m.0.weight"]
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, ema.state_dict()["model.24.m.0.weight"].half().float())
    assert sd["model.0.bn.num_batches_tracked"].dtype == torch.long
    assert load_weights(path).keys() == sd.keys()


def _fake_upstream_classes() -> dict[type, type]:
    """Subclasses named and placed like upstream's (models.common.Conv, models.yolo.DetectionModel, ...)."""
    mapping = {}
    for module_name, classes in (
        ("models.common", (Conv, Bottleneck, C3, SPPF, Concat)),
        ("models.yolo", (Detect, DetectionModel)),
    ):
        module = types.ModuleType(module_name)
        for cls in classes:
            fake = type(cls.__name__, (cls,), {"__module__": module_name})
            setattr(module, cls.__name__, fake)
            mapping[cls] = fake
        sys.modules[module_name] = module
    sys.modules["models"] = types.ModuleType("models")
    return mapping


def _save_like_upstream(path, model: DetectionModel, ema: DetectionModel | None) -> None:
    """torch.save of whole pickled modules in fp16, as upstream's train.py / strip_optimizer write them."""
    try:
        mapping = _fake_upstream_classes()
        trees = [copy.deepcopy(m).half() if m is not None else None for m in (model, ema)]
        for tree in trees:
            for m in tree.modules() if tree is not None else ():
                m.__class__ = mapping.get(type(m), type(m))
        torch.save(
            {
                "epoch": -1,
                "best_fitness": np.array([0.42]),
                "model": trees[0],
                "ema": trees[1],
                "updates": None,
                "optimizer": None,
                "opt": {"weights": "yolov5s.pt"},
                "date": "2022-11-22",
            },
            path,
        )
    finally:
        for name in ("models.common", "models.yolo", "models"):
            sys.modules.pop(name, None)


@pytest.mark.timeout(20)
def test_upstream_pickled_checkpoint_loads_without_upstream_code(model, tmp_path):
    model.names = {0: "cat", 1: "dog", 2: "car"}
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(-1)
    path = tmp_path / "yolov5n_upstream.pt"
    _save_like_upstream(path, model, ema)
    with pytest.raises(pickle.UnpicklingError):  # really a pickled-module file, not plain tensors
        torch.load(path, weights_only=True)

    ckpt = load_checkpoint(path)
    assert "models" not in sys.modules and "models.yolo" not in sys.modules
    assert ckpt["yaml"] == model.yaml and ckpt["names"] == {0: "cat", 1: "dog", 2: "car"}
    assert ckpt["meta"] == {
        "epoch": -1,
        "best_fitness": [0.42],
        "updates": None,
        "opt": {"weights": "yolov5s.pt"},
        "date": "2022-11-22",
    }
    expected = {k: v.half().float() if v.is_floating_point() else v for k, v in ema.state_dict().items()}
    assert list(ckpt["state_dict"]) == list(expected)
    for k, v in expected.items():
        assert ckpt["state_dict"][k].dtype == v.dtype and torch.equal(ckpt["state_dict"][k], v), k

    _save_like_upstream(path, model, None)  # stripped release files: ema is None, take model
    torch.testing.assert_close(
        load_weights(path)["model.24.m.2.weight"], model.state_dict()["model.24.m.2.weight"].half().float()
    )


class _Payload:
    """Unpickling this calls fn(arg): what a malicious checkpoint would do."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.timeout(20)
def test_malicious_pickles_are_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pt"
    with open(raw, "wb") as f:
        pickle.dump(_Payload(os.system, f"touch {marker}"), f, protocol=2)
    with pytest.raises(UserError, match=r"raw.pt: refused to load: .*\.system"):
        load_checkpoint(raw)
    assert not marker.exists()

    zipped = tmp_path / "zipped.pt"
    torch.save({"epoch": -1, "model": _Payload(eval, f"open({str(marker)!r}, 'w').close()")}, zipped)
    with pytest.raises(UserError, match=r"zipped.pt: refused to load: .*builtins\.eval"):
        load_weights(zipped)
    assert not marker.exists()

    with open(raw, "rb") as f:  # the payload is live: plain unpickling does run it
        pickle.load(f)
    assert marker.exists()


@pytest.mark.timeout(20)
def test_pickle_cannot_patch_allowed_functions(tmp_path):
    # GLOBAL of an allowed function, then BUILD with slot state {"__doc__": "patched"}: a setattr on it
    patch = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x07\x00\x00\x00__doc__X\x07\x00\x00\x00patcheds\x86b."
    path = tmp_path / "patch.pt"
    path.write_bytes(patch)
    doc = torch._utils._rebuild_tensor_v2.__doc__
    with pytest.raises(UserError, match="patch.pt: refused to load: .*attribute assignment on _rebuild_tensor_v2"):
        load_checkpoint(path)
    assert torch._utils._rebuild_tensor_v2.__doc__ == doc != "patched"


@pytest.mark.timeout(20)
def test_unreadable_weights_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="missing.pt: weights file not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(UserError, match="junk.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(junk)


@pytest.mark.timeout(30)
def test_transfer_into_another_nc_keeps_matching_keys(model):
    source = build_model("yolov5n").state_dict()  # nc=80: the Detect convs have other shapes
    before = model.state_dict()["model.24.m.0.weight"].clone()
    assert transfer_weights(model, source) == (343, 349)
    sd = model.state_dict()
    assert torch.equal(sd["model.5.conv.weight"], source["model.5.conv.weight"])
    assert torch.equal(sd["model.24.anchors"], source["model.24.anchors"])
    assert torch.equal(sd["model.24.m.0.weight"], before)

    with torch.no_grad():
        model.model[-1].anchors.mul_(2)
    assert transfer_weights(model, source, exclude=["anchor"]) == (342, 349)
    assert torch.equal(model.state_dict()["model.24.anchors"], source["model.24.anchors"] * 2)
