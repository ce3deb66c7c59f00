"""Weights from disk: our checkpoints (tensors and plain types) and upstream YOLOv5 .pt files.

Upstream files pickle whole nn.Module trees, and plain unpickling imports and runs whatever a file
names. Those files go through a restricted unpickler instead: upstream's module classes become inert
records (no upstream code is needed or imported), tensors are rebuilt by torch's own functions, and
any other global is refused before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import functools
import logging
import pathlib
import pickle
import types
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

from yolo_ray.config import UserError
from yolo_ray.filetypes import refuse_other_kind, sniff
from yolo_ray.official import resolve_weights

LOGGER = logging.getLogger(__name__)

# What torch.load may be handed as a .pt: a checkpoint, or something unknown torch then names (a text file too).
CHECKPOINT_KINDS = ("a PyTorch checkpoint", "a YAML or text file", None)

# Module classes an upstream detection checkpoint pickles (v7.0, plus v5-era Focus/SPP/BottleneckCSP).
MODULE_CLASSES = frozenset(
    {
        ("models.yolo", "DetectionModel"),
        ("models.yolo", "Model"),
        ("models.yolo", "Detect"),
        *(
            ("models.common", n)
            for n in ("Conv", "Bottleneck", "C3", "SPPF", "Concat", "SPP", "Focus", "BottleneckCSP")
        ),
        *(("torch.nn.modules.activation", n) for n in ("SiLU", "LeakyReLU", "Hardswish", "ReLU")),
        ("torch.nn.modules.conv", "Conv2d"),
        ("torch.nn.modules.batchnorm", "BatchNorm2d"),
        ("torch.nn.modules.linear", "Identity"),
        ("torch.nn.modules.container", "Sequential"),
        ("torch.nn.modules.container", "ModuleList"),
        ("torch.nn.modules.upsampling", "Upsample"),
        ("torch.nn.modules.pooling", "MaxPool2d"),
    }
)


def _allowed_callables() -> dict[tuple[str, str], Any]:
    """Globals handed out as the real objects: constructors of tensors, containers and plain values."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed = {
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
        ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
        ("torch", "Tensor"): torch.Tensor,
        ("torch._tensor", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): nn.Parameter,
        ("torch", "device"): torch.device,
        ("torch", "Size"): torch.Size,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles store bytes as latin-1 text
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for module in ("pathlib", "pathlib._local"):
        for name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"):
            allowed[(module, name)] = getattr(pathlib, name)
    return allowed


ALLOWED_CALLABLES = _allowed_callables()


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global (or an action) outside the allow-list; nothing it names has run."""

    def __init__(self, name: str):
        super().__init__(f"refused global {name}")
        self.name = name


class PickledModule:
    """An inert stand-in for a pickled nn.Module: it keeps the pickled attributes and does nothing else."""

    source = ""  # the upstream class, "module.Name"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.source}: unexpected pickled state {type(state).__name__}")
        self.__dict__.update(state)


@functools.cache
def _record_class(module: str, name: str) -> type[PickledModule]:
    return type(name, (PickledModule,), {"source": f"{module}.{name}"})


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler (its opcodes can be overridden) that resolves only allow-listed globals."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def load_build(self) -> None:
        # BUILD on a class or function would set attributes on it (e.g. patch torch.Tensor): instances only.
        target = self.stack[-2]
        if isinstance(target, (type, types.FunctionType, types.BuiltinFunctionType)):
            raise RefusedGlobal(f"attribute assignment on {getattr(target, '__qualname__', target)!s}")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles spell some Python 3 names the Python 2 way (__builtin__.set).
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in MODULE_CLASSES:
            return _record_class(module, name)
        if (module, name) in ALLOWED_CALLABLES:
            return ALLOWED_CALLABLES[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise RefusedGlobal(f"{module}.{name}")


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


# torch.load takes a pickle *module*; it uses .Unpickler (zip files) and .load (legacy files).
RESTRICTED_PICKLE = types.ModuleType("yolo_ray_restricted_pickle")
RESTRICTED_PICKLE.Unpickler = RestrictedUnpickler
RESTRICTED_PICKLE.load = _restricted_load


def load_checkpoint(path: str | Path, prefer: str = "ema") -> dict[str, Any]:
    """{"state_dict": float32 weights, "yaml", "names", "meta"}.

    The weights are `prefer` ("ema" or "model") when the file holds them, else the other one: inference
    prefers the EMA (upstream attempt_load), training from --weights the raw model (upstream train.py
    reads ckpt['model']); the two differ only in unstripped checkpoints. Our checkpoints load with
    torch.load(weights_only=True); upstream pickled-module files through the restricted unpickler.
    Bare state dicts are accepted too. `path` may be an official name (see yolo_ray.official).
    """
    path = resolve_weights(path)  # official names (yolov5s.pt) are downloaded on first use
    refuse_other_kind(path, "a PyTorch .pt checkpoint", CHECKPOINT_KINDS)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        ckpt = _load_upstream(path)  # holds pickled objects, not only tensors
    except Exception as e:
        raise UserError(_unreadable(path, e)) from None
    return _interpret(ckpt, path, prefer)


def _unreadable(path: Path, e: BaseException) -> str:
    kind = sniff(path)
    what = f"; it is {kind}" if kind not in (None, "a PyTorch checkpoint") else ""
    return f"{path}: not a readable PyTorch checkpoint ({_first_line(e)}){what}"


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The float32 state dict of a checkpoint (see load_checkpoint)."""
    return load_checkpoint(path)["state_dict"]


