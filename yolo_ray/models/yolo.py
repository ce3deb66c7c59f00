"""YOLOv5 v7.0 detection models built from upstream-format model yamls.

A yaml lists layers as [from, number, module, args]; `depth_multiple` scales `number` and
`width_multiple` scales output channels, which is how one file layout yields the n/s/m/l/x family.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_ray.config import UserError, load_yaml, refuse_folder
from yolo_ray.models.common import C3, SPPF, Bottleneck, Concat, Conv, fuse_conv_and_bn

LOGGER = logging.getLogger(__name__)

CFG_DIR = Path(__file__).resolve().parent / "cfg"
STRIDE_PROBE_SIZE = 256  # side of the zero image whose output map sizes reveal each level's stride
BN_EPS, BN_MOMENTUM = 1e-3, 0.03  # upstream's BatchNorm settings (its initialize_weights)


def shipped_cfgs() -> list[str]:
    return sorted(p.stem for p in CFG_DIR.glob("*.yaml"))


def make_divisible(x: float, divisor: int) -> int:
    """The smallest multiple of divisor that is >= x."""
    return math.ceil(x / divisor) * divisor


class Detect(nn.Module):
    """The output layer: one 1x1 conv per level predicting na anchors x (xywh, obj, nc classes)."""

    dynamic = False  # rebuild the grids on every call, so an exported graph computes them from its input size

    def __init__(self, nc: int = 80, anchors: list = (), ch: list[int] = ()):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        # Pixels when built; DetectionModel divides by the strides, so grid units from then on.
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        # Non-persistent: follows .to()/.half() like upstream's attribute, stays out of the state dict.
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.grid = [torch.empty(0) for _ in range(self.nl)]

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        decoded = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                xy, wh, conf = x[i].sigmoid().split((2, 2, self.nc + 1), 4)
                xy = (xy * 2 + self._grid(i, nx, ny)) * self.stride[i]
                wh = (wh * 2) ** 2 * (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2)
                decoded.append(torch.cat((xy, wh, conf), 4).view(bs, self.na * ny * nx, self.no))
        return x if self.training else (torch.cat(decoded, 1), x)

    def _grid(self, i: int, nx: int, ny: int) -> torch.Tensor:
        """Cell corner coordinates (1, na, ny, nx, 2) in the anchors' dtype, cached per level and size."""
        grid, like = self.grid[i], self.anchors
        if self.dynamic or grid.shape[2:4] != (ny, nx) or grid.device != like.device or grid.dtype != like.dtype:
            ys = torch.arange(ny, device=like.device, dtype=like.dtype)
            xs = torch.arange(nx, device=like.device, dtype=like.dtype)
            yv, xv = torch.meshgrid(ys, xs, indexing="ij")
            # The -0.5 folds the decode's (2 * sigmoid - 0.5) offset into the grid.
            grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2) - 0.5
            self.grid[i] = grid
        return grid


def check_anchor_order(detect: Detect) -> None:
    """Anchor areas must grow with stride across levels; flip the level order if they shrink."""
    area = detect.anchors.prod(-1).mean(-1).view(-1)
    da = area[-1] - area[0]
    ds = detect.stride[-1] - detect.stride[0]
    if da and da.sign() != ds.sign():
        LOGGER.info("Reversing anchor order")
        detect.anchors[:] = detect.anchors.flip(0)


