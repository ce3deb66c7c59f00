"""--visualize, as upstream's feature_visualization: each layer's first feature maps of the first image,
stage{i}_{Module}_features.png (up to 32 channels, 8 a row) and the full maps as .npy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yolo_ray.models.loading import Ensemble

MAX_CHANNELS = 32


def save_feature_maps(x: torch.Tensor, layer_type: str, stage: int, save_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, channels, height, width = x.shape
    if height <= 1 or width <= 1:
        return
    file = save_dir / f"stage{stage}_{layer_type.split('.')[-1]}_features.png"
    n = min(MAX_CHANNELS, channels)
    fig, axes = plt.subplots(math.ceil(n / 8), 8, tight_layout=True)
    axes = axes.ravel()
    plt.subplots_adjust(wspace=0.05, hspace=0.05)
    maps = x[0].detach().float().cpu()
    for i in range(n):
        axes[i].imshow(maps[i])
        axes[i].axis("off")
    for ax in axes[n:]:
        ax.axis("off")
    print(f"Saving {file}... ({n}/{channels})")
    fig.savefig(file, dpi=300, bbox_inches="tight")
    plt.close(fig)
    np.save(file.with_suffix(".npy"), maps.numpy())


@torch.no_grad()
def visualized_forward(model: nn.Module, x: torch.Tensor, save_dir: Path) -> torch.Tensor:
    """The model's predictions, saving every layer's output (but Detect's) into save_dir on the way."""
    members = list(model) if isinstance(model, Ensemble) else [model]
    save_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for member in members:
        layers = list(member.model)[:-1]  # the last layer is Detect
        hooks = [
            layer.register_forward_hook(lambda m, _, out: save_feature_maps(out, m.type, m.i, save_dir))
            for layer in layers
        ]
        try:
            outputs.append(member(x)[0])
        finally:
            for hook in hooks:
                hook.remove()
    return torch.cat(outputs, 1)
