"""Turn raw head maps into predictions: the eval/export tensor, or the flat tensors the training loss reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from yolov6_sdk.models.anchors import make_anchor_points
from yolov6_sdk.models.head import DFL_BINS, HeadLevel


class TrainOutput(NamedTuple):
    """What the model returns in training mode (A = total anchor points over all levels).

    cls_scores: [B, A, nc] sigmoid class scores.
    reg_dist: [B, A, R] regression the DFL/IoU losses read: 4 raw ltrb distances or 68 DFL logits.
    reg_lrtb: [B, A, 4] raw distances of the 4-channel branch of distillation heads, else None.
    feature_sizes: (H, W) of each level.
    neck_feats: the neck outputs, for feature distillation.
    """

    cls_scores: torch.Tensor
    reg_dist: torch.Tensor
    reg_lrtb: torch.Tensor | None
    feature_sizes: list[tuple[int, int]]
    neck_feats: list[torch.Tensor]


def _flatten(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """[B, C, H_i, W_i] per level -> [B, sum(H_i * W_i), C], levels in order, row-major inside a level."""
    return torch.cat([m.flatten(2) for m in maps], dim=2).permute(0, 2, 1)


def dfl_expectation(logits: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Expected distance of each side from DFL logits.

    Args:
        logits: [B, A, 4 * bins], side-major (all bins of l, then t, r, b).
        proj: [bins] bin values 0..bins-1.

    Returns:
        [B, A, 4] distances in grid units.
    """
    b, a, _ = logits.shape
    probs = logits.reshape(b, a, 4, proj.numel()).softmax(dim=-1)
    return (probs * proj).sum(dim=-1)


def decode_predictions(
    levels: list[HeadLevel], strides: Sequence[int], use_dfl: bool, proj: torch.Tensor | None
) -> torch.Tensor:
    """The official eval/export output (``proj``: the DFL bin values, needed only with ``use_dfl``).

    Returns:
        [B, A, 5 + nc]: cx, cy, w, h in input pixels, a constant objectness 1.0, then sigmoid class scores.
    """
    sizes = [(lv.cls_logits.shape[2], lv.cls_logits.shape[3]) for lv in levels]
    first = levels[0].cls_logits
    points, point_strides = make_anchor_points(sizes, strides, device=first.device, dtype=first.dtype)
    scores = _flatten([lv.cls_logits for lv in levels]).sigmoid()
    reg = _flatten([lv.reg for lv in levels])
    ltrb = dfl_expectation(reg, proj.to(reg.dtype)) if use_dfl else reg
    lt, rb = ltrb.chunk(2, dim=-1)
    xy1, xy2 = points - lt, points + rb
    boxes = torch.cat(((xy1 + xy2) / 2, xy2 - xy1), dim=-1) * point_strides
    return torch.cat((boxes, torch.ones_like(scores[..., :1]), scores), dim=-1)


def training_output(levels: list[HeadLevel], neck_feats: list[torch.Tensor]) -> TrainOutput:
    """Flatten raw maps into the tensors the loss reads (distillation heads train their DFL branch)."""
    sizes = [(lv.cls_logits.shape[2], lv.cls_logits.shape[3]) for lv in levels]
    cls_scores = _flatten([lv.cls_logits for lv in levels]).sigmoid()
    reg = _flatten([lv.reg for lv in levels])
    if levels[0].reg_dist is None:
        return TrainOutput(cls_scores, reg, None, sizes, neck_feats)
    return TrainOutput(cls_scores, _flatten([lv.reg_dist for lv in levels]), reg, sizes, neck_feats)


__all__ = ["DFL_BINS", "TrainOutput", "decode_predictions", "dfl_expectation", "training_output"]
