"""The efficient decoupled head: per level a 1x1 stem, then separate 3x3 class and box convs and 1x1 predictors.

Anchor-free, one point per cell. The head only computes raw per-level maps (style rule S6); turning them into
boxes is :mod:`yolov6_sdk.models.decode`. State-dict names follow the official ``Detect`` module.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from yolov6_sdk.models.blocks import ConvFactory

DFL_BINS = 17
"""The official head always carries a 17-bin projection (reg_max 16), even when it regresses 4 raw distances."""


class HeadLevel(NamedTuple):
    """Raw head outputs of one level (H x W cells).

    cls_logits: [B, nc, H, W] class logits (before sigmoid).
    reg: [B, R, H, W] box regression of ``reg_preds``: R = 4 raw ltrb distances in grid units, or 4 * 17 DFL
        logits (side-major: 17 bins of l, then t, r, b).
    reg_dist: [B, 68, H, W] the DFL branch ``reg_preds_dist`` of distillation heads (training only), else None.
    """

    cls_logits: torch.Tensor
    reg: torch.Tensor
    reg_dist: torch.Tensor | None


class DecoupledHead(nn.Module):
    """The per-level run every YOLOv6 head shares, over ``stems``, ``cls_convs``, ``reg_convs``, ``cls_preds``,
    ``reg_preds`` (and ``reg_preds_dist`` when the head has the distillation branch), which subclasses build."""

    num_classes: int

    @torch.no_grad()
    def initialize_biases(self, prior_prob: float = 0.01) -> None:
        """Official init: predictors start at zero weights, class prior 1 %, box distances 1.0."""
        for conv in self.cls_preds:
            conv.weight.zero_()
            conv.bias.fill_(-math.log((1 - prior_prob) / prior_prob))
        reg_lists = [self.reg_preds, *([self.reg_preds_dist] if hasattr(self, "reg_preds_dist") else [])]
        for conv in (c for convs in reg_lists for c in convs):
            conv.weight.zero_()
            conv.bias.fill_(1.0)

    def forward(self, feats: list[torch.Tensor]) -> list[HeadLevel]:
        """Neck outputs [B, C_i, H_i, W_i] -> one :class:`HeadLevel` per level."""
        levels = []
        for i, x in enumerate(feats):
            x = self.stems[i](x)
            cls_feat = self.cls_convs[i](x)
            reg_feat = self.reg_convs[i](x)
            reg_dist = self.reg_preds_dist[i](reg_feat) if hasattr(self, "reg_preds_dist") and self.training else None
            levels.append(HeadLevel(self.cls_preds[i](cls_feat), self.reg_preds[i](reg_feat), reg_dist))
        return levels


class EffiDeHead(DecoupledHead):
    """Efficient decoupled head over the neck outputs [P3', P4', P5'] (channels ``in_channels``)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: list[int],
        conv: ConvFactory,
        reg_channels: int,
        distill_branch: bool,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.proj_conv = nn.Conv2d(DFL_BINS, 1, 1, bias=False)
        self.stems = nn.ModuleList(conv(c, c, 1, 1, "silu") for c in in_channels)
        self.cls_convs = nn.ModuleList(conv(c, c, 3, 1, "silu") for c in in_channels)
        self.reg_convs = nn.ModuleList(conv(c, c, 3, 1, "silu") for c in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in in_channels)
        if distill_branch:
            self.reg_preds_dist = nn.ModuleList(nn.Conv2d(c, 4 * DFL_BINS, 1) for c in in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(c, reg_channels, 1) for c in in_channels)
        self.proj = nn.Parameter(torch.linspace(0, DFL_BINS - 1, DFL_BINS), requires_grad=False)
        self.proj_conv.weight = nn.Parameter(self.proj.view(1, DFL_BINS, 1, 1).clone(), requires_grad=False)
