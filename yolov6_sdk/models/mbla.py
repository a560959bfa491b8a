"""MBLA: the multi-branch layer aggregation stage of the official ``configs/mbla`` models (``MBLABlock``).

A 1x1 conv widens the input to one slice per branch; branch 0 is the slice itself, each further branch is a chain of
:class:`BottleRep3` blocks started from its own slice, and every intermediate output of every chain is
concatenated before a closing 1x1 conv. The two 1x1 convs are flat conv+BN (keys ``cv1.conv.weight``,
``cv1.bn.*``, no ``.block`` level).
"""

from __future__ import annotations

import torch
from torch import nn

from yolov6_sdk.models.blocks import BasicBlock, ConvFactory


def mbla_branch_depths(n: int) -> list[int]:
    """Chain lengths of the branches of an MBLABlock of ``n`` repeats, laid out from ``n // 2`` (at least 1):
    ``[0, 1]`` for one step, else ``[0, p, n // 2]`` with ``p`` the largest power of two below ``n // 2``."""
    half = max(n // 2, 1)
    if half == 1:
        return [0, 1]
    step = 1
    while step * 2 < half:
        step *= 2
    return [0, step, half]


class BottleRep3(nn.Module):
    """Three basic blocks with a learnable-scale residual: conv3(conv2(conv1(x))) + alpha * x when in == out.

    ``alpha`` [1] is a parameter (initialised to 1) when ``weight``, else the constant 1.0.
    Shapes: [B, C_in, H, W] -> [B, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, basic: BasicBlock, weight: bool = False) -> None:
        super().__init__()
        self.conv1 = basic(in_channels, out_channels)
        self.conv2 = basic(out_channels, out_channels)
        self.conv3 = basic(out_channels, out_channels)
        self.shortcut = in_channels == out_channels
        self.alpha = nn.Parameter(torch.ones(1)) if weight else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        return out + self.alpha * x if self.shortcut else out


class MBLABlock(nn.Module):
    """Multi-branch layer aggregation stage of ``n`` repeats with hidden width ``c = int(out * e)``.

    ``cv1``: [B, C_in, H, W] -> [B, k * c, H, W] for k branches (:func:`mbla_branch_depths`); ``m[i]`` the chain
    of branch i + 1; ``cv2``: the concatenation of the k slices and every chain output, [B, (k + sum) * c, H, W]
    -> [B, C_out, H, W]. Both 1x1 convs carry the activation ``act``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, n: int, e: float, basic: BasicBlock, deploy: bool, act: str
    ) -> None:
        super().__init__()
        depths = mbla_branch_depths(n)
        self.c = int(out_channels * e)
        conv = ConvFactory(wrapped=False, deploy=deploy)
        self.cv1 = conv(in_channels, len(depths) * self.c, 1, 1, act)
        self.cv2 = conv((sum(depths) + len(depths)) * self.c, out_channels, 1, 1, act)
        self.m = nn.ModuleList(
            nn.Sequential(*(BottleRep3(self.c, self.c, basic, weight=True) for _ in range(depth)))
            for depth in depths[1:]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slices = self.cv1(x).split(self.c, dim=1)  # k x [B, c, H, W]
        outputs = [slices[0]]
        for start, chain in zip(slices[1:], self.m, strict=True):
            outputs.append(start)
            for block in chain:
                outputs.append(block(outputs[-1]))  # [B, c, H, W]
        return self.cv2(torch.cat(outputs, dim=1))