class DetectionModel(nn.Module):
    """A YOLOv5 detector: `model` is an nn.Sequential of yaml layers ending in Detect."""

    def __init__(
        self,
        cfg: str | Path | dict = "yolov5s",
        ch: int = 3,
        nc: int | None = None,
        anchors: int | float | list | None = None,
    ):
        super().__init__()
        self.yaml, source = resolve_cfg(cfg)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml.get("nc"):
            LOGGER.info(f"Overriding {source} nc={self.yaml.get('nc')} with nc={nc}")
            self.yaml["nc"] = nc
        if anchors:
            LOGGER.info(f"Overriding {source} anchors with anchors={anchors}")
            self.yaml["anchors"] = anchors if isinstance(anchors, list) else round(anchors)
        validate_cfg(self.yaml, source)
        self.model, self.save = parse_model(copy.deepcopy(self.yaml), [ch], source)
        self.nc = self.yaml["nc"]
        self.names: list[str] | dict[int, str] = [str(i) for i in range(self.nc)]

        detect = self.model[-1]
        detect.stride = self._probe_strides(ch, source)
        check_anchor_order(detect)
        detect.anchors /= detect.stride.view(-1, 1, 1)
        self.register_buffer("stride", detect.stride.clone(), persistent=False)
        self._initialize_biases()
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = BN_EPS, BN_MOMENTUM

    def forward(self, x: torch.Tensor) -> Any:
        outputs: list[torch.Tensor | None] = []
        for m in self.model:
            if m.f != -1:
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            x = m(x)
            outputs.append(x if m.i in self.save else None)
        return x

    def fuse(self) -> DetectionModel:
        """Fold every BatchNorm into its conv (inference only; the bn.* state-dict keys disappear)."""
        for m in self.model.modules():
            if isinstance(m, Conv) and isinstance(m.bn, (nn.BatchNorm2d, nn.SyncBatchNorm)):
                m.conv = fuse_conv_and_bn(m.conv, m.bn)
                m.bn = nn.Identity()
        return self

    def _probe_strides(self, ch: int, source: str) -> torch.Tensor:
        # Runs in train mode, as upstream, so Detect returns raw maps (and BN stats see one zero batch).
        s = STRIDE_PROBE_SIZE
        try:
            maps = self.forward(torch.zeros(1, ch, s, s))
        except RuntimeError as e:
            raise UserError(f"{source}: the layers do not fit together ({str(e).splitlines()[0]})") from None
        return torch.tensor([s / x.shape[-2] for x in maps])

    @torch.no_grad()
    def _initialize_biases(self) -> None:
        """Start objectness near 8 objects per 640x640 image per level, and class scores near 0.6 / nc."""
        detect = self.model[-1]
        for conv, s in zip(detect.m, detect.stride):
            b = conv.bias.view(detect.na, -1)
            b[:, 4] += math.log(8 / (640 / float(s)) ** 2)
            b[:, 5 : 5 + detect.nc] += math.log(0.6 / (detect.nc - 0.99999))


def build_model(
    cfg: str | Path | dict, nc: int | None = None, anchors: int | float | list | None = None, ch: int = 3
) -> DetectionModel:
    """A fresh model from a shipped name ("yolov5s" / "yolov5s.yaml"), a yaml path or a yaml dict."""
    return DetectionModel(cfg, ch=ch, nc=nc, anchors=anchors)


