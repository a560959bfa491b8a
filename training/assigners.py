"""Label assignment: which anchor points learn which ground-truth box, and with what soft score.

Two assigners, as in the official training (meituan/YOLOv6 yolov6/assigners): ATSS for the warm-up epochs and
the task-aligned assigner (TAL) afterwards. Both take ground truth padded to M boxes per image and return an
:class:`Assignment`. Everything here runs under ``torch.no_grad`` and works in input pixels.

Shapes: B images, M padded GT rows per image, A anchor points over all levels, C classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .boxes import box_centres, pairwise_iou, points_inside_boxes


class Assignment(NamedTuple):
    """Per-anchor training targets.

    target_labels: Tensor[B, A] int64 class index; background anchors hold ``num_classes``.
    target_boxes: Tensor[B, A, 4] xyxy pixels of the assigned GT; zeros for background.
    target_scores: Tensor[B, A, C] float soft scores (one-hot of the label times the quality score).
    fg_mask: Tensor[B, A] bool, True for positives.
    """

    target_labels: torch.Tensor
    target_boxes: torch.Tensor
    target_scores: torch.Tensor
    fg_mask: torch.Tensor


def empty_assignment(batch: int, num_anchors: int, num_classes: int, like: torch.Tensor) -> Assignment:
    """All-background targets (used when no image of the batch has a GT)."""
    device, dtype = like.device, like.dtype
    return Assignment(
        torch.full((batch, num_anchors), num_classes, dtype=torch.long, device=device),
        torch.zeros((batch, num_anchors, 4), dtype=dtype, device=device),
        torch.zeros((batch, num_anchors, num_classes), dtype=dtype, device=device),
        torch.zeros((batch, num_anchors), dtype=torch.bool, device=device),
    )


def _keep_best_claim(mask_pos: torch.Tensor, overlaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resolve anchors claimed by several GTs: keep only the claimant with the highest overlap.

    The official code takes the argmax over every GT of the image; here it is taken over the claimants only,
    so an anchor never goes to a GT that did not select it.

    Args:
        mask_pos: bool Tensor[B, M, A] candidate (GT, anchor) pairs.
        overlaps: Tensor[B, M, A] IoU used to break the tie.

    Returns:
        target_gt_idx: Tensor[B, A] int64 index of the kept GT (0 for background).
        mask_pos: bool Tensor[B, M, A] with at most one True per anchor.
    """
    best = overlaps.masked_fill(~mask_pos, -1.0).argmax(dim=1)  # [B, A]
    one_best = F.one_hot(best, mask_pos.shape[1]).permute(0, 2, 1).bool()  # [B, M, A]
    return best, mask_pos & one_best


