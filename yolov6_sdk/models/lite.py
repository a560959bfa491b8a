"""YOLOv6-Lite: the CPU and mobile models (official yolov6/models/yolo_lite.py and its blocks).

ShuffleNet-style backbone (channel split and shuffle, depthwise convs, squeeze-excitation with Hardsigmoid),
Hardswish everywhere, a neck of CSP blocks at one unified width whose stride-64 level is the sum of two stride-2
depthwise-pointwise blocks, and a four-level head of those blocks regressing raw ltrb distances (no DFL, no
projection). Attribute names reproduce the official state_dict layout.
"""

from __future__ import annotations

import torch
from torch import nn

from yolov6_sdk.models.blocks import WrappedConvBN, conv_with_weights, fold_batchnorm
from yolov6_sdk.models.head import DecoupledHead

LITE_BASE_CHANNELS = (24, 32, 64, 128, 256)
"""Backbone widths before scaling: first conv, then the four stages (strides 4, 8, 16, 32)."""
LITE_REPEATS = (1, 3, 7, 3)
"""Blocks per backbone stage (not depth-scaled)."""
LITE_NECK_CHANNELS = 96
"""Width of every neck and head level; not width-scaled."""


def make_divisible_16(value: float, divisor: int = 16) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10 % down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def lite_widths(width_multiple: float) -> tuple[list[int], list[int]]:
    """(out, mid) channels of the backbone: ``out`` [5] (first conv forced to 24), ``mid`` [5] the hidden width of
    each stage's blocks (half of ``out`` rounded to a multiple of 8; entry 0 unused)."""
    out = [make_divisible_16(c * width_multiple) for c in LITE_BASE_CHANNELS]
    mid = [make_divisible_16(int(c * 0.5), divisor=8) for c in out]
    out[0] = 24
    return out, mid


def conv_hs(cin: int, cout: int, kernel_size: int, stride: int = 1, groups: int = 1, deploy: bool = False) -> nn.Module:
    """Conv + BN + Hardswish (the official ConvBNHS, keys ``block.conv``, ``block.bn``)."""
    return WrappedConvBN(cin, cout, kernel_size, stride, act="hardswish", groups=groups, deploy=deploy)