def de_parallel(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel (or the model itself)."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module
    return model


def resolve_cfg(cfg: str | Path | dict) -> tuple[dict[str, Any], str]:
    """(a private copy of the yaml dict, a source name for messages)."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg), "model dict"
    path = Path(cfg)
    refuse_folder(path, "a model YAML file")
    if path.is_file():
        return load_yaml(path), str(path)
    shipped = CFG_DIR / f"{path.stem}.yaml"
    if path.name == str(cfg) and path.suffix in ("", ".yaml", ".yml") and shipped.is_file():
        return load_yaml(shipped), str(shipped)
    raise UserError(f"{cfg}: model yaml not found (shipped models: {', '.join(shipped_cfgs())})")


MODULES: dict[str, type[nn.Module]] = {
    "Conv": Conv,
    "Bottleneck": Bottleneck,
    "C3": C3,
    "SPPF": SPPF,
    "Concat": Concat,
    "Detect": Detect,
    "nn.Upsample": nn.Upsample,
}
# Modules whose first arg is the output channel count (scaled by width_multiple).
CHANNEL_MODULES = (Conv, Bottleneck, C3, SPPF)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_cfg(d: dict[str, Any], source: str) -> None:
    """Raise UserError naming the first structural problem of a model yaml."""
    for key in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head"):
        if key not in d:
            raise UserError(f"{source}: missing key {key!r}")
    if not isinstance(d["nc"], int) or isinstance(d["nc"], bool) or d["nc"] < 1:
        raise UserError(f"{source}: nc must be a positive integer, got {d['nc']!r}")
    for key in ("depth_multiple", "width_multiple"):
        if not _is_number(d[key]) or d[key] <= 0:
            raise UserError(f"{source}: {key} must be a positive number, got {d[key]!r}")
    anchors = d["anchors"]
    if isinstance(anchors, list):
        if not anchors or not all(
            isinstance(a, list)
            and a
            and len(a) % 2 == 0
            and len(a) == len(anchors[0])
            and all(_is_number(v) for v in a)
            for a in anchors
        ):
            raise UserError(f"{source}: anchors must be per-level lists of w,h pairs of equal length")
    elif not isinstance(anchors, int) or isinstance(anchors, bool) or anchors < 1:
        raise UserError(f"{source}: anchors must be a list of levels or a positive count, got {anchors!r}")
    rows = d["backbone"] + d["head"] if isinstance(d["backbone"], list) and isinstance(d["head"], list) else None
    if not rows:
        raise UserError(f"{source}: backbone and head must be lists of [from, number, module, args] rows")
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4):
            raise UserError(f"{source}: layer {i} must be [from, number, module, args], got {row!r}")
        f, n, name, args = row
        froms = f if isinstance(f, list) else [f]
        if not froms or not all(
            isinstance(x, int) and not isinstance(x, bool) and -i <= x < i or x == -1 for x in froms
        ):
            raise UserError(f"{source}: layer {i} 'from' must name earlier layers, got {f!r}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UserError(f"{source}: layer {i} number must be a positive integer, got {n!r}")
        if name not in MODULES:
            raise UserError(f"{source}: layer {i} module {name!r} is not supported ({', '.join(MODULES)})")
        if not isinstance(args, list):
            raise UserError(f"{source}: layer {i} args must be a list, got {args!r}")
    if rows[-1][2] != "Detect":
        raise UserError(f"{source}: the last layer must be Detect, got {rows[-1][2]!r}")


def parse_model(d: dict[str, Any], ch: list[int], source: str) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a validated yaml dict; returns (layers, indices of outputs kept for later layers)."""
    nc, gd, gw, anchors = d["nc"], d["depth_multiple"], d["width_multiple"], d["anchors"]
    na = len(anchors[0]) // 2 if isinstance(anchors, list) else anchors
    no = na * (nc + 5)
    names = {"nc": nc, "anchors": anchors, "None": None}
    layers, save, c2 = [], [], ch[-1]
    for i, row in enumerate(d["backbone"] + d["head"]):
        f, n, name, args = row
        module = MODULES[name]
        args = [names.get(a, a) if isinstance(a, str) else a for a in args]
        n = max(round(n * gd), 1) if n > 1 else n
        try:
            if module in CHANNEL_MODULES:
                c1, c2 = ch[f], args[0]
                if c2 != no:
                    c2 = make_divisible(c2 * gw, 8)
                args = [c1, c2, *args[1:]]
                if module is C3:  # depth repeats the bottlenecks inside the block, not the block
                    args.insert(2, n)
                    n = 1
            elif module is Concat:
                c2 = sum(ch[x] for x in f)
            elif module is Detect:
                args.append([ch[x] for x in f])
                if isinstance(args[1], int):  # a count only: placeholder anchors for AutoAnchor to fit
                    args[1] = [list(range(args[1] * 2))] * len(f)
            else:
                c2 = ch[f]
            layer = nn.Sequential(*(module(*args) for _ in range(n))) if n > 1 else module(*args)
        except (IndexError, TypeError, ValueError) as e:
            raise UserError(f"{source}: layer {i} {row!r} cannot be built ({e})") from None
        layer.i, layer.f, layer.type = i, f, f"{module.__module__}.{module.__qualname__}"
        layer.np = sum(p.numel() for p in layer.parameters())
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(layer)
        if i == 0:
            ch = []
        ch.append(c2)
    return nn.Sequential(*layers), sorted(save)
