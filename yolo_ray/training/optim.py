"""Optimizer, LR schedule, warmup, weight EMA and early stopping, as YOLOv5 v7.0 trains with them."""

from __future__ import annotations

import math
from copy import deepcopy
from typing import Callable

import numpy as np
import torch
from torch import nn
from yolo_ray.console import LOGGER

NOMINAL_BATCH = 64  # gradients accumulate until about this many images went through the model
OPTIMIZERS = ("SGD", "Adam", "AdamW")
BIAS_GROUP = 0  # v7.0 builds the optimizer on the biases first: warmup treats group 0 specially


def parameter_groups(model: nn.Module) -> tuple[list, list, list]:
    """(biases, weights that decay, normalisation-layer weights that don't), in v7.0's group order."""
    biases, decayed, norm_weights = [], [], []
    for module in model.modules():
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))
        for name, param in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(param)
            elif name == "weight" and is_norm:
                norm_weights.append(param)
            else:
                decayed.append(param)
    return biases, decayed, norm_weights


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, decay: float) -> torch.optim.Optimizer:
    """Three groups: 0 biases (no decay), 1 weights (decay), 2 BN weights (no decay)."""
    biases, decayed, norm_weights = parameter_groups(model)
    if name == "SGD":
        optimizer = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True)
    elif name == "Adam":
        optimizer = torch.optim.Adam(biases, lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(biases, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    else:
        raise ValueError(f"optimizer {name!r} not in {OPTIMIZERS}")
    optimizer.add_param_group({"params": decayed, "weight_decay": decay})
    optimizer.add_param_group({"params": norm_weights, "weight_decay": 0.0})
    return optimizer


def accumulation_steps(batch_size: int) -> int:
    """Batches per optimizer step, so that one step sees about NOMINAL_BATCH images."""
    return max(round(NOMINAL_BATCH / batch_size), 1)


def scaled_weight_decay(weight_decay: float, batch_size: int) -> float:
    """Weight decay per step grows with the images a step really sees (v7.0 scales the hyp this way)."""
    return weight_decay * batch_size * accumulation_steps(batch_size) / NOMINAL_BATCH


def lr_lambda(epochs: int, lrf: float, cos_lr: bool) -> Callable[[float], float]:
    """LR multiplier per epoch: linear 1 -> lrf over `epochs` (v7.0 default) or one-cycle cosine."""
    if cos_lr:
        return lambda x: ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int) -> int:
    return max(round(warmup_epochs * batches_per_epoch), 100)


def apply_warmup(
    optimizer: torch.optim.Optimizer,
    ni: int,
    nw: int,
    lr_factor: float,
    hyp: dict[str, float],
    batch_size: int,
) -> int:
    """Set lr and momentum of every group for iteration ni <= nw; return the accumulation to use.

    The bias lr falls from warmup_bias_lr to its scheduled value, the others rise from 0; momentum
    rises from warmup_momentum; accumulation grows from 1 to its nominal value.
    """
    xi = [0, nw]
    accumulate = max(1, int(np.interp(ni, xi, [1, NOMINAL_BATCH / batch_size]).round()))
    for j, group in enumerate(optimizer.param_groups):
        start = hyp["warmup_bias_lr"] if j == BIAS_GROUP else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lr_factor]))
        if "momentum" in group:  # SGD only: Adam's betas stay fixed, as upstream's update never reaches them
            group["momentum"] = float(np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]]))
    return accumulate


class ModelEMA:
    """Exponential moving average of a model's floating-point state, ramping its decay up from 0.

    decay(updates) = 0.9999 * (1 - exp(-updates / 2000)), so early averages follow the model closely.
    Pass the bare model (not the DDP wrapper) to update().
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.ema = deepcopy(model).eval()
        self.updates = updates
        self.decay = lambda x: decay * (1 - math.exp(-x / tau))
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay(self.updates)
        model_state = model.state_dict()
        # fetched each time: validation's half()/float() may have swapped the EMA's tensors since the last update
        pairs = [(k, v) for k, v in self.ema.state_dict().items() if v.dtype.is_floating_point]
        ema_tensors = [v for _, v in pairs]
        model_tensors = [model_state[k].detach() for k, _ in pairs]
        # lerp(e, m, 1-d) = d*e + (1-d)*m in one fused pass over all tensors (no per-tensor launches)
        torch._foreach_lerp_(ema_tensors, model_tensors, 1.0 - d)

    def update_attr(self, model: nn.Module, include: tuple[str, ...] = ()) -> None:
        for name in include:
            if hasattr(model, name):
                setattr(self.ema, name, getattr(model, name))

    def load_state(self, state_dict: dict[str, torch.Tensor], updates: int) -> None:
        """Restore from a checkpoint (half or float tensors) so resumed averaging continues exactly."""
        self.ema.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
        self.updates = updates


class EarlyStopping:
    """Stop when fitness has not improved for `patience` epochs (0 disables it)."""

    def __init__(self, patience: int = 30):
        self.best_fitness = 0.0
        self.best_epoch = 0
        self.patience = patience or float("inf")
        self.possible_stop = False

    def __call__(self, epoch: int, fitness: float) -> bool:
        if fitness >= self.best_fitness:  # >= so that zero-fitness early epochs still count as progress
            self.best_epoch = epoch
            self.best_fitness = fitness
        delta = epoch - self.best_epoch
        self.possible_stop = delta >= (self.patience - 1)
        stop = delta >= self.patience
        if stop:
            LOGGER.info(
                f"Stopping training early as no improvement observed in last {self.patience} epochs. "
                f"Best results observed at epoch {self.best_epoch}."
            )
        return stop