def transfer_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], exclude: tuple[str, ...] | list[str] = ()
) -> tuple[int, int]:
    """Load the entries whose key and shape match the model, skipping keys containing any `exclude` string.

    Returns (transferred, total entries of the model's state dict), as upstream's "Transferred x/y items".
    """
    own = model.state_dict()
    matched = {
        k: v for k, v in state_dict.items() if k in own and not any(x in k for x in exclude) and v.shape == own[k].shape
    }
    model.load_state_dict(matched, strict=False)
    LOGGER.info(f"Transferred {len(matched)}/{len(own)} items")
    return len(matched), len(own)


def _load_upstream(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=RESTRICTED_PICKLE)
    except RefusedGlobal as e:
        raise UserError(
            f"{path}: refused to load: the pickle asks for {e.name}, which is not on the allow-list "
            "of a YOLOv5 detection checkpoint (a malicious or unsupported file)"
        ) from None
    except Exception as e:
        raise UserError(_unreadable(path, e)) from None


def _interpret(ckpt: Any, path: Path, prefer: str) -> dict[str, Any]:
    if isinstance(ckpt, PickledModule):  # torch.save(model) rather than a checkpoint dict
        ckpt = {"model": ckpt}
    if not isinstance(ckpt, Mapping) or not ckpt:
        raise UserError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return {"state_dict": _float32(ckpt), "yaml": None, "names": None, "meta": {}}

    other = "model" if prefer == "ema" else "ema"
    weights = ckpt.get(prefer) if ckpt.get(prefer) is not None else ckpt.get(other)
    yaml, names = ckpt.get("yaml"), ckpt.get("names")
    if isinstance(weights, PickledModule):
        state_dict = _module_state_dict(weights, path)
        yaml, names = weights.__dict__.get("yaml", yaml), weights.__dict__.get("names", names)
    elif isinstance(weights, Mapping) and all(isinstance(v, torch.Tensor) for v in weights.values()):
        state_dict = dict(weights)
    else:
        raise UserError(f"{path}: no model weights (neither 'ema' nor 'model' holds a model or a state dict)")
    meta = {k: _plain(v) for k, v in ckpt.items() if k not in ("model", "ema", "yaml", "names", "optimizer")}
    return {
        "state_dict": _float32(state_dict),
        "yaml": _plain_or_none(yaml),
        "names": _plain_or_none(names),
        "meta": {k: v for k, v in meta.items() if v is not _NOT_PLAIN},
    }


def _module_state_dict(root: PickledModule, path: Path) -> dict[str, torch.Tensor]:
    """Parameters then persistent buffers then children, recursively: nn.Module.state_dict's order."""
    out: dict[str, torch.Tensor] = {}

    def walk(record: PickledModule, prefix: str) -> None:
        attrs = record.__dict__
        non_persistent = attrs.get("_non_persistent_buffers_set") or set()
        for name, p in (attrs.get("_parameters") or {}).items():
            if p is not None:
                out[prefix + name] = p
        for name, b in (attrs.get("_buffers") or {}).items():
            if b is not None and name not in non_persistent:
                out[prefix + name] = b
        for name, child in (attrs.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PickledModule):
                raise UserError(f"{path}: submodule {prefix + name} is a {type(child).__name__}, not a module")
            walk(child, f"{prefix}{name}.")

    walk(root, "")
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{path}: entries that are not tensors: {', '.join(bad[:5])}")
    return out


def _float32(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().float() if v.is_floating_point() else v.detach() for k, v in state_dict.items()}


_NOT_PLAIN = object()


def _plain(v: Any) -> Any:
    """v as str/int/float/bool/None and lists/dicts of them (numpy numbers and paths converted), or _NOT_PLAIN."""
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist() if v.dtype.kind in "biuf" else _NOT_PLAIN
    if isinstance(v, PurePath):
        return str(v)
    if isinstance(v, (list, tuple)):
        items = [_plain(x) for x in v]
        return _NOT_PLAIN if any(x is _NOT_PLAIN for x in items) else items
    if isinstance(v, Mapping):
        items = {k: _plain(x) for k, x in v.items()}
        plain_keys = all(isinstance(k, (str, int)) for k in items)
        return items if plain_keys and all(x is not _NOT_PLAIN for x in items.values()) else _NOT_PLAIN
    return _NOT_PLAIN


def _plain_or_none(v: Any) -> Any:
    v = _plain(v)
    return None if v is _NOT_PLAIN else v


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
