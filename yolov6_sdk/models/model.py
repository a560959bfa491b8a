"""Assembly of a YOLOv6 network from a :class:`~yolov6_sdk.models.zoo.ModelConfig`."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from yolov6_sdk.models.backbones import EfficientRep, EfficientRep6, MergeLayer, Stage
from yolov6_sdk.models.blocks import (
    SPPF,
    BasicBlock,
    BepC3,
    ConvFactory,
    CSPSPPFWrapper,
    LinearAddBlock,
    RealVGGBlock,
    RepBlock,
    RepVGGBlock,
    SPPFWrapper,
    WrappedConvBN,
)
from yolov6_sdk.models.decode import TrainOutput, decode_predictions, training_output
from yolov6_sdk.models.head import EffiDeHead
from yolov6_sdk.models.lite import LITE_NECK_CHANNELS, LiteBackbone, LiteHead, LiteNeck, lite_widths
from yolov6_sdk.models.mbla import MBLABlock
from yolov6_sdk.models.necks import RepBiFPAN, RepBiFPAN6, RepPAN
from yolov6_sdk.models.qarepvgg import QARepVGGBlock, QARepVGGBlockV2
from yolov6_sdk.models.zoo import ModelConfig


def _basic_block(cfg: ModelConfig, deploy: bool) -> BasicBlock:
    block_classes = {
        "repvgg": RepVGGBlock,
        "qarepvgg": QARepVGGBlock,
        "qarepvgg_v2": QARepVGGBlockV2,
        "repopt": RealVGGBlock,
        "hyper_search": LinearAddBlock,
    }
    if cfg.block in block_classes:
        return partial(block_classes[cfg.block], deploy=deploy)

    act = {"conv_silu": "silu", "conv_relu": "relu"}[cfg.block]

    def conv_bn_act(in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
        # The paper line's ConvWrapper built its 3x3 conv with a bias; v3.0's ConvBNSiLU / ConvBNReLU without.
        return WrappedConvBN(in_channels, out_channels, 3, stride, act=act, bias=cfg.legacy_layout, deploy=deploy)

    return conv_bn_act


def _stage(cfg: ModelConfig, basic: BasicBlock, conv: ConvFactory, csp_act: str) -> Stage:
    if cfg.mbla:
        return lambda cin, cout, n: MBLABlock(cin, cout, n, cfg.csp_e, basic, conv.deploy, csp_act)
    if cfg.csp:
        return lambda cin, cout, n: BepC3(cin, cout, n, cfg.csp_e, basic, conv, csp_act)
    return lambda cin, cout, n: RepBlock(cin, cout, n, basic)


def _merge_layer(cfg: ModelConfig, conv: ConvFactory, act: str) -> MergeLayer:
    if cfg.legacy_layout:
        return lambda cin, cout: SPPF(cin, cout, conv, act)
    wrapper = CSPSPPFWrapper if cfg.cspsppf else SPPFWrapper
    return lambda cin, cout: wrapper(cin, cout, conv, act)


Parts = tuple[nn.Module, nn.Module, nn.Module]
"""(backbone, neck, detect) of one network."""


def _rep_parts(config: ModelConfig, num_classes: int, deploy: bool) -> Parts:
    """EfficientRep / CSPBep backbone, Rep-PAN or BiFusion neck (P6 forms for four levels) and the decoupled head."""
    c, n = config.channels, config.repeats
    conv = ConvFactory(wrapped=not config.legacy_layout, deploy=deploy)
    basic = _basic_block(config, deploy)
    act = "silu" if config.block == "conv_silu" else "relu"
    # The neck's own convs are ReLU in every official config; only its BepC3 stages follow the block type.
    stage, merge = _stage(config, basic, conv, act), _merge_layer(config, conv, act)
    if config.p6:
        backbone: nn.Module = EfficientRep6(c, n, basic, stage, merge)
        neck: nn.Module = RepBiFPAN6(c, n, conv, stage)
        head_channels = [c[8], c[9], c[10], c[11]]
    else:
        backbone = EfficientRep(c, n, basic, stage, merge, return_p2=config.bifusion)
        neck = (RepBiFPAN if config.bifusion else RepPAN)(c, n, conv, stage)
        head_channels = [c[6], c[8], c[10]]
    reg_channels = 4 * (config.reg_max + 1)
    return backbone, neck, EffiDeHead(num_classes, head_channels, conv, reg_channels, config.distill_head)


def _lite_parts(config: ModelConfig, num_classes: int, deploy: bool) -> Parts:
    """The Lite backbone, neck and head (:mod:`yolov6_sdk.models.lite`)."""
    out, _ = lite_widths(config.width_multiple)
    neck = LiteNeck(out[2:], LITE_NECK_CHANNELS, deploy)
    return LiteBackbone(config.width_multiple, deploy), neck, LiteHead(num_classes, [LITE_NECK_CHANNELS] * 4, deploy)


class YOLOv6(nn.Module):
    """A YOLOv6 detector: ``backbone`` -> ``neck`` -> ``detect`` (official attribute names).

    ``forward(images)`` takes [B, 3, H, W] RGB in 0..1 (H, W multiples of 32). In eval mode it returns the
    official output [B, A, 5 + nc] (cx, cy, w, h in input pixels, objectness 1.0, sigmoid scores); in training
    mode a :class:`~yolov6_sdk.models.decode.TrainOutput`.
    """

    def __init__(self, config: ModelConfig, num_classes: int = 80, deploy: bool = False) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.names = [str(i) for i in range(num_classes)]
        build = _lite_parts if config.lite else _rep_parts
        self.backbone, self.neck, self.detect = build(config, num_classes, deploy)
        self.detect.initialize_biases()
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):  # official BN settings
                module.eps, module.momentum = 1e-3, 0.03

    @property
    def strides(self) -> tuple[int, ...]:
        return self.config.strides

    def forward(self, images: torch.Tensor) -> torch.Tensor | TrainOutput:
        feats = self.backbone(images)
        neck_feats = self.neck(feats)
        levels = self.detect(neck_feats)
        if self.training:
            return training_output(levels, neck_feats)
        return decode_predictions(levels, self.strides, self.config.use_dfl, getattr(self.detect, "proj", None))
