"""The `yolov5` export: a checkpoint upstream YOLOv5 loads as its own (detect.py, val.py, export.py, hub
'custom'), i.e. a pickled DetectionModel tree under upstream's module paths and attribute names.

No upstream code is imported. Our modules are rebuilt as stand-in objects carrying the attributes
upstream's classes have, and a pickler writes each stand-in's class under the upstream name
(`models.common.Conv`, ...). torch's own modules (Conv2d, BatchNorm2d, ...) pickle as themselves.
"""

from __future__ import annotations

import copy
import functools
import io
import pickle
import pickletools
import types
import zipfile
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_ray.models import C3, SPPF, Bottleneck, Concat, Conv, Detect, DetectionModel

UPSTREAM_NAMES: dict[type, tuple[str, str]] = {
    DetectionModel: ("models.yolo", "DetectionModel"),
    Detect: ("models.yolo", "Detect"),
    Conv: ("models.common", "Conv"),
    Bottleneck: ("models.common", "Bottleneck"),
    C3: ("models.common", "C3"),
    SPPF: ("models.common", "SPPF"),
    Concat: ("models.common", "Concat"),
}
# What such a file may name besides upstream's classes: torch, containers and numbers (protocol 2
# spells builtins the Python 2 way, __builtin__.set, as every torch.save does).
ALLOWED_GLOBAL_ROOTS = ("torch", "collections", "builtins", "__builtin__", "numpy", "_codecs")


@functools.cache
def _stand_in(module: str, name: str) -> type:
    """A bare class whose instances hold one upstream module's attributes; pickled as module.name."""
    return type(name, (), {"__module__": __name__, "upstream": (module, name)})


def _layer_type(value: Any) -> Any:
    """parse_model's `type` attribute as upstream spells it ('models.common.Conv'), other values unchanged."""
    if not isinstance(value, str):
        return value
    for cls, (module, name) in UPSTREAM_NAMES.items():
        if value == f"{cls.__module__}.{cls.__qualname__}":
            return f"{module}.{name}"
    return value


def _plain_stride(state: dict[str, Any]) -> None:
    """Our stride is a non-persistent buffer; upstream's a plain tensor attribute."""
    buffers = OrderedDict(state["_buffers"])
    stride = buffers.pop("stride")
    state["_buffers"] = buffers
    state["_non_persistent_buffers_set"] = set(state["_non_persistent_buffers_set"]) - {"stride"}
    state["stride"] = stride


def upstream_tree(module: nn.Module) -> Any:
    """A copy of the module tree in which our classes are stand-ins with upstream's attributes."""
    children = OrderedDict(
        (name, upstream_tree(child) if child is not None else None) for name, child in module._modules.items()
    )
    cls = type(module)
    if cls not in UPSTREAM_NAMES:  # a torch module: itself, with converted children
        clone = copy.copy(module)
        clone.__dict__ = dict(module.__dict__, _modules=children)
        if "type" in clone.__dict__:
            clone.type = _layer_type(clone.type)
        return clone
    state = dict(module.__dict__, _modules=children)
    if "type" in state:
        state["type"] = _layer_type(state["type"])
    if cls is DetectionModel:
        _plain_stride(state)
        state["inplace"] = True
    elif cls is Detect:
        _plain_stride(state)
        state["grid"] = [torch.empty(0) for _ in range(module.nl)]
        state["anchor_grid"] = [torch.empty(0) for _ in range(module.nl)]
        state["inplace"] = True
    stand_in = _stand_in(*UPSTREAM_NAMES[cls])
    obj = stand_in.__new__(stand_in)
    obj.__dict__.update(state)
    return obj


class UpstreamPickler(pickle._Pickler):
    """The pure-Python pickler (its save_global can be overridden) writing stand-in classes by upstream names."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        target = getattr(obj, "upstream", None) if isinstance(obj, type) else None
        if target is None:
            super().save_global(obj, name)
            return
        module, qualname = target
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)


UPSTREAM_PICKLE = types.ModuleType("yolo_ray_upstream_pickle")
UPSTREAM_PICKLE.Pickler = UpstreamPickler


def save_upstream_checkpoint(model: DetectionModel, path: Path, meta: dict[str, Any]) -> Path:
    """Write upstream v7.0's stripped checkpoint layout: fp16 model, no EMA or optimizer."""
    model = copy.deepcopy(model).half().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    ckpt = {
        "epoch": -1,
        "best_fitness": meta.get("best_fitness"),
        "model": upstream_tree(model),
        "ema": None,
        "updates": None,
        "optimizer": None,
        "opt": meta.get("opt") or {},
        "git": None,
        "date": datetime.now().isoformat(),
    }
    torch.save(ckpt, path, pickle_module=UPSTREAM_PICKLE)
    return path


def pickle_globals(path: Path) -> set[str]:
    """Every 'module.name' global the pickle inside a torch zip checkpoint names (read with pickletools)."""
    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
    return names


def foreign_globals(path: Path) -> list[str]:
    """Globals outside upstream's classes and torch/numpy/builtins/collections: must be none."""
    upstream = {f"{m}.{n}" for m, n in UPSTREAM_NAMES.values()}
    return sorted(g for g in pickle_globals(path) if g not in upstream and g.split(".")[0] not in ALLOWED_GLOBAL_ROOTS)
