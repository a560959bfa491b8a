"""Backbones: EfficientRep (RepBlock stages, small models), its CSP form (BepC3 or MBLA stages, CSPBepBackbone)
and their six-step P6 forms, all built of the same stride-2 steps (:func:`er_block`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from yolov6_sdk.models.blocks import BasicBlock

Stage = Callable[[int, int, int], nn.Module]
"""``stage(in_channels, out_channels, repeats) -> module`` keeping the spatial size."""
MergeLayer = Callable[[int, int], nn.Module]
"""``merge(in_channels, out_channels) -> module``: the SPPF-style layer closing the last stage."""


def er_block(
    in_channels: int, out_channels: int, repeats: int, basic: BasicBlock, stage: Stage, merge: MergeLayer | None = None
) -> nn.Sequential:
    """One backbone step ``ERBlock_k``: a stride-2 basic block (key ``0``), a stage (``1``) and, closing the last
    step, the merge layer (``2``). [B, C_in, H, W] -> [B, C_out, H/2, W/2]."""
    layers = [basic(in_channels, out_channels, stride=2), stage(out_channels, out_channels, repeats)]
    if merge is not None:
        layers.append(merge(out_channels, out_channels))
    return nn.Sequential(*layers)


class EfficientRep(nn.Module):
    """EfficientRep backbone; with BepC3 stages it is the paper's CSPBepBackbone.

    Five stride-2 steps: stem (s2), then ERBlock_2..5 (:func:`er_block`); ERBlock_5 ends with the merge layer
    (SimSPPF / SPPF / CSPSPPF).
    Input [B, 3, H, W]; outputs (P2 [B, C1, H/4, W/4] when ``return_p2``,) P3 [B, C2, H/8, W/8],
    P4 [B, C3, H/16, W/16], P5 [B, C4, H/32, W/32].
    """

    def __init__(
        self,
        channels: list[int],
        repeats: list[int],
        basic: BasicBlock,
        stage: Stage,
        merge: MergeLayer,
        return_p2: bool,
    ) -> None:
        super().__init__()
        self.return_p2 = return_p2
        c, n = channels, repeats
        self.stem = basic(3, c[0], stride=2)
        self.ERBlock_2 = er_block(c[0], c[1], n[1], basic, stage)
        self.ERBlock_3 = er_block(c[1], c[2], n[2], basic, stage)
        self.ERBlock_4 = er_block(c[2], c[3], n[3], basic, stage)
        self.ERBlock_5 = er_block(c[3], c[4], n[4], basic, stage, merge)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)  # [B, C0, H/2, W/2]
        p2 = self.ERBlock_2(x)  # [B, C1, H/4, W/4]
        p3 = self.ERBlock_3(p2)  # [B, C2, H/8, W/8]
        p4 = self.ERBlock_4(p3)  # [B, C3, H/16, W/16]
        p5 = self.ERBlock_5(p4)  # [B, C4, H/32, W/32]
        return (p2, p3, p4, p5) if self.return_p2 else (p3, p4, p5)


class EfficientRep6(nn.Module):
    """EfficientRep with a sixth stride-2 step (the P6 models; with BepC3 stages the official CSPBepBackbone_P6).

    Stem (s2), then ERBlock_2..6 (:func:`er_block`); ERBlock_6 ends with the merge layer. Input [B, 3, H, W]
    (H, W multiples of 64); outputs P2 [B, C1, H/4, W/4], P3 [B, C2, H/8, W/8], P4 [B, C3, H/16, W/16],
    P5 [B, C4, H/32, W/32], P6 [B, C5, H/64, W/64].
    """

    def __init__(
        self, channels: list[int], repeats: list[int], basic: BasicBlock, stage: Stage, merge: MergeLayer
    ) -> None:
        super().__init__()
        c, n = channels, repeats
        self.stem = basic(3, c[0], stride=2)
        self.ERBlock_2 = er_block(c[0], c[1], n[1], basic, stage)
        self.ERBlock_3 = er_block(c[1], c[2], n[2], basic, stage)
        self.ERBlock_4 = er_block(c[2], c[3], n[3], basic, stage)
        self.ERBlock_5 = er_block(c[3], c[4], n[4], basic, stage)
        self.ERBlock_6 = er_block(c[4], c[5], n[5], basic, stage, merge)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)  # [B, C0, H/2, W/2]
        p2 = self.ERBlock_2(x)  # [B, C1, H/4, W/4]
        p3 = self.ERBlock_3(p2)  # [B, C2, H/8, W/8]
        p4 = self.ERBlock_4(p3)  # [B, C3, H/16, W/16]
        p5 = self.ERBlock_5(p4)  # [B, C4, H/32, W/32]
        p6 = self.ERBlock_6(p5)  # [B, C5, H/64, W/64]
        return p2, p3, p4, p5, p6
