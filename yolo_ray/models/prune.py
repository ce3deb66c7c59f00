"""Pruning as upstream's torch_utils.prune: each Conv2d loses its own smallest-magnitude fraction of weights."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune as torch_prune

from yolo_ray.config import UserError
from yolo_ray.console import LOGGER


def sparsity(model: nn.Module) -> float:
    """The fraction of all parameters that are exactly zero (upstream's global sparsity)."""
    total = zeros = 0
    for p in model.parameters():
        total += p.numel()
        zeros += int((p == 0).sum())
    return zeros / max(total, 1)


def prune(model: nn.Module, amount: float = 0.3) -> float:
    """Zero the `amount` fraction of smallest-magnitude weights in every Conv2d, layer by layer (L1
    unstructured), and remove the pruning masks so the zeros are plain weights. Prints upstream's line
    ('Model pruned to 0.298 global sparsity': the share of zeros among all parameters) and returns it."""
    if not 0 <= amount < 1:
        raise UserError(f"prune amount must be in [0, 1), got {amount}")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UserError("prune: the model has no Conv2d layers")
    for conv in convs:
        torch_prune.l1_unstructured(conv, name="weight", amount=amount)
        torch_prune.remove(conv, "weight")
    reached = sparsity(model)
    LOGGER.info(f"Model pruned to {reached:.3g} global sparsity")
    return reached
