"""export.py's formats, files written beside the weights: yolov5 (upstream-loadable .pt), onnx, torchscript."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_ray.config import UserError
from yolo_ray.infer.predictor import model_from_checkpoint, model_stride
from yolo_ray.infer.upstream_pickle import foreign_globals, save_upstream_checkpoint
from yolo_ray.models import load_checkpoint

FORMATS = ("yolov5", "onnx", "torchscript")
ONNX_OPSET = 17


class ExportHead(nn.Module):
    """The model with only its decoded output (bs, N, 5 + nc), as upstream exports it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def _metadata(model: nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"shape": list(shape), "stride": model_stride(model), "names": model.names}


def export_torchscript(model: nn.Module, im: torch.Tensor, file: Path) -> Path:
    """A traced module with upstream's config.txt (shape, stride, names) as an extra file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notices about code paths we do not take
        traced = torch.jit.trace(ExportHead(model), im, strict=False)
    traced.save(str(file), _extra_files={"config.txt": json.dumps(_metadata(model, tuple(im.shape)))})
    return file


def export_onnx(model: nn.Module, im: torch.Tensor, file: Path, dynamic: bool = False,
                opset: int = ONNX_OPSET) -> Path:
    """ONNX (input 'images', output 'output0'), stride and names in the metadata, as upstream."""
    try:
        import onnx
    except ImportError:
        raise UserError("--include onnx needs the onnx package: pip install 'yolo_ray[export]'") from None
    axes = {"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript-based exporter, which needs no onnxscript install
        torch.onnx.export(ExportHead(model), (im,), str(file), opset_version=opset, input_names=["images"],
                          output_names=["output0"], dynamic_axes=axes, dynamo=False)
    proto = onnx.load(str(file))
    onnx.checker.check_model(proto)
    for key, value in _metadata(model, tuple(im.shape)).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(proto, str(file))
    return file


def export_yolov5(weights: Path, model: nn.Module, file: Path) -> Path:
    """The pickled-module checkpoint upstream YOLOv5 loads; checked to name only upstream/torch globals."""
    meta = load_checkpoint(weights)["meta"]
    save_upstream_checkpoint(model, file, meta)
    foreign = foreign_globals(file)
    if foreign:
        file.unlink()
        raise RuntimeError(f"{file}: the pickle would name non-upstream globals {foreign}")
    return file


def export_formats(weights: str | Path, include: list[str], imgsz: tuple[int, int] = (640, 640), batch_size: int = 1,
                   dynamic: bool = False, opset: int = ONNX_OPSET, device: torch.device | str = "cpu") -> list[Path]:
    """Write each format of `include` beside the weights; returns the files."""
    unknown = [f for f in include if f not in FORMATS]
    if unknown:
        raise UserError(f"--include {' '.join(unknown)}: unknown format (choose from {', '.join(FORMATS)})")
    weights = Path(weights)
    model = model_from_checkpoint(weights).to(device)  # unfused: the yolov5 file keeps BatchNorm, as upstream's
    files = []
    if "yolov5" in include:
        files.append(export_yolov5(weights, model, weights.with_name(f"{weights.stem}-yolov5.pt")))
    runtime = [f for f in include if f != "yolov5"]
    if runtime:
        fused = model.fuse()  # after the yolov5 copy was taken: the graph formats are for inference
        stride = model_stride(fused)
        if any(s % stride for s in imgsz):
            raise UserError(f"--imgsz {list(imgsz)} must be multiples of the model's max stride {stride}")
        im = torch.zeros(batch_size, fused.yaml.get("ch", 3), *imgsz, device=device)
        fused(im)  # one forward builds the grids the trace then records
        if "torchscript" in runtime:
            files.append(export_torchscript(fused, im, weights.with_suffix(".torchscript")))
        if "onnx" in runtime:
            files.append(export_onnx(fused, im, weights.with_suffix(".onnx"), dynamic, opset))
    for f in files:
        print(f"export: saved {f} ({f.stat().st_size / 1e6:.1f} MB)")
    return files
