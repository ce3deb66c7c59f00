"""export.py's formats, files written beside the weights: yolov5 (upstream-loadable .pt), torchscript, onnx
and openvino, with upstream's names, metadata and options (--half on CUDA, --dynamic, --simplify, --opset)."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from yolo_ray.config import UserError, temp_sibling
from yolo_ray.models.loading import model_from_checkpoint, model_stride
from yolo_ray.infer.upstream_pickle import foreign_globals, save_upstream_checkpoint
from yolo_ray.models import load_checkpoint

# export.py's options, in a module --help can import without torch
from yolo_ray.infer.formats import FORMATS, NOT_BUILT, ONNX_OPSET, check_include  # noqa: F401


class ExportHead(nn.Module):
    """The model with only its decoded output (bs, N, 5 + nc), as upstream exports it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def onnx_opsets() -> range:
    """The opsets torch's TorchScript-based ONNX exporter writes."""
    try:
        from torch.onnx import _constants

        return range(_constants.ONNX_MIN_OPSET, _constants.ONNX_MAX_OPSET + 1)
    except (ImportError, AttributeError):  # a torch that moved them: the exporter's own error still says it
        return range(1, 100)


def _metadata(model: nn.Module) -> dict[str, Any]:
    return {"stride": model_stride(model), "names": model.names}