def _gather_targets(
    gt_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    target_gt_idx: torch.Tensor,
    fg_mask: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels [B, A] (background = num_classes), boxes [B, A, 4] (zeros for background), one-hot [B, A, C]."""
    labels = gt_labels[..., 0].long().gather(1, target_gt_idx)
    labels = torch.where(fg_mask, labels, torch.full_like(labels, num_classes))
    boxes = gt_boxes.gather(1, target_gt_idx[..., None].expand(-1, -1, 4))
    boxes = torch.where(fg_mask[..., None], boxes, torch.zeros_like(boxes))
    one_hot = F.one_hot(labels, num_classes + 1)[..., :num_classes].to(gt_boxes.dtype)
    return labels, boxes, one_hot


class TaskAlignedAssigner(nn.Module):
    """Task-aligned assignment (TOOD), as YOLOv6 uses after warm-up.

    Alignment metric t = s^alpha * u^beta with s the predicted score of the GT's class and u the IoU between
    the GT and the predicted box. Per GT, the ``topk`` anchors with the largest t among the points strictly
    inside the GT become positives; soft scores are t rescaled so each GT's best positive gets that GT's
    largest IoU among its positives.
    """

    def __init__(
        self, topk: int = 13, num_classes: int = 80, alpha: float = 1.0, beta: float = 6.0, eps: float = 1e-9
    ) -> None:
        super().__init__()
        self.topk = topk
        self.num_classes = num_classes
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    @torch.no_grad()
    def forward(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ) -> Assignment:
        """Assign GTs to anchor points.

        Args:
            pred_scores: Tensor[B, A, C] sigmoid class scores.
            pred_boxes: Tensor[B, A, 4] predicted xyxy boxes in input pixels.
            anchor_points: Tensor[A, 2] point centres in input pixels.
            gt_labels: Tensor[B, M, 1] class indices (any value on padding rows).
            gt_boxes: Tensor[B, M, 4] xyxy input pixels.
            mask_gt: Tensor[B, M, 1], 1 for real GT rows and 0 for padding.
        """
        batch, num_anchors, _ = pred_scores.shape
        pred_scores, pred_boxes, gt_boxes = pred_scores.float(), pred_boxes.float(), gt_boxes.float()
        if gt_boxes.shape[1] == 0:
            return empty_assignment(batch, num_anchors, self.num_classes, pred_scores)
        overlaps = pairwise_iou(gt_boxes, pred_boxes)  # [B, M, A]
        cls_idx = gt_labels[..., 0].long().clamp(0, self.num_classes - 1)  # [B, M]
        gt_cls_scores = pred_scores.gather(2, cls_idx[:, None, :].expand(-1, num_anchors, -1)).transpose(1, 2)
        align = gt_cls_scores.pow(self.alpha) * overlaps.pow(self.beta)  # [B, M, A]
        inside = points_inside_boxes(anchor_points.float(), gt_boxes)  # [B, M, A]
        k = min(self.topk, num_anchors)
        topk_idx = (align * inside).topk(k, dim=-1).indices
        in_topk = torch.zeros_like(inside).scatter_(-1, topk_idx, True)
        mask_pos = in_topk & inside & (mask_gt > 0)  # [B, M, A] (mask_gt broadcasts over A)

        target_gt_idx, mask_pos = _keep_best_claim(mask_pos, overlaps)
        fg_mask = mask_pos.any(dim=1)
        labels, boxes, one_hot = _gather_targets(gt_labels, gt_boxes, target_gt_idx, fg_mask, self.num_classes)

        align = align * mask_pos
        max_align = align.amax(dim=-1, keepdim=True)  # best metric of each GT's positives [B, M, 1]
        max_iou = (overlaps * mask_pos).amax(dim=-1, keepdim=True)  # best IoU of each GT's positives
        quality = (align * max_iou / (max_align + self.eps)).amax(dim=1)  # [B, A]
        return Assignment(labels, boxes, one_hot * quality[..., None], fg_mask)


class ATSSAssigner(nn.Module):
    """Adaptive training sample selection, used by YOLOv6 during the warm-up epochs.

    Per GT and per level the ``topk`` anchors whose centres are nearest the GT centre are candidates; the IoU
    threshold is mean + std of the candidates' IoUs with the GT (anchors are the 5 * stride squares).
    Positives: candidates with IoU above the threshold whose centre lies strictly inside the GT. Scores are the
    one-hot label, times the IoU between the GT and the predicted box when predicted boxes are given.
    """

    def __init__(self, topk: int = 9, num_classes: int = 80) -> None:
        super().__init__()
        self.topk = topk
        self.num_classes = num_classes

    @torch.no_grad()
    def forward(
        self,
        anchor_boxes: torch.Tensor,
        level_counts: Sequence[int],
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        mask_gt: torch.Tensor,
        pred_boxes: torch.Tensor | None = None,
    ) -> Assignment:
        """Assign GTs to anchors.

        Args:
            anchor_boxes: Tensor[A, 4] xyxy pixels, the squares of ``anchor_boxes_for_atss``.
            level_counts: number of anchors per level, in order (they sum to A).
            gt_labels: Tensor[B, M, 1] class indices (any value on padding rows).
            gt_boxes: Tensor[B, M, 4] xyxy input pixels.
            mask_gt: Tensor[B, M, 1], 1 for real GT rows and 0 for padding.
            pred_boxes: optional Tensor[B, A, 4] predicted xyxy pixels, for IoU-weighted scores.
        """
        anchor_boxes, gt_boxes = anchor_boxes.float(), gt_boxes.float()
        batch, num_anchors = gt_boxes.shape[0], anchor_boxes.shape[0]
        if gt_boxes.shape[1] == 0:
            return empty_assignment(batch, num_anchors, self.num_classes, gt_boxes)
        overlaps = pairwise_iou(gt_boxes, anchor_boxes)  # [B, M, A]
        anchor_centres = box_centres(anchor_boxes)  # [A, 2]
        distances = (box_centres(gt_boxes)[:, :, None, :] - anchor_centres).norm(dim=-1)  # [B, M, A]
        candidates = self._nearest_per_level(distances, level_counts)  # [B, M, K]

        candidate_ious = overlaps.gather(-1, candidates)
        threshold = candidate_ious.mean(dim=-1, keepdim=True)
        if candidates.shape[-1] > 1:
            threshold = threshold + candidate_ious.std(dim=-1, keepdim=True)
        is_candidate = torch.zeros_like(overlaps, dtype=torch.bool).scatter_(-1, candidates, True)
        inside = points_inside_boxes(anchor_centres, gt_boxes)
        mask_pos = is_candidate & (overlaps > threshold) & inside & (mask_gt > 0)

        target_gt_idx, mask_pos = _keep_best_claim(mask_pos, overlaps)
        fg_mask = mask_pos.any(dim=1)
        labels, boxes, scores = _gather_targets(gt_labels, gt_boxes, target_gt_idx, fg_mask, self.num_classes)
        if pred_boxes is not None:
            pred_ious = (pairwise_iou(gt_boxes, pred_boxes.float()) * mask_pos).amax(dim=1)  # [B, A]
            scores = scores * pred_ious[..., None]
        return Assignment(labels, boxes, scores, fg_mask)

    def _nearest_per_level(self, distances: torch.Tensor, level_counts: Sequence[int]) -> torch.Tensor:
        """Indices [B, M, K] (into all A anchors) of the ``topk`` nearest anchors of every level."""
        picked, start = [], 0
        for level_distances in distances.split(list(level_counts), dim=-1):
            count = level_distances.shape[-1]
            k = min(self.topk, count)
            picked.append(level_distances.topk(k, dim=-1, largest=False).indices + start)
            start += count
        return torch.cat(picked, dim=-1)


__all__ = ["ATSSAssigner", "Assignment", "TaskAlignedAssigner", "empty_assignment"]
