"""Exponential moving average of a model's weights, as the official trainer keeps it (meituan/YOLOv6 utils/ema.py).

The average covers every floating-point entry of the ``state_dict`` (parameters and BatchNorm buffers); integer
buffers such as ``num_batches_tracked`` are copied as they were at creation. The decay ramps up with the number
of updates: ``decay * (1 - exp(-updates / tau))`` (official: decay 0.9999, tau 2000 optimiser steps).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from yolov6_sdk.errors import CheckpointError, ConfigError


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper (or ``model`` itself)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


class ModelEMA:
    """Moving average of ``model``'s float state, kept in a frozen eval-mode copy (:attr:`ema`).

    Args:
        model: the model being trained (may be wrapped in DDP).
        decay: asymptotic decay (official 0.9999).
        tau: ramp length in updates (official 2000; shorter for runs of a few hundred steps).
        updates: number of updates already applied (when resuming).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        if not 0.0 <= decay < 1.0 or tau <= 0:
            raise ConfigError(f"EMA decay must be in [0, 1) and tau > 0, got decay={decay}, tau={tau}")
        self.ema = copy.deepcopy(unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay_max, self.tau, self.updates = float(decay), float(tau), int(updates)
        averaged = self.ema.state_dict()
        self._keys = [k for k, v in averaged.items() if v.dtype.is_floating_point]
        self._targets = [averaged[k] for k in self._keys]
        self._sources: tuple[int, list[torch.Tensor]] | None = None  # (id of the trained model, its tensors)

    def decay(self, updates: int) -> float:
        """Decay used for update number ``updates`` (1-based)."""
        return self.decay_max * (1.0 - math.exp(-updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s current float state into the average: ``ema = d * ema + (1 - d) * model``."""
        self.updates += 1
        d = self.decay(self.updates)
        bare = unwrap(model)
        if self._sources is None or self._sources[0] != id(bare):
            current = bare.state_dict()  # detached views that the optimizer's in-place steps keep current
            self._sources = (id(bare), [current[k] for k in self._keys])
        sources = [x.to(t.dtype) for x, t in zip(self._sources[1], self._targets, strict=True)]
        torch._foreach_lerp_(self._targets, sources, 1.0 - d)  # one pass over all tensors: ema += (1-d)(x-ema)

    def state_dict(self) -> dict[str, Any]:
        """Averaged weights and the update count, for a resumable training state."""
        return {"weights": self.ema.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        try:
            self.ema.load_state_dict(state["weights"])
            self.updates = int(state["updates"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"the EMA entry of the training state does not fit this model: {exc}") from exc


__all__ = ["ModelEMA", "unwrap"]
