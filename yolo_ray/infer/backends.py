"""One loader for every weights format val.py, detect.py and the API accept, as upstream's DetectMultiBackend:
.pt (ours or upstream's, one or an ensemble), .torchscript, .onnx (onnxruntime, or OpenCV DNN with dnn=True)
and OpenVINO (a *_openvino_model folder or its .xml). Every backend maps a BCHW float image batch in [0, 1]
to the decoded predictions (batch, boxes, 5 + classes).
"""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from yolo_ray.config import UserError, load_yaml
from yolo_ray.models.loading import class_names, load_models, model_stride
from yolo_ray.infer.tta import augmented_forward
from yolo_ray.infer.visualize import visualized_forward
from yolo_ray.filetypes import refuse_other_kind, require_file, sniff
from yolo_ray.official import download_url_weights, is_url, official_name

# Upstream's other export formats: named so a user gets one clear line instead of "unknown suffix".
NOT_BUILT = {
    ".engine": "TensorRT",
    ".mlmodel": "CoreML",
    "_saved_model": "TensorFlow SavedModel",
    ".pb": "TensorFlow GraphDef",
    "_edgetpu.tflite": "TensorFlow Edge TPU",
    ".tflite": "TensorFlow Lite",
    "_web_model": "TensorFlow.js",
    "_paddle_model": "PaddlePaddle",
}
SUFFIX_OF_KIND = {"a PyTorch checkpoint": ".pt", "an ONNX model": ".onnx", "a TorchScript model": ".torchscript"}
UNSURE = (None, "a YAML or text file")  # content that names no format: the format's own loader decides
FORMAT_NAMES = {"pt": "PyTorch", "torchscript": "TorchScript", "onnx": "ONNX", "openvino": "OpenVINO"}


def weights_file(weights: str | Path) -> Path:
    """The local file or folder a --weights entry names (the one place a weights argument becomes a path);
    an http(s) URL is downloaded into the cache first, as upstream's attempt_download."""
    if is_url(weights):
        return download_url_weights(weights)
    path = Path(weights)
    if not path.exists():
        name = official_name(weights)
        if name is None:
            raise UserError(f"{weights}: weights file not found")
        return Path(name)  # an official release file (yolov5s.pt): fetched into the cache when it is loaded
    return path


def weights_format(path: Path) -> str:
    """'pt', 'torchscript', 'onnx' or 'openvino' from the name, as upstream's suffix rules."""
    name = path.name
    if name.endswith("_openvino_model") or path.suffix == ".xml":
        return "openvino"
    if path.suffix in (".pt", ".torchscript", ".onnx"):
        return path.suffix[1:]
    for suffix, fmt in NOT_BUILT.items():
        if name.endswith(suffix):
            raise UserError(
                f"{path}: {fmt} models are not supported here (use .pt, .torchscript, .onnx or "
                "an OpenVINO *_openvino_model folder)"
            )
    kind = sniff(path)
    if kind in SUFFIX_OF_KIND:  # a model under another name: the format comes from the name, as upstream's
        raise UserError(f"{path}: is {kind}, but its name does not say so (name it *{SUFFIX_OF_KIND[kind]})")
    what = f"is {kind}, expected" if kind else "unknown weights format (use"
    raise UserError(f"{path}: {what} .pt, .torchscript, .onnx or a *_openvino_model folder{')' * (not kind)}")


