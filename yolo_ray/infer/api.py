"""The Python API, as torch.hub.load('ultralytics/yolov5', ...) gives it: an AutoShape-like model taking
paths, numpy arrays, PIL images or lists of them, and Detections results.

    model = yolo_ray.load("runs/train/exp/weights/best.pt")
    model.conf = 0.4
    results = model(["a.jpg", cv2.imread("b.jpg")[..., ::-1]], size=640)   # numpy arrays are RGB
    results.print(); results.pandas().xyxy[0]; results.save(); results.crop()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from yolo_ray.config import UserError
from yolo_ray.filetypes import sniff
from yolo_ray.official import is_url
from yolo_ray.infer.backends import Backend, load_backend, weights_file
from yolo_ray.infer.detections import Detections
from yolo_ray.infer.predictor import predict
from yolo_ray.models.loading import class_names, model_from_checkpoint
from yolo_ray.models import build_model, load_weights, transfer_weights
from yolo_ray.official import official_name

EXPORT_SUFFIXES = (".onnx", ".torchscript", ".xml")


class AutoShape(nn.Module):
    """A detection model that letterboxes any images in, runs NMS and scales boxes back to each image.

    Inference settings are attributes, as upstream's: conf, iou, agnostic, multi_label, classes, max_det, amp.
    """

    conf = 0.25  # NMS confidence threshold
    iou = 0.45  # NMS IoU threshold
    agnostic = False  # NMS across classes
    multi_label = False  # several labels per box
    classes: list[int] | None = None  # keep only these class ids
    max_det = 1000  # detections per image
    amp = False  # CUDA automatic mixed precision

    def __init__(self, model: Backend):
        super().__init__()
        self.model = model.eval()
        self.names: dict[int, str] = model.names
        self.nc: int = model.nc
        self.stride: int = model.stride

    @torch.no_grad()
    def forward(self, ims: Any, size: int | tuple[int, int] = 640, augment: bool = False) -> Detections | torch.Tensor:
        """ims: a path, a numpy HWC RGB uint8 array, a PIL image, or a list of those; a BCHW float tensor
        in [0, 1] goes to the model as is and its predictions (batch, boxes, 5 + nc) come back, before NMS.
        augment: test-time augmentation (flips and scales, as upstream)."""
        if isinstance(ims, torch.Tensor):
            return self._forward_tensor(ims, augment)
        size = _check_size(size)
        items = ims if isinstance(ims, (list, tuple)) else [ims]
        if not items:
            raise UserError("no images given")
        arrays, files = [], []
        for i, item in enumerate(items):
            array, name = _as_rgb(item, i)
            arrays.append(array)
            files.append(name)
        preds, times, shape = predict(
            self.model,
            arrays,
            size,
            self.conf,
            self.iou,
            self.classes,
            self.agnostic,
            self.multi_label,
            self.max_det,
            amp=self.amp,
            augment=augment,
        )
        return Detections(arrays, preds, files, times, self.names, shape)

    def _forward_tensor(self, x: torch.Tensor, augment: bool) -> torch.Tensor:
        if x.ndim != 4:
            raise UserError(f"a tensor input must be (batch, channels, height, width), got shape {tuple(x.shape)}")
        try:
            return self.model(x.to(self.model.device).float(), augment=augment)
        except RuntimeError as e:  # a shape the layers cannot take (channels, a size off the stride grid)
            raise UserError(
                f"a tensor of shape {tuple(x.shape)} does not fit the model ({str(e).splitlines()[0][:200]})"
            ) from None


def _check_size(size: Any) -> int | tuple[int, int]:
    """size: one positive integer, or (height, width) of them."""
    sides = list(size) if isinstance(size, (list, tuple)) else [size]
    ok = len(sides) in (1, 2) and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sides)
    if not ok:
        raise UserError(f"size: expected a positive integer or (height, width), got {size!r}")
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])


def _as_rgb(item: Any, index: int) -> tuple[np.ndarray, str]:
    """(HWC uint8 RGB array, file name for saving) of one input."""
    name = f"image{index}.jpg"
    if isinstance(item, (str, Path)):
        path = Path(item)
        if str(item).startswith(("http:", "https:")):
            raise UserError(f"{item}: URLs are not fetched; download the image and pass its path")
        if path.is_dir():
            raise UserError(f"{path}: is a folder, expected an image file")
        if not path.is_file():
            raise UserError(f"{path}: image not found")
        try:
            item = Image.open(path)
            item.load()
        except OSError as e:
            kind = sniff(path)
            raise UserError(f"{path}: not a readable image ({e}){f'; it is {kind}' if kind else ''}") from None
        name = path.with_suffix(".jpg").name
    if isinstance(item, Image.Image):
        name = Path(getattr(item, "filename", "") or name).with_suffix(".jpg").name
        item = np.asarray(ImageOps.exif_transpose(item).convert("RGB"))
    if not isinstance(item, np.ndarray):
        raise UserError(f"input {index}: expected a path, numpy array or PIL image, got {type(item).__name__}")
    if item.ndim == 2:
        item = np.repeat(item[..., None], 3, axis=2)
    elif item.ndim == 3 and item.shape[0] in (1, 3) and item.shape[2] not in (1, 3, 4):
        item = item.transpose(1, 2, 0)  # CHW given
    if item.ndim != 3 or item.shape[2] not in (1, 3, 4):
        raise UserError(f"input {index}: expected an HWC image array, got shape {item.shape}")
    if item.shape[2] == 1:
        item = np.repeat(item, 3, axis=2)
    item = item[..., :3]  # drop alpha
    if item.dtype != np.uint8:
        item = np.clip(item * 255 if item.max() <= 1 else item, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(item), name


def _check_load_options(model: Any, classes: Any, channels: Any) -> None:
    if not isinstance(model, (str, Path)):
        raise UserError(f"model: expected a path or a name, got {type(model).__name__}")
    if classes is not None and (not isinstance(classes, int) or isinstance(classes, bool) or classes < 1):
        raise UserError(f"classes: expected a positive integer, got {classes!r}")
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise UserError(f"channels: expected a positive integer, got {channels!r}")


def _device(device: str | torch.device | None) -> torch.device:
    """device as torch names it ('cpu', 'cuda:0', 0 or '0' for a GPU index), one that exists here."""
    if device is None:
        return default_device()
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        device = f"cuda:{device}"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"device: expected 'cpu', 'cuda', 'cuda:N' or a GPU index, got {device!r}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"device {str(device)!r}: CUDA device is not available on this machine")
    return device


def default_device() -> torch.device:
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def load(
    model: str | Path = "yolov5s",
    classes: int | None = None,
    channels: int = 3,
    weights: str | Path | None = None,
    autoshape: bool = True,
    device: str | torch.device | None = None,
    fuse: bool = True,
) -> nn.Module:
    """A model for inference, as torch.hub.load('ultralytics/yolov5', ...).

    model: a .pt checkpoint (ours or upstream's), an export (.onnx, .torchscript, *_openvino_model), an
    official name ("yolov5s" or "yolov5s.pt": upstream's pretrained weights, downloaded once into the cache,
    or one clear error when that cannot be done), or a model yaml ("yolov5s.yaml"; a bare name too when
    `weights` is given) for a fresh model. classes / channels: build for that many (the checkpoint's
    architecture, or the yaml's); the weights of `model` (a .pt) or of `weights` (a .pt or an official
    name) are transferred where shapes match. autoshape: wrap in AutoShape (images in, Detections out);
    else the bare PyTorch model. Fused by default.
    """
    _check_load_options(model, classes, channels)
    device = _device(device)
    if is_url(model):
        model = weights_file(model)  # downloaded once into the cache
    source = Path(model)
    if source.is_file() and source.suffix not in (".pt", *EXPORT_SUFFIXES):
        kind = sniff(source)  # a model file named unlike one (best.bin) is not a yaml: say what it is
        if kind not in (None, "a YAML or text file"):
            raise UserError(f"{model}: is {kind}, expected a .pt checkpoint, an export or a model yaml")
    if source.suffix in EXPORT_SUFFIXES or source.name.endswith("_openvino_model"):
        if not autoshape:
            raise UserError(f"{model}: autoshape=False gives a PyTorch model; exports load with autoshape=True")
        return AutoShape(load_backend(source, device))
    if source.suffix == ".pt" or (official_name(model) and not weights):
        net = model_from_checkpoint(weights_file(source))
        if (classes and classes != net.nc) or channels != net.yaml.get("ch", 3):
            state = net.state_dict()
            net = build_model({**net.yaml, "ch": channels}, nc=classes or net.nc)
            transfer_weights(net, state, exclude=["anchors"])
            net.names = class_names(None, net.nc)
    else:
        net = build_model(str(model), nc=classes, ch=channels)
        net.names = class_names(net.names, net.nc)
        if weights:
            transfer_weights(net, load_weights(weights), exclude=["anchors"])
    net = net.float().eval()
    if fuse:
        net.fuse()
    net = net.to(device)
    return AutoShape(Backend.from_torch(net)) if autoshape else net
