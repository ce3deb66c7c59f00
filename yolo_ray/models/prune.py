"""Pruning: zero the smallest conv weights of a model (global unstructured L1), made permanent."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune as torch_prune

from yolo_ray.config import UserError


def sparsity(model: nn.Module) -> float:
    """The fraction of all parameters that are exactly zero (upstream's global sparsity)."""
    total = zeros = 0
    for p in model.parameters():
        total += p.numel()
        zeros += int((p == 0).sum())
    return zeros / max(total, 1)


def prune(model: nn.Module, amount: float = 0.3) -> float:
    """Zero the `amount` fraction of all Conv2d weights with the smallest magnitude, ranked across every
    layer at once, and remove the pruning masks so the zeros are plain weights. Returns the sparsity."""
    if not 0 <= amount < 1:
        raise UserError(f"prune amount must be in [0, 1), got {amount}")
    targets = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not targets:
        raise UserError("prune: the model has no Conv2d layers")
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=amount)
    for module, name in targets:
        torch_prune.remove(module, name)
    reached = sparsity(model)
    print(f"Model pruned to {reached:.3g} global sparsity")
    return reached