class Backend(nn.Module):
    """A loaded model of any format. forward(im, augment, visualize) -> predictions (batch, boxes, 5 + nc).

    names, nc, stride (int), fmt ('pt', ...), pt (PyTorch, where TTA and feature maps exist), fp16 (inputs
    are cast to half), device, input_shape ((batch, ch, h, w) of a fixed-shape export, else None).
    """

    def __init__(
        self,
        run: Callable[[torch.Tensor], Any],
        names: dict[int, str],
        stride: int,
        fmt: str,
        device: torch.device,
        fp16: bool = False,
        input_shape: tuple[int, ...] | None = None,
        model: nn.Module | None = None,
    ):
        super().__init__()
        self.run, self.names, self.nc, self.stride = run, names, len(names), stride
        self.fmt, self.pt, self.fp16, self.device, self.input_shape = fmt, model is not None, fp16, device, input_shape
        self.model = model  # the PyTorch model (a submodule, so .to() and .half() reach it), None for others

    @classmethod
    def from_torch(cls, model: nn.Module, half: bool = False) -> Backend:
        """Wrap a DetectionModel or Ensemble (fp16 weights when half, on any device, as upstream)."""
        model.half() if half else model.float()
        device = next(model.parameters()).device
        return cls(lambda x: model(x)[0], model.names, model_stride(model), "pt", device, half, None, model)

    def forward(self, im: torch.Tensor, augment: bool = False, visualize: Path | None = None) -> torch.Tensor:
        if self.fp16 and im.dtype != torch.float16:
            im = im.half()
        if self.input_shape and tuple(im.shape) != self.input_shape:
            raise UserError(
                f"this {FORMAT_NAMES[self.fmt]} model takes input {self.input_shape}, got "
                f"{tuple(im.shape)}: pass its --imgsz (and batch size 1) or export with --dynamic"
            )
        if augment or visualize:
            if not self.pt:
                raise UserError(f"--augment and --visualize need a PyTorch model, not {FORMAT_NAMES[self.fmt]}")
            if visualize:
                return visualized_forward(self.model, im, visualize)
            return augmented_forward(self.model, im)
        y = self.run(im)
        y = y[0] if isinstance(y, (list, tuple)) else y
        return torch.from_numpy(np.asarray(y)).to(self.device) if not isinstance(y, torch.Tensor) else y

    def _apply(self, fn: Callable, *args: Any, **kwargs: Any) -> Backend:
        super()._apply(fn, *args, **kwargs)
        if self.model is not None:
            self.device = next(self.model.parameters()).device
        return self


def load_backend(
    weights: Sequence[str | Path] | str | Path,
    device: torch.device | str = "cpu",
    half: bool = False,
    dnn: bool = False,
    fuse: bool = True,
) -> Backend:
    """Load weights of any supported format (several .pt = an ensemble). half: fp16 for PyTorch and
    TorchScript (as upstream, on CPU too); ONNX and OpenVINO run in the precision they were exported in."""
    paths = [weights] if isinstance(weights, (str, Path)) else list(weights)
    if not paths:
        raise UserError("--weights: give at least one weights file")
    files = [weights_file(w) for w in paths]
    fmts = {weights_format(f) for f in files}
    device = torch.device(device)
    if fmts != {"pt"} and len(files) > 1:
        raise UserError("an ensemble (several --weights) needs .pt files; other formats take one file")
    fmt, file = fmts.pop(), files[0]
    if fmt == "pt":
        return Backend.from_torch(load_models(files, device, fuse=fuse), half)
    if fmt == "openvino" and file.suffix != ".xml" and not file.is_dir():
        raise UserError(f"{file}: is a file, expected an OpenVINO *_openvino_model folder")
    if fmt != "openvino":
        require_file(file, f"{FORMAT_NAMES[fmt]} model file")
        kind = f"a{'n' * (fmt == 'onnx')} {FORMAT_NAMES[fmt]} model"
        refuse_other_kind(file, kind, (kind, *UNSURE))
    print(f"Loading {file} for {FORMAT_NAMES[fmt]} inference...")
    if fmt == "torchscript":
        return _torchscript(file, device, half)
    if fmt == "onnx":
        return _opencv_dnn(file) if dnn else _onnxruntime(file, device)
    return _openvino(file)


def _torchscript(file: Path, device: torch.device, half: bool) -> Backend:
    extra = {"config.txt": ""}
    try:
        with warnings.catch_warnings():  # torch 2.14 calls jit.load deprecated; the format upstream exports is this
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")
            module = torch.jit.load(str(file), _extra_files=extra, map_location=device)
    except RuntimeError as e:
        raise UserError(
            f"{file}: not a readable TorchScript file ({str(e).splitlines()[0]}){_kind_note(file)}"
        ) from None
    module.half() if half else module.float()
    meta = json.loads(extra["config.txt"] or "{}")
    shape = tuple(meta["shape"]) if meta.get("shape") else None
    names = _names(meta.get("names"), file)
    return Backend(module, names, int(meta.get("stride", 32)), "torchscript", device, half, shape)


