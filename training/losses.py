"""YOLOv6 training losses: varifocal classification, IoU-family box loss, DFL, and self-distillation terms.

Numerics follow the official loss (meituan/YOLOv6 yolov6/models/losses): fixed weights class 1.0, IoU 2.5,
DFL 0.5; assignment in input pixels on detached predictions; box losses in grid units of each point's level;
classification, IoU and DFL sums divided by the sum of target scores when that sum exceeds 1.

Shapes: B images, A anchor points over all levels, C classes, N positive anchors, R = 4 * (reg_max + 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from yolov6_sdk.errors import ConfigError, DatasetError
from yolov6_sdk.models.anchors import anchor_boxes_for_atss, make_anchor_points
from yolov6_sdk.models.decode import dfl_expectation

from .assigners import Assignment, ATSSAssigner, TaskAlignedAssigner
from .boxes import IouKind, bbox_iou, box_to_dist, check_iou_kind, dist_to_box

DEFAULT_WEIGHTS: dict[str, float] = {"class": 1.0, "iou": 2.5, "dfl": 0.5}
DEFAULT_DISTILL_WEIGHTS: dict[str, float] = {"class": 1.0, "dfl": 1.0}


def varifocal_loss(
    pred_scores: torch.Tensor,
    target_scores: torch.Tensor,
    labels_onehot: torch.Tensor,
    alpha: float = 0.75,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Varifocal loss, summed (not normalised), computed in float32 with autocast off.

    Weight per element: ``alpha * p^gamma`` on negatives, the target score ``q`` on positives.

    Args:
        pred_scores: Tensor[..., C] sigmoid scores p.
        target_scores: Tensor[..., C] soft targets q in [0, 1].
        labels_onehot: Tensor[..., C] 1 at the assigned class of positives, 0 elsewhere.

    Returns:
        0-dim float32 tensor: sum of BCE(p, q) * weight.
    """
    with torch.autocast(device_type=pred_scores.device.type, enabled=False):
        p, q, label = pred_scores.float(), target_scores.float(), labels_onehot.float()
        weight = alpha * p.pow(gamma) * (1 - label) + q * label
        return (F.binary_cross_entropy(p, q, reduction="none") * weight).sum()


def bbox_loss(
    pred_boxes: torch.Tensor,
    target_boxes: torch.Tensor,
    weights: torch.Tensor,
    normaliser: float | torch.Tensor = 1.0,
    iou_type: IouKind = "giou",
) -> torch.Tensor:
    """IoU-family box loss over positives: ``sum((1 - iou) * weight) / normaliser``.

    Args:
        pred_boxes: Tensor[N, 4] xyxy predicted boxes of the positives.
        target_boxes: Tensor[N, 4] xyxy assigned GT boxes, same units.
        weights: Tensor[N] per-positive weight (the sum of its target scores).
        normaliser: divisor (the sum of target scores, or 1 when that sum is at most 1).
        iou_type: member of the IoU family, see :func:`training.boxes.bbox_iou`.

    Returns:
        0-dim tensor; 0 (still attached to the graph) when N is 0.
    """
    return ((1.0 - bbox_iou(pred_boxes, target_boxes, iou_type)) * weights).sum() / normaliser