def export_torchscript(model: nn.Module, im: torch.Tensor, file: Path) -> Path:
    """A traced module with upstream's config.txt (shape, stride, names) as an extra file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notices about code paths we do not take
        traced = torch.jit.trace(ExportHead(model), im, strict=False)
    config = {"shape": list(im.shape), **_metadata(model)}
    traced.save(str(file), _extra_files={"config.txt": json.dumps(config)})
    return file


def _add_metadata(proto: Any, model: nn.Module) -> None:
    for key, value in _metadata(model).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)


def export_onnx(
    model: nn.Module,
    im: torch.Tensor,
    file: Path,
    dynamic: bool = False,
    opset: int = ONNX_OPSET,
    simplify: bool = False,
) -> Path:
    """ONNX (input 'images', output 'output0'), stride and names in the metadata, as upstream. dynamic:
    batch, height and width of the input and batch and boxes of the output are free."""
    try:
        import onnx
    except ImportError:
        raise UserError("--include onnx needs the onnx package: pip install 'yolo_ray[export]'") from None
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}} if dynamic else None
    detect = model.model[-1]
    detect.dynamic = dynamic  # grids computed from the input's size inside the graph
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # dynamo=False: the TorchScript-based exporter, which needs no onnxscript install
            torch.onnx.export(
                ExportHead(model),
                (im,),
                str(file),
                opset_version=opset,
                do_constant_folding=True,
                input_names=["images"],
                output_names=["output0"],
                dynamic_axes=axes,
                dynamo=False,
            )
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as e:
        raise UserError(f"--opset {opset}: the ONNX exporter refused it ({str(e).splitlines()[0][:160]})") from None
    finally:
        detect.dynamic = False
    proto = onnx.load(str(file))
    onnx.checker.check_model(proto)
    if simplify:
        proto = _simplify(proto)
    _add_metadata(proto, model)
    onnx.save(proto, str(file))
    return file


def _simplify(proto: Any) -> Any:
    try:
        import onnxslim
    except ImportError:
        raise UserError("--simplify needs the onnxslim package: pip install 'yolo_ray[export]'") from None
    print(f"ONNX: slimming with onnxslim {onnxslim.__version__}...")
    del proto.metadata_props[:]  # added back after slimming
    return onnxslim.slim(proto)


def export_openvino(onnx_file: Path, folder: Path, stem: str, model: nn.Module, half: bool) -> Path:
    """upstream's <stem>_openvino_model/ folder (written at `folder`): <stem>.xml and .bin converted from the
    ONNX export, with <stem>.yaml holding stride and names. FP32 weights unless half."""
    try:
        import openvino
    except ImportError:
        raise UserError("--include openvino needs the openvino package: pip install 'yolo_ray[openvino]'") from None
    folder.mkdir()
    converted = openvino.convert_model(str(onnx_file))
    openvino.save_model(converted, str(folder / f"{stem}.xml"), compress_to_fp16=half)
    (folder / f"{stem}.yaml").write_text(yaml.safe_dump(_metadata(model), sort_keys=False))
    return folder


def export_yolov5(weights: Path, model: nn.Module, file: Path) -> Path:
    """The pickled-module checkpoint upstream YOLOv5 loads; checked to name only upstream/torch globals."""
    meta = load_checkpoint(weights)["meta"]
    save_upstream_checkpoint(model, file, meta)
    foreign = foreign_globals(file)
    if foreign:
        file.unlink()
        raise RuntimeError(f"{file}: the pickle would name non-upstream globals {foreign}")
    return file


class StagedFiles:
    """Outputs written under hidden temporary names beside their final ones, renamed into place together
    once every format is written: a failure leaves no half file, no new file, and the files of an
    earlier export as they were."""

    def __init__(self) -> None:
        self.pending: dict[Path, Path] = {}

    def add(self, final: Path) -> Path:
        """The temporary path to write `final` at (same suffix: OpenVINO reads a model's format from it)."""
        self.pending[final] = temp_sibling(final, final.suffix)
        return self.pending[final]

    def commit(self) -> list[Path]:
        for final, staged in self.pending.items():
            if final.is_dir():  # an earlier OpenVINO export
                shutil.rmtree(final)
            os.replace(staged, final)
        return list(self.pending)

    def discard(self) -> None:
        for staged in self.pending.values():
            if staged.is_dir():
                shutil.rmtree(staged, ignore_errors=True)
            else:
                staged.unlink(missing_ok=True)


def output_paths(weights: Path, include: list[str]) -> dict[str, Path]:
    """Where each format of include goes, beside the weights (upstream's names)."""
    paths = {
        "yolov5": weights.with_name(f"{weights.stem}-yolov5.pt"),
        "torchscript": weights.with_suffix(".torchscript"),
        "onnx": weights.with_suffix(".onnx"),
        "openvino": weights.with_name(f"{weights.stem}_openvino_model"),
    }
    return {f: paths[f] for f in include}


def export_formats(
    weights: str | Path,
    include: list[str],
    imgsz: tuple[int, int] = (640, 640),
    batch_size: int = 1,
    dynamic: bool = False,
    opset: int = ONNX_OPSET,
    device: torch.device | str = "cpu",
    half: bool = False,
    simplify: bool = False,
    model: nn.Module | None = None,
) -> list[Path]:
    """Write each format of `include` beside the weights; returns the files (an OpenVINO folder for openvino).

    model: the weights' model when already loaded. All formats or none: see StagedFiles."""
    include = check_include(include)
    weights = Path(weights)
    model = (model if model is not None else model_from_checkpoint(weights)).to(device)
    staged = StagedFiles()
    try:
        if "yolov5" in include:  # unfused: the yolov5 file keeps BatchNorm, as upstream's
            export_yolov5(weights, model, staged.add(output_paths(weights, ["yolov5"])["yolov5"]))
        if set(include) - {"yolov5"}:
            _export_graphs(model.fuse(), weights, include, imgsz, batch_size, dynamic, opset, half, simplify, staged)
        files = staged.commit()
    except OSError as e:
        staged.discard()
        raise UserError(f"{weights.parent}: cannot write the export there ({e.strerror or e})") from None
    except BaseException:
        staged.discard()
        raise
    for f in files:
        size = sum(p.stat().st_size for p in f.rglob("*")) if f.is_dir() else f.stat().st_size
        print(f"export: saved {f} ({size / 1e6:.1f} MB)")
    return files


def _export_graphs(
    fused: nn.Module,
    weights: Path,
    include: list[str],
    imgsz: tuple[int, int],
    batch_size: int,
    dynamic: bool,
    opset: int,
    half: bool,
    simplify: bool,
    staged: StagedFiles,
) -> None:
    stride = model_stride(fused)
    if any(s % stride for s in imgsz):
        raise UserError(f"--imgsz {list(imgsz)} must be multiples of the model's max stride {stride}")
    device = next(fused.parameters()).device
    im = torch.zeros(batch_size, fused.yaml.get("ch", 3), *imgsz, device=device)
    fused(im)  # one forward builds the grids the trace then records
    if half:
        im, fused = im.half(), fused.half()
    final = output_paths(weights, include)
    if "torchscript" in include:
        export_torchscript(fused, im, staged.add(final["torchscript"]))
    if "onnx" in include or "openvino" in include:  # OpenVINO is converted from the ONNX file, kept as upstream's
        onnx_file = export_onnx(
            fused, im, staged.add(output_paths(weights, ["onnx"])["onnx"]), dynamic, opset, simplify
        )
        if "openvino" in include:
            export_openvino(onnx_file, staged.add(final["openvino"]), weights.stem, fused, half)