def _onnx_shape(dims: list) -> tuple[int, ...] | None:
    """The fixed input shape of an ONNX graph, None when any axis is dynamic."""
    return tuple(dims) if all(isinstance(d, int) for d in dims) else None


def _onnxruntime(file: Path, device: torch.device) -> Backend:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX models need onnxruntime: pip install 'yolo_ray[export]'") from None
    cuda = device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    try:
        session = onnxruntime.InferenceSession(str(file), providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
        raise UserError(f"{file}: not a readable ONNX model ({str(e).splitlines()[0]}){_kind_note(file)}") from None
    meta = session.get_modelmeta().custom_metadata_map
    graph_input = session.get_inputs()[0]
    fp16 = graph_input.type == "tensor(float16)"
    output_names = [o.name for o in session.get_outputs()]

    def run(x: torch.Tensor) -> np.ndarray:
        return session.run(output_names, {graph_input.name: x.cpu().numpy()})[0]

    names = _names(ast.literal_eval(meta["names"]) if "names" in meta else None, file)
    return Backend(
        run, names, int(meta.get("stride", 32)), "onnx", torch.device("cpu"), fp16, _onnx_shape(graph_input.shape)
    )


def _opencv_dnn(file: Path) -> Backend:
    import cv2

    try:
        net = cv2.dnn.readNetFromONNX(str(file))
    except cv2.error as e:
        raise UserError(f"{file}: OpenCV DNN cannot read it ({str(e).strip().splitlines()[-1]})") from None
    meta, shape = _onnx_metadata(file)

    def run(x: torch.Tensor) -> np.ndarray:
        net.setInput(x.cpu().numpy())
        return net.forward()

    names = _names(ast.literal_eval(meta["names"]) if "names" in meta else None, file)
    return Backend(run, names, int(meta.get("stride", 32)), "onnx", torch.device("cpu"), False, shape)


def _onnx_metadata(file: Path) -> tuple[dict[str, str], tuple[int, ...] | None]:
    import onnx

    proto = onnx.load(str(file), load_external_data=False)
    dims = [
        d.dim_value if d.HasField("dim_value") else d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim
    ]
    return {p.key: p.value for p in proto.metadata_props}, _onnx_shape(dims)


def _openvino(file: Path) -> Backend:
    try:
        import openvino
    except ImportError:
        raise UserError("OpenVINO models need the openvino package: pip install 'yolo_ray[openvino]'") from None
    xml = file if file.suffix == ".xml" else next(file.glob("*.xml"), None)
    if xml is None:
        raise UserError(f"{file}: no .xml model in this folder")
    core = openvino.Core()
    network = core.read_model(str(xml))
    compiled = core.compile_model(network, "CPU")
    shape = network.inputs[0].get_partial_shape()
    fixed = tuple(d.get_length() for d in shape) if shape.is_static else None
    meta_file = xml.with_suffix(".yaml")
    meta = load_yaml(meta_file) if meta_file.is_file() else {}

    def run(x: torch.Tensor) -> np.ndarray:
        return compiled(x.cpu().numpy())[0]

    names = _names(meta.get("names"), file)
    return Backend(run, names, int(meta.get("stride", 32)), "openvino", torch.device("cpu"), False, fixed)


def _kind_note(file: Path) -> str:
    """'; it is a PyTorch checkpoint' when the content is known to be some other kind of file."""
    kind = sniff(file)
    return f"; it is {kind}" if kind else ""


def _names(names: Any, file: Path) -> dict[int, str]:
    if names is None:
        raise UserError(f"{file}: holds no class names (export it with scripts/export.py)")
    listed = list(names.values()) if isinstance(names, dict) else list(names)
    return class_names(names if isinstance(names, list) else {int(k): v for k, v in names.items()}, len(listed))
