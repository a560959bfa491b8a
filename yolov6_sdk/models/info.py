"""Parameter and FLOP counts of zoo models, measured with torch's own FlopCounterMode.

The model is built on the meta device (no memory, no arithmetic) and fused first, as the official figures are
for deployed models. FLOPs count a multiply-add as 2, the convention of the official tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from yolov6_sdk.models import ZOO, build_model, fuse


@dataclass(frozen=True)
class ModelSize:
    """Size of one fused model: ``params_m`` in millions, ``gflops`` for one image of ``imgsz`` (H, W)."""

    name: str
    line: str
    params_m: float
    gflops: float
    imgsz: tuple[int, int]


def model_info(name: str, imgsz: tuple[int, int] | None = None, num_classes: int = 80) -> ModelSize:
    """Count the fused parameters and the FLOPs of one forward pass at batch 1, at ``imgsz`` (H, W) or, when
    None, the model's official size (1280 for P6, 640 otherwise)."""
    if imgsz is None:
        imgsz = (ZOO[name].imgsz, ZOO[name].imgsz)
    with torch.device("meta"):
        model = fuse(build_model(name, num_classes).eval())
        params = sum(p.numel() for p in model.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, *imgsz))
    return ModelSize(name, model.config.line, params / 1e6, counter.get_total_flops() / 1e9, imgsz)


def zoo_table(imgsz: tuple[int, int] | None = None) -> list[ModelSize]:
    """One :class:`ModelSize` per zoo config, in zoo order, at ``imgsz`` or each model's official size."""
    return [model_info(name, imgsz) for name in ZOO]