def dfl_loss(pred_dist: torch.Tensor, target_ltrb: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Distribution focal loss of each positive.

    A target t between bins l = floor(t) and l + 1 gives ``CE(bins, l) * (l + 1 - t) + CE(bins, l + 1) * (t - l)``
    per side; the four sides are averaged.

    Args:
        pred_dist: Tensor[N, 4 * (reg_max + 1)] logits, side-major (all bins of l, then t, r, b).
        target_ltrb: Tensor[N, 4] distances in grid units within [0, reg_max - 0.01].
        reg_max: highest bin value.

    Returns:
        Tensor[N] loss per positive.
    """
    bins = reg_max + 1
    if pred_dist.shape[-1] != 4 * bins:
        raise ConfigError(
            f"DFL logits have {pred_dist.shape[-1]} channels, expected 4 * (reg_max + 1) = {4 * bins}; "
            "build the loss with the reg_max of the model head"
        )
    logits = pred_dist.float().reshape(-1, bins)
    target = target_ltrb.float().reshape(-1)
    left = target.long()
    weight_left = (left + 1).float() - target
    ce_left = F.cross_entropy(logits, left, reduction="none")
    ce_right = F.cross_entropy(logits, left + 1, reduction="none")
    per_side = ce_left * weight_left + ce_right * (1 - weight_left)
    return per_side.reshape(-1, 4).mean(dim=-1)


def distill_loss(
    student_cls: torch.Tensor,
    teacher_cls: torch.Tensor,
    student_dist: torch.Tensor,
    teacher_dist: torch.Tensor,
    fg_mask: torch.Tensor,
    weights: torch.Tensor,
    temperature: float = 20.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-distillation terms (class and DFL), undecayed and unweighted.

    Class term: softmax over classes of the sigmoid scores divided by T, KL(teacher || student) summed over
    every anchor, times T^2 (applied to probabilities, as the official loss does). DFL term: per positive side,
    KL of the T-softened bin distributions summed over bins; the mean over all positive sides, times T^2, is
    weighted by each positive's weight and divided by the sum of ``weights`` when that sum exceeds 1.

    Args:
        student_cls, teacher_cls: Tensor[B, A, C] sigmoid scores (teacher computed under no_grad).
        student_dist, teacher_dist: Tensor[B, A, 4 * bins] DFL logits, side-major.
        fg_mask: bool Tensor[B, A] positives of the student's assignment.
        weights: Tensor[B, A] per-anchor weight, the sum of target scores (0 on background).
        temperature: softening temperature T.

    Returns:
        (class term, DFL term), 0-dim tensors.
    """
    num_classes = student_cls.shape[-1]
    log_student = F.log_softmax(student_cls.float().reshape(-1, num_classes) / temperature, dim=-1)
    teacher = F.softmax(teacher_cls.detach().float().reshape(-1, num_classes) / temperature, dim=-1)
    kd_cls = F.kl_div(log_student, teacher, reduction="sum") * temperature**2

    bins = student_dist.shape[-1] // 4
    student_pos = student_dist[fg_mask].float().reshape(-1, bins)
    if student_pos.shape[0] == 0:
        return kd_cls, student_dist.sum() * 0.0
    teacher_pos = teacher_dist.detach()[fg_mask].float().reshape(-1, bins)
    kl = F.kl_div(
        F.log_softmax(student_pos / temperature, dim=-1),
        F.softmax(teacher_pos / temperature, dim=-1),
        reduction="none",
    )
    mean_kl = kl.sum(dim=-1).mean() * temperature**2
    kd_dfl = (mean_kl * weights[fg_mask].float()).sum() / weights.float().sum().clamp(min=1.0)
    return kd_cls, kd_dfl


def distill_decay(epoch: int | float, max_epochs: int) -> float:
    """Cosine factor on the distillation terms: 1.0 at epoch 0 down to 0.01 at ``max_epochs``."""
    if max_epochs <= 0:
        raise ConfigError(f"max_epochs must be a positive number of epochs, got {max_epochs}")
    return ((1 - math.cos(epoch * math.pi / max_epochs)) / 2) * (0.01 - 1) + 1


def pad_targets(
    targets: torch.Tensor, batch_size: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat targets -> per-image padded ground truth.

    Args:
        targets: Tensor[T, 6] rows (batch_idx, class, x1, y1, x2, y2), boxes in input pixels.
        batch_size: number of images B.
        num_classes: number of classes C (labels must lie in [0, C)).

    Returns:
        gt_labels Tensor[B, M, 1] float, gt_boxes Tensor[B, M, 4] xyxy pixels, mask_gt Tensor[B, M, 1]
        (1 for real rows, 0 for padding), M = the largest GT count of any image (0 when T is 0).
    """
    if targets.ndim != 2 or targets.shape[-1] != 6:
        raise DatasetError(
            f"targets must be a [T, 6] tensor (batch_idx, class, x1, y1, x2, y2), got shape {tuple(targets.shape)}"
        )
    targets = targets.detach().float()
    image, label = targets[:, 0].long(), targets[:, 1]
    if targets.shape[0] and (image.min() < 0 or image.max() >= batch_size):
        raise DatasetError(f"target batch indices must lie in [0, {batch_size}), got {targets[:, 0].tolist()}")
    if targets.shape[0] and (label.min() < 0 or label.max() >= num_classes or (label != label.round()).any()):
        raise DatasetError(
            f"target classes must be integers in [0, {num_classes}); got {label.unique().tolist()}; "
            "check the dataset's class ids against the num_classes the loss was built with"
        )
    counts = torch.bincount(image, minlength=batch_size)
    slots = int(counts.max()) if targets.shape[0] else 0
    order = torch.argsort(image, stable=True)
    image = image[order]
    slot = torch.arange(image.numel(), device=image.device) - (counts.cumsum(0) - counts)[image]
    gt_labels = targets.new_zeros((batch_size, slots, 1))
    gt_boxes = targets.new_zeros((batch_size, slots, 4))
    mask_gt = targets.new_zeros((batch_size, slots, 1))
    gt_labels[image, slot, 0] = label[order]
    gt_boxes[image, slot] = targets[order, 2:]
    mask_gt[image, slot] = 1.0
    return gt_labels, gt_boxes, mask_gt


class Distillation(NamedTuple):
    """Teacher outputs and settings for self-distillation (teacher run by the caller under no_grad).

    teacher_cls: Tensor[B, A, C] sigmoid scores; teacher_dist: Tensor[B, A, 4 * (reg_max + 1)] DFL logits.
    weights: scale of the class and DFL terms (config ``distill_weight``: n/s 1.0/1.0, m 0.8/1.0, l 2.0/1.0).
    """

    teacher_cls: torch.Tensor
    teacher_dist: torch.Tensor
    max_epochs: int
    weights: Mapping[str, float] = DEFAULT_DISTILL_WEIGHTS
    temperature: float = 20.0


class YOLOv6Loss(nn.Module):
    """The YOLOv6 detection loss: assignment (ATSS during warm-up, then TAL), VFL, IoU loss and DFL.

    Args:
        num_classes: number of classes C.
        strides: input pixels per cell of each level.
        reg_max: highest DFL bin (the head has 4 * (reg_max + 1) regression channels when ``use_dfl``).
        use_dfl: whether ``reg_dist`` holds DFL logits (else 4 raw ltrb distances and no DFL term).
        iou_type: box loss variant ("giou", "siou", "ciou", "diou" or "iou").
        warmup_epochs: epochs assigned with ATSS before switching to TAL (0 for v3 P5 configs).
        weights: term weights, keys among "class", "iou", "dfl" (defaults 1.0, 2.5, 0.5).
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int] = (8, 16, 32),
        reg_max: int = 16,
        use_dfl: bool = True,
        iou_type: IouKind = "giou",
        warmup_epochs: int = 0,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
        check_iou_kind(iou_type)
        unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ConfigError(
                f"unknown loss weight keys {sorted(unknown)}; expected keys among {list(DEFAULT_WEIGHTS)}"
            )
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.reg_max = reg_max
        self.use_dfl = use_dfl
        self.iou_type = iou_type
        self.warmup_epochs = warmup_epochs
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.warmup_assigner = ATSSAssigner(topk=9, num_classes=num_classes)
        self.assigner = TaskAlignedAssigner(topk=13, num_classes=num_classes, alpha=1.0, beta=6.0)

    def forward(
        self,
        cls_scores: torch.Tensor,
        reg_dist: torch.Tensor,
        feature_sizes: Sequence[tuple[int, int]],
        targets: torch.Tensor,
        epoch: int,
        reg_lrtb: torch.Tensor | None = None,
        distill: Distillation | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute the loss of one batch.

        Args:
            cls_scores: Tensor[B, A, C] sigmoid class scores.
            reg_dist: Tensor[B, A, R] regression output: DFL logits (R = 4 * (reg_max + 1)) or raw ltrb (R = 4),
                distances in grid units.
            feature_sizes: (H, W) of each level, in stride order.
            targets: Tensor[T, 6] rows (batch_idx, class, x1, y1, x2, y2) in input pixels.
            epoch: current epoch (0-based), picks the assigner and the distillation decay.
            reg_lrtb: optional Tensor[B, A, 4] raw ltrb of the 4-channel branch of n/s distillation heads; its
                IoU loss is added to the IoU term.
            distill: optional teacher outputs; adds the decayed distillation terms to the class and DFL terms.

        Returns:
            (total loss, components): detached 0-dim tensors "class", "iou", "dfl" and, with distillation,
            "distill_cls" / "distill_dfl" (each already weighted and decayed; together they sum to the total),
            plus "num_positives".
        """
        self._check_inputs(cls_scores, reg_dist, feature_sizes, reg_lrtb, distill)
        cls_scores, reg_dist = cls_scores.float(), reg_dist.float()
        points, strides = make_anchor_points(feature_sizes, self.strides, device=cls_scores.device)
        ltrb = dfl_expectation(reg_dist, self._proj(reg_dist)) if self.use_dfl else reg_dist
        pred_boxes = dist_to_box(ltrb, points)  # grid units
        gt = pad_targets(targets, cls_scores.shape[0], self.num_classes)
        assigned = self._assign(cls_scores, pred_boxes, points, strides, feature_sizes, gt, epoch)

        norm = assigned.target_scores.sum().clamp(min=1.0)  # divide by the score sum only when it exceeds 1
        one_hot = F.one_hot(assigned.target_labels, self.num_classes + 1)[..., : self.num_classes]
        loss_cls = varifocal_loss(cls_scores, assigned.target_scores, one_hot) / norm
        loss_iou, loss_dfl = self._box_terms(assigned, pred_boxes, reg_dist, reg_lrtb, points, strides, norm)
        terms = {
            "class": self.weights["class"] * loss_cls,
            "iou": self.weights["iou"] * loss_iou,
            "dfl": self.weights["dfl"] * loss_dfl,
        }
        if distill is not None:
            kd_cls, kd_dfl = distill_loss(
                cls_scores, distill.teacher_cls, reg_dist, distill.teacher_dist, assigned.fg_mask,
                assigned.target_scores.sum(dim=-1), distill.temperature,
            )  # fmt: skip
            decay = distill_decay(epoch, distill.max_epochs)
            terms["distill_cls"] = self.weights["class"] * distill.weights.get("class", 1.0) * decay * kd_cls
            terms["distill_dfl"] = self.weights["dfl"] * distill.weights.get("dfl", 1.0) * decay * kd_dfl
        total = torch.stack(list(terms.values())).sum()
        parts = {name: value.detach() for name, value in terms.items()}
        parts["num_positives"] = assigned.fg_mask.sum().float()
        return total, parts

    def _box_terms(
        self,
        assigned: Assignment,
        pred_boxes: torch.Tensor,
        reg_dist: torch.Tensor,
        reg_lrtb: torch.Tensor | None,
        points: torch.Tensor,
        strides: torch.Tensor,
        norm: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unweighted IoU and DFL terms over the positives, in grid units of each point's level."""
        fg = assigned.fg_mask
        target_boxes = (assigned.target_boxes / strides)[fg]  # [N, 4]
        weights = assigned.target_scores.sum(dim=-1)[fg]  # [N]
        loss_iou = bbox_loss(pred_boxes[fg], target_boxes, weights, norm, self.iou_type)
        if reg_lrtb is not None:
            lrtb_boxes = dist_to_box(reg_lrtb.float(), points)[fg]
            loss_iou = loss_iou + bbox_loss(lrtb_boxes, target_boxes, weights, norm, self.iou_type)
        if not self.use_dfl:
            return loss_iou, reg_dist.sum() * 0.0
        target_ltrb = box_to_dist(target_boxes, points.expand_as(pred_boxes[..., :2])[fg], self.reg_max)
        loss_dfl = (dfl_loss(reg_dist[fg], target_ltrb, self.reg_max) * weights).sum() / norm
        return loss_iou, loss_dfl

    def _proj(self, reg_dist: torch.Tensor) -> torch.Tensor:
        """DFL bin values 0..reg_max on the device of ``reg_dist``."""
        return torch.arange(self.reg_max + 1, device=reg_dist.device, dtype=reg_dist.dtype)

    def _assign(
        self,
        cls_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        feature_sizes: Sequence[tuple[int, int]],
        gt: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        epoch: int,
    ) -> Assignment:
        """Run ATSS (warm-up) or TAL on detached predictions, in input pixels."""
        gt_labels, gt_boxes, mask_gt = gt
        pred_boxes_px = pred_boxes.detach() * strides
        if epoch < self.warmup_epochs:
            anchor_boxes, _, counts = anchor_boxes_for_atss(feature_sizes, self.strides, device=points.device)
            return self.warmup_assigner(anchor_boxes, counts, gt_labels, gt_boxes, mask_gt, pred_boxes_px)
        return self.assigner(cls_scores.detach(), pred_boxes_px, points * strides, gt_labels, gt_boxes, mask_gt)

    def _check_inputs(
        self,
        cls_scores: torch.Tensor,
        reg_dist: torch.Tensor,
        feature_sizes: Sequence[tuple[int, int]],
        reg_lrtb: torch.Tensor | None,
        distill: Distillation | None,
    ) -> None:
        """Raise :class:`ConfigError` when the head outputs do not match how the loss was built."""
        if len(feature_sizes) != len(self.strides):
            raise ConfigError(
                f"got {len(feature_sizes)} feature levels but the loss has strides {self.strides}; "
                "build the loss with the model's strides"
            )
        num_anchors = sum(h * w for h, w in feature_sizes)
        if cls_scores.ndim != 3 or cls_scores.shape[1:] != (num_anchors, self.num_classes):
            raise ConfigError(
                f"cls_scores must be [B, {num_anchors}, {self.num_classes}] for feature sizes {list(feature_sizes)}, "
                f"got {tuple(cls_scores.shape)}; build the loss with the model's num_classes"
            )
        channels = 4 * (self.reg_max + 1) if self.use_dfl else 4
        if reg_dist.shape != (*cls_scores.shape[:2], channels):
            raise ConfigError(
                f"reg_dist must be [B, {num_anchors}, {channels}] (use_dfl={self.use_dfl}, reg_max={self.reg_max}), "
                f"got {tuple(reg_dist.shape)}; set use_dfl/reg_max to match the model head"
            )
        if reg_lrtb is not None and reg_lrtb.shape != (*cls_scores.shape[:2], 4):
            raise ConfigError(f"reg_lrtb must be [B, {num_anchors}, 4], got {tuple(reg_lrtb.shape)}")
        if distill is not None:
            if not self.use_dfl:
                raise ConfigError("distillation needs the DFL branch: build the loss with use_dfl=True")
            if distill.teacher_cls.shape != cls_scores.shape or distill.teacher_dist.shape != reg_dist.shape:
                raise ConfigError(
                    f"teacher outputs {tuple(distill.teacher_cls.shape)}, {tuple(distill.teacher_dist.shape)} "
                    f"must match the student's {tuple(cls_scores.shape)}, {tuple(reg_dist.shape)}"
                )


__all__ = [
    "DEFAULT_WEIGHTS",
    "Distillation",
    "YOLOv6Loss",
    "bbox_loss",
    "dfl_loss",
    "distill_decay",
    "distill_loss",
    "pad_targets",
    "varifocal_loss",
]
