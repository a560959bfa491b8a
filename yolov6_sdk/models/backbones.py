"""Backbones: EfficientRep (RepBlock stages, small models) and its CSP form (BepC3 stages, CSPBepBackbone)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from yolov6_sdk.models.blocks import BasicBlock

Stage = Callable[[int, int, int], nn.Module]
"""``stage(in_channels, out_channels, repeats) -> module`` keeping the spatial size."""
MergeLayer = Callable[[int, int], nn.Module]
"""``merge(in_channels, out_channels) -> module``: the SPPF-style layer closing the last stage."""


class EfficientRep(nn.Module):
    """EfficientRep backbone; with BepC3 stages it is the paper's CSPBepBackbone.

    Five stride-2 steps: stem (s2), then ERBlock_2..5, each a stride-2 basic block followed by a stage;
    ERBlock_5 ends with the merge layer (SimSPPF / SPPF / CSPSPPF).
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
        self.stem = basic(3, channels[0], stride=2)
        self.ERBlock_2 = nn.Sequential(
            basic(channels[0], channels[1], stride=2), stage(channels[1], channels[1], repeats[1])
        )
        self.ERBlock_3 = nn.Sequential(
            basic(channels[1], channels[2], stride=2), stage(channels[2], channels[2], repeats[2])
        )
        self.ERBlock_4 = nn.Sequential(
            basic(channels[2], channels[3], stride=2), stage(channels[3], channels[3], repeats[3])
        )
        self.ERBlock_5 = nn.Sequential(
            basic(channels[3], channels[4], stride=2),
            stage(channels[4], channels[4], repeats[4]),
            merge(channels[4], channels[4]),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)  # [B, C0, H/2, W/2]
        p2 = self.ERBlock_2(x)  # [B, C1, H/4, W/4]
        p3 = self.ERBlock_3(p2)  # [B, C2, H/8, W/8]
        p4 = self.ERBlock_4(p3)  # [B, C3, H/16, W/16]
        p5 = self.ERBlock_5(p4)  # [B, C4, H/32, W/32]
        return (p2, p3, p4, p5) if self.return_p2 else (p3, p4, p5)


class EfficientRep6(nn.Module):
    """EfficientRep with a sixth stride-2 step (the P6 models; with BepC3 stages the official CSPBepBackbone_P6).

    Stem (s2), then ERBlock_2..6, each a stride-2 basic block followed by a stage; ERBlock_6 ends with the merge
    layer. Input [B, 3, H, W] (H, W multiples of 64); outputs P2 [B, C1, H/4, W/4], P3 [B, C2, H/8, W/8],
    P4 [B, C3, H/16, W/16], P5 [B, C4, H/32, W/32], P6 [B, C5, H/64, W/64].
    """

    def __init__(
        self, channels: list[int], repeats: list[int], basic: BasicBlock, stage: Stage, merge: MergeLayer
    ) -> None:
        super().__init__()
        self.stem = basic(3, channels[0], stride=2)
        self.ERBlock_2 = nn.Sequential(
            basic(channels[0], channels[1], stride=2), stage(channels[1], channels[1], repeats[1])
        )
        self.ERBlock_3 = nn.Sequential(
            basic(channels[1], channels[2], stride=2), stage(channels[2], channels[2], repeats[2])
        )
        self.ERBlock_4 = nn.Sequential(
            basic(channels[2], channels[3], stride=2), stage(channels[3], channels[3], repeats[3])
        )
        self.ERBlock_5 = nn.Sequential(
            basic(channels[3], channels[4], stride=2), stage(channels[4], channels[4], repeats[4])
        )
        self.ERBlock_6 = nn.Sequential(
            basic(channels[4], channels[5], stride=2),
            stage(channels[5], channels[5], repeats[5]),
            merge(channels[5], channels[5]),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)  # [B, C0, H/2, W/2]
        p2 = self.ERBlock_2(x)  # [B, C1, H/4, W/4]
        p3 = self.ERBlock_3(p2)  # [B, C2, H/8, W/8]
        p4 = self.ERBlock_4(p3)  # [B, C3, H/16, W/16]
        p5 = self.ERBlock_5(p4)  # [B, C4, H/32, W/32]
        p6 = self.ERBlock_6(p5)  # [B, C5, H/64, W/64]
        return p2, p3, p4, p5, p6
