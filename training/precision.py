"""Which arithmetic the forward and backward passes of a training step use: fp16 autocast on CUDA, bfloat16
autocast on a CPU that computes bfloat16 natively (AVX512-BF16 or AMX), float32 everywhere else.

Emulated bfloat16 (a CPU without those instructions) is slower than float32, so it is never chosen there. The
loss is always computed in float32 from float32 copies of the model's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def cpu_has_native_bf16() -> bool:
    """True when this CPU runs bfloat16 matrix work in hardware (AVX512-BF16 or AMX tiles)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@dataclass(frozen=True)
class StepPrecision:
    """The autocast setting of a training step.

    ``dtype`` None means float32 (autocast off); ``scaler`` is True for CUDA fp16, whose gradients need loss
    scaling; ``reason`` says in words why this path was taken (it is logged once per run).
    """

    device_type: str
    dtype: torch.dtype | None
    scaler: bool
    reason: str

    @property
    def name(self) -> str:
        return {None: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[self.dtype]

    def autocast(self) -> torch.autocast:
        """Context manager for the forward pass (a no-op in float32)."""
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)


def choose_precision(device: torch.device, amp: bool) -> StepPrecision:
    """Mixed precision for ``device`` when ``amp`` allows it and the hardware makes it pay."""
    if not amp:
        return StepPrecision(device.type, None, False, "mixed precision switched off (--no-amp)")
    if device.type == "cuda":
        return StepPrecision("cuda", torch.float16, True, "CUDA: float16 autocast with loss scaling")
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return StepPrecision("cpu", torch.bfloat16, False, "CPU with native bfloat16: bfloat16 autocast")
        return StepPrecision("cpu", None, False, "CPU without AVX512-BF16 or AMX: float32 (bfloat16 would be emulated)")
    return StepPrecision(device.type, None, False, f"{device.type}: float32")


__all__ = ["StepPrecision", "choose_precision", "cpu_has_native_bf16"]