def conv_bn(cin: int, cout: int, stride: int, groups: int, deploy: bool = False) -> nn.Module:
    """3x3 conv + BN without activation (the official ConvBN, keys ``block.conv``, ``block.bn``)."""
    return WrappedConvBN(cin, cout, 3, stride, act=None, groups=groups, deploy=deploy)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H, W] with the channels of ``groups`` interleaved (ShuffleNet)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class SEBlock(nn.Module):
    """Squeeze-excitation: x * hardsigmoid(conv2(relu(conv1(avgpool(x))))), hidden width C // 4. Shape kept."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels // reduction, channels, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))


class Lite_EffiBlockS1(nn.Module):  # noqa: N801 - the official class name
    """Stride-1 block: split channels in half, transform one half (1x1, depthwise 3x3, SE, 1x1), concat, shuffle.

    Shapes: [B, C, H, W] -> [B, C, H, W] (``out_channels`` == C).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, deploy: bool = False) -> None:
        super().__init__()
        self.conv_pw_1 = conv_hs(in_channels // 2, mid_channels, 1, deploy=deploy)
        self.conv_dw_1 = conv_bn(mid_channels, mid_channels, 1, mid_channels, deploy=deploy)
        self.se = SEBlock(mid_channels)
        self.conv_1 = conv_hs(mid_channels, out_channels // 2, 1, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, transformed = x.chunk(2, dim=1)  # [B, C/2, H, W] each
        transformed = self.conv_1(self.se(self.conv_dw_1(self.conv_pw_1(transformed))))
        return channel_shuffle(torch.cat((kept, transformed), dim=1))


class Lite_EffiBlockS2(nn.Module):  # noqa: N801 - the official class name
    """Stride-2 block: two branches (depthwise 3x3 s2 + 1x1; 1x1 + depthwise 3x3 s2 + SE + 1x1) concatenated, then
    a depthwise 3x3 and a 1x1. Shapes: [B, C_in, H, W] -> [B, C_out, H/2, W/2]."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, deploy: bool = False) -> None:
        super().__init__()
        half_mid, half_out = mid_channels // 2, out_channels // 2
        self.conv_dw_1 = conv_bn(in_channels, in_channels, 2, in_channels, deploy=deploy)
        self.conv_1 = conv_hs(in_channels, half_out, 1, deploy=deploy)
        self.conv_pw_2 = conv_hs(in_channels, half_mid, 1, deploy=deploy)
        self.conv_dw_2 = conv_bn(half_mid, half_mid, 2, half_mid, deploy=deploy)
        self.se = SEBlock(half_mid)
        self.conv_2 = conv_hs(half_mid, half_out, 1, deploy=deploy)
        self.conv_dw_3 = conv_hs(out_channels, out_channels, 3, groups=out_channels, deploy=deploy)
        self.conv_pw_3 = conv_hs(out_channels, out_channels, 1, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1 = self.conv_1(self.conv_dw_1(x))  # [B, C_out/2, H/2, W/2]
        branch2 = self.conv_2(self.se(self.conv_dw_2(self.conv_pw_2(x))))  # [B, C_out/2, H/2, W/2]
        return self.conv_pw_3(self.conv_dw_3(torch.cat((branch1, branch2), dim=1)))


class DPBlock(nn.Module):
    """Depthwise k x k conv (with bias) -> BN -> Hardswish -> 1x1 conv (with bias) -> BN -> Hardswish.

    Keys ``conv_dw_1, bn_1, conv_pw_1, bn_2`` (no ``.block`` level). Shapes: [B, C, H, W] -> [B, C, H/s, W/s].
    :meth:`fuse` folds both BNs into their convs (``bn_1``, ``bn_2`` become None).
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, deploy: bool = False) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv_dw_1 = nn.Conv2d(channels, channels, kernel_size, stride, padding, groups=channels)
        self.bn_1 = None if deploy else nn.BatchNorm2d(channels)
        self.act_1 = nn.Hardswish(inplace=True)
        self.conv_pw_1 = nn.Conv2d(channels, channels, 1)
        self.bn_2 = None if deploy else nn.BatchNorm2d(channels)
        self.act_2 = nn.Hardswish(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_dw_1(x)
        x = self.act_1(self.bn_1(x) if self.bn_1 is not None else x)
        x = self.conv_pw_1(x)
        return self.act_2(self.bn_2(x) if self.bn_2 is not None else x)

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn_1 is None:
            return
        self.conv_dw_1 = conv_with_weights(
            self.conv_dw_1, *fold_batchnorm(self.conv_dw_1.weight, self.conv_dw_1.bias, self.bn_1)
        )
        self.conv_pw_1 = conv_with_weights(
            self.conv_pw_1, *fold_batchnorm(self.conv_pw_1.weight, self.conv_pw_1.bias, self.bn_2)
        )
        self.bn_1 = self.bn_2 = None


class DarknetBlock(nn.Module):
    """1x1 conv+BN+Hardswish then a :class:`DPBlock`. Shapes: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, channels: int, kernel_size: int, deploy: bool = False) -> None:
        super().__init__()
        self.conv_1 = conv_hs(channels, channels, 1, deploy=deploy)
        self.conv_2 = DPBlock(channels, kernel_size, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_2(self.conv_1(x))


class CSPBlock(nn.Module):
    """conv_3(cat(blocks(conv_1(x)), conv_2(x))) with hidden width C_out / 2. [B, C_in, H, W] -> [B, C_out, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, deploy: bool = False) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv_1 = conv_hs(in_channels, hidden, 1, deploy=deploy)
        self.conv_2 = conv_hs(in_channels, hidden, 1, deploy=deploy)
        self.conv_3 = conv_hs(2 * hidden, out_channels, 1, deploy=deploy)
        self.blocks = DarknetBlock(hidden, kernel_size, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_3(torch.cat((self.blocks(self.conv_1(x)), self.conv_2(x)), dim=1))


def _stage(repeats: int, cin: int, mid: int, cout: int, deploy: bool) -> nn.Sequential:
    """One stride-2 block, then ``repeats - 1`` stride-1 blocks (keys ``0``, ``1``, ...)."""
    blocks = [Lite_EffiBlockS2(cin, mid, cout, deploy)]
    blocks += [Lite_EffiBlockS1(cout, mid, cout, deploy) for _ in range(repeats - 1)]
    return nn.Sequential(*blocks)


class LiteBackbone(nn.Module):
    """Official Lite_EffiBackbone. Input [B, 3, H, W]; outputs C3 [B, c2, H/8, W/8], C4 [B, c3, H/16, W/16],
    C5 [B, c4, H/32, W/32] with ``(c0..c4, mid) = lite_widths(width_multiple)``."""

    def __init__(self, width_multiple: float, deploy: bool = False) -> None:
        super().__init__()
        out, mid = lite_widths(width_multiple)
        self.conv_0 = conv_hs(3, out[0], 3, 2, deploy=deploy)
        self.lite_effiblock_1 = _stage(LITE_REPEATS[0], out[0], mid[1], out[1], deploy)
        self.lite_effiblock_2 = _stage(LITE_REPEATS[1], out[1], mid[2], out[2], deploy)
        self.lite_effiblock_3 = _stage(LITE_REPEATS[2], out[2], mid[3], out[3], deploy)
        self.lite_effiblock_4 = _stage(LITE_REPEATS[3], out[3], mid[4], out[4], deploy)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.conv_0(x)  # [B, 24, H/2, W/2]
        x = self.lite_effiblock_1(x)  # [B, c1, H/4, W/4]
        c3 = self.lite_effiblock_2(x)  # [B, c2, H/8, W/8]
        c4 = self.lite_effiblock_3(c3)  # [B, c3, H/16, W/16]
        c5 = self.lite_effiblock_4(c4)  # [B, c4, H/32, W/32]
        return c3, c4, c5


class LiteNeck(nn.Module):
    """Official Lite_EffiNeck: inputs (C3, C4, C5); outputs [P3, P4, P5, P6], each [B, 96, H/s, W/s]."""

    def __init__(self, in_channels: list[int], width: int = LITE_NECK_CHANNELS, deploy: bool = False) -> None:
        super().__init__()
        self.reduce_layer0 = conv_hs(in_channels[2], width, 1, deploy=deploy)
        self.reduce_layer1 = conv_hs(in_channels[1], width, 1, deploy=deploy)
        self.reduce_layer2 = conv_hs(in_channels[0], width, 1, deploy=deploy)
        self.upsample0 = nn.Upsample(scale_factor=2, mode="nearest")
        self.upsample1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.Csp_p4, self.Csp_p3, self.Csp_n3, self.Csp_n4 = (CSPBlock(2 * width, width, 5, deploy) for _ in range(4))
        self.downsample2, self.downsample1, self.p6_conv_1, self.p6_conv_2 = (
            DPBlock(width, 5, 2, deploy) for _ in range(4)
        )

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        c3, c4, c5 = feats
        fpn0 = self.reduce_layer0(c5)  # [B, 96, H/32, W/32]
        lateral4 = self.reduce_layer1(c4)  # [B, 96, H/16, W/16]
        lateral3 = self.reduce_layer2(c3)  # [B, 96, H/8, W/8]
        f_out1 = self.Csp_p4(torch.cat((self.upsample0(fpn0), lateral4), dim=1))  # [B, 96, H/16, W/16]
        pan3 = self.Csp_p3(torch.cat((self.upsample1(f_out1), lateral3), dim=1))  # [B, 96, H/8, W/8]
        pan4 = self.Csp_n3(torch.cat((self.downsample2(pan3), f_out1), dim=1))  # [B, 96, H/16, W/16]
        pan5 = self.Csp_n4(torch.cat((self.downsample1(pan4), fpn0), dim=1))  # [B, 96, H/32, W/32]
        pan6 = self.p6_conv_1(fpn0) + self.p6_conv_2(pan5)  # [B, 96, H/64, W/64]
        return [pan3, pan4, pan5, pan6]


class LiteHead(DecoupledHead):
    """Official Lite Detect: per level DPBlock stem, class and box convs (5x5), 1x1 predictors of nc classes and 4
    raw ltrb distances. Returns raw per-level maps like :class:`~yolov6_sdk.models.head.EffiDeHead`."""

    def __init__(self, num_classes: int, in_channels: list[int], deploy: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stems = nn.ModuleList(DPBlock(c, 5, 1, deploy) for c in in_channels)
        self.cls_convs = nn.ModuleList(DPBlock(c, 5, 1, deploy) for c in in_channels)
        self.reg_convs = nn.ModuleList(DPBlock(c, 5, 1, deploy) for c in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(c, 4, 1) for c in in_channels)
