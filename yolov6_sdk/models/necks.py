"""Necks: Rep-PAN (paper line, fed by P3..P5) and its v3.0 BiFusion form (fed by P2..P5).

Their CSP forms (CSPRepPAN, CSPRepBiFPAN) are the same wiring with BepC3 stages, chosen by the ``stage`` factory.
Channel indices ``c[i]`` follow the scaled channel list of :class:`~yolov6_sdk.models.zoo.ModelConfig`.
"""

from __future__ import annotations

import torch
from torch import nn

from yolov6_sdk.models.backbones import Stage
from yolov6_sdk.models.blocks import BiFusion, ConvFactory, Transpose


class _BottomUp(nn.Module):
    """The bottom-up half shared by both necks: two stride-2 downsamples, each fused with a top-down feature."""

    def _init_bottom_up(self, c: list[int], n: list[int], conv: ConvFactory, stage: Stage) -> None:
        self.downsample2 = conv(c[6], c[7], 3, 2)
        self.Rep_n3 = stage(c[6] + c[7], c[8], n[7])
        self.downsample1 = conv(c[8], c[9], 3, 2)
        self.Rep_n4 = stage(c[5] + c[9], c[10], n[8])

    def _bottom_up(self, pan2: torch.Tensor, fpn1: torch.Tensor, fpn0: torch.Tensor) -> list[torch.Tensor]:
        pan1 = self.Rep_n3(torch.cat((self.downsample2(pan2), fpn1), dim=1))  # [B, c8, H/16, W/16]
        pan0 = self.Rep_n4(torch.cat((self.downsample1(pan1), fpn0), dim=1))  # [B, c10, H/32, W/32]
        return [pan2, pan1, pan0]


class RepPAN(_BottomUp):
    """Rep-PAN neck. Inputs (P3, P4, P5) from the backbone; outputs [P3', P4', P5'] with c6, c8, c10 channels."""

    def __init__(self, c: list[int], n: list[int], conv: ConvFactory, stage: Stage) -> None:
        super().__init__()
        self.Rep_p4 = stage(c[3] + c[5], c[5], n[5])
        self.Rep_p3 = stage(c[2] + c[6], c[6], n[6])
        self._init_bottom_up(c, n, conv, stage)
        self.reduce_layer0 = conv(c[4], c[5], 1, 1)
        self.upsample0 = Transpose(c[5], c[5])
        self.reduce_layer1 = conv(c[5], c[6], 1, 1)
        self.upsample1 = Transpose(c[6], c[6])

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        fpn0 = self.reduce_layer0(p5)  # [B, c5, H/32, W/32]
        f_out0 = self.Rep_p4(torch.cat((self.upsample0(fpn0), p4), dim=1))  # [B, c5, H/16, W/16]
        fpn1 = self.reduce_layer1(f_out0)  # [B, c6, H/16, W/16]
        pan2 = self.Rep_p3(torch.cat((self.upsample1(fpn1), p3), dim=1))  # [B, c6, H/8, W/8]
        return self._bottom_up(pan2, fpn1, fpn0)


class RepBiFPAN(_BottomUp):
    """v3.0 neck with BiFusion. Inputs (P2, P3, P4, P5); outputs [P3', P4', P5'] with c6, c8, c10 channels."""

    def __init__(self, c: list[int], n: list[int], conv: ConvFactory, stage: Stage) -> None:
        super().__init__()
        self.reduce_layer0 = conv(c[4], c[5], 1, 1)
        self.Bifusion0 = BiFusion((c[3], c[2]), c[5], conv)
        self.Rep_p4 = stage(c[5], c[5], n[5])
        self.reduce_layer1 = conv(c[5], c[6], 1, 1)
        self.Bifusion1 = BiFusion((c[2], c[1]), c[6], conv)
        self.Rep_p3 = stage(c[6], c[6], n[6])
        self._init_bottom_up(c, n, conv, stage)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p2, p3, p4, p5 = feats
        fpn0 = self.reduce_layer0(p5)  # [B, c5, H/32, W/32]
        f_out0 = self.Rep_p4(self.Bifusion0([fpn0, p4, p3]))  # [B, c5, H/16, W/16]
        fpn1 = self.reduce_layer1(f_out0)  # [B, c6, H/16, W/16]
        pan2 = self.Rep_p3(self.Bifusion1([fpn1, p3, p2]))  # [B, c6, H/8, W/8]
        return self._bottom_up(pan2, fpn1, fpn0)


class RepBiFPAN6(nn.Module):
    """The P6 form of the v3.0 BiFusion neck (official RepBiFPANNeck6 / CSPRepBiFPANNeck_P6).

    Inputs (P2, P3, P4, P5, P6) from the backbone; three top-down BiFusion steps, then three bottom-up steps.
    Outputs [P3', P4', P5', P6'] with c8, c9, c10, c11 channels (indices of the 12-entry P6 channel list; the
    BiFusion input widths follow the official indices).
    """

    def __init__(self, c: list[int], n: list[int], conv: ConvFactory, stage: Stage) -> None:
        super().__init__()
        self.reduce_layer0 = conv(c[5], c[6], 1, 1)
        self.Bifusion0 = BiFusion((c[4], c[6]), c[6], conv)
        self.Rep_p5 = stage(c[6], c[6], n[6])
        self.reduce_layer1 = conv(c[6], c[7], 1, 1)
        self.Bifusion1 = BiFusion((c[3], c[7]), c[7], conv)
        self.Rep_p4 = stage(c[7], c[7], n[7])
        self.reduce_layer2 = conv(c[7], c[8], 1, 1)
        self.Bifusion2 = BiFusion((c[2], c[8]), c[8], conv)
        self.Rep_p3 = stage(c[8], c[8], n[8])
        self.downsample2 = conv(c[8], c[8], 3, 2)
        self.Rep_n4 = stage(c[8] + c[8], c[9], n[9])
        self.downsample1 = conv(c[9], c[9], 3, 2)
        self.Rep_n5 = stage(c[7] + c[9], c[10], n[10])
        self.downsample0 = conv(c[10], c[10], 3, 2)
        self.Rep_n6 = stage(c[6] + c[10], c[11], n[11])

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p2, p3, p4, p5, p6 = feats
        fpn0 = self.reduce_layer0(p6)  # [B, c6, H/64, W/64]
        f_out0 = self.Rep_p5(self.Bifusion0([fpn0, p5, p4]))  # [B, c6, H/32, W/32]
        fpn1 = self.reduce_layer1(f_out0)  # [B, c7, H/32, W/32]
        f_out1 = self.Rep_p4(self.Bifusion1([fpn1, p4, p3]))  # [B, c7, H/16, W/16]
        fpn2 = self.reduce_layer2(f_out1)  # [B, c8, H/16, W/16]
        pan3 = self.Rep_p3(self.Bifusion2([fpn2, p3, p2]))  # [B, c8, H/8, W/8]
        pan4 = self.Rep_n4(torch.cat((self.downsample2(pan3), fpn2), dim=1))  # [B, c9, H/16, W/16]
        pan5 = self.Rep_n5(torch.cat((self.downsample1(pan4), fpn1), dim=1))  # [B, c10, H/32, W/32]
        pan6 = self.Rep_n6(torch.cat((self.downsample0(pan5), fpn0), dim=1))  # [B, c11, H/64, W/64]
        return [pan3, pan4, pan5, pan6]
