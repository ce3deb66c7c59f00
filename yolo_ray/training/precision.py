"""Numeric precision and memory layout of a run: autocast dtype, gradient scaler, channels-last."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX-512 BF16 / AMX on x86, BF16 on ARM)."""
    caps = torch.cpu.get_capabilities()
    return any(caps.get(k, False) for k in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


class Precision:
    """fp16 autocast + GradScaler on CUDA (as upstream); bf16 autocast on CPUs with native bf16
    (no scaler needed: bf16 keeps fp32's exponent range); fp32 otherwise. channels_last optional."""

    def __init__(self, device: torch.device, amp: bool = True, channels_last: bool = True):
        self.device = device
        self.dtype: torch.dtype | None = None
        if amp and device.type == "cuda":
            self.dtype = torch.float16
        elif amp and device.type == "cpu" and cpu_has_native_bf16():
            self.dtype = torch.bfloat16
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def __str__(self) -> str:
        dtype = {torch.float16: "fp16 AMP", torch.bfloat16: "bf16 autocast", None: "fp32"}[self.dtype]
        return dtype + (" + channels-last" if self.memory_format == torch.channels_last else "")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=self.memory_format)

    def prepare_input(self, imgs: torch.Tensor) -> torch.Tensor:
        return imgs.contiguous(memory_format=self.memory_format)
