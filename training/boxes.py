"""Box maths for training: the IoU family, pairwise IoU, and distance <-> box conversion.

Every box is xyxy (x1, y1, x2, y2). Functions are pure: inputs are never modified. Units are whatever the
caller uses (input pixels for assignment, grid units of each point's level for the losses).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from yolov6_sdk.errors import ConfigError

IouKind = Literal["iou", "giou", "diou", "ciou", "siou"]
IOU_KINDS: tuple[str, ...] = ("iou", "giou", "diou", "ciou", "siou")


def check_iou_kind(kind: str) -> None:
    """Raise :class:`ConfigError` unless ``kind`` names a member of the IoU family."""
    if kind not in IOU_KINDS:
        raise ConfigError(f"unknown IoU kind {kind!r}; expected one of {', '.join(IOU_KINDS)}")


def bbox_iou(box1: torch.Tensor, box2: torch.Tensor, kind: IouKind = "iou", eps: float = 1e-10) -> torch.Tensor:
    """Element-wise IoU variant between two broadcastable sets of xyxy boxes.

    The eps placement follows the official loss (meituan/YOLOv6 figure_iou): heights get ``+eps``, the union
    gets ``+eps``, the enclosing area (GIoU) and enclosing diagonal (DIoU/CIoU) get ``+eps``, SIoU centre
    offsets get ``+eps``; the CIoU trade-off factor carries no gradient.

    Args:
        box1: Tensor[..., 4] xyxy (the prediction, when used as a loss).
        box2: Tensor[..., 4] xyxy (the target), broadcastable with ``box1``.
        kind: "iou", "giou", "diou", "ciou" or "siou".
        eps: numerical guard, 1e-10 as in the official loss.

    Returns:
        Tensor[...] of the chosen IoU variant (``1 - value`` is the loss).
    """
    check_iou_kind(kind)
    b1x1, b1y1, b1x2, b1y2 = box1.unbind(-1)
    b2x1, b2y1, b2x2, b2y2 = box2.unbind(-1)
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(min=0) * (
        torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)
    ).clamp(min=0)
    w1, h1 = b1x2 - b1x1, b1y2 - b1y1 + eps
    w2, h2 = b2x2 - b2x1, b2y2 - b2y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)  # enclosing box width
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)  # enclosing box height
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    if kind == "siou":
        dx = (b2x1 + b2x2 - b1x1 - b1x2) * 0.5 + eps  # centre offsets
        dy = (b2y1 + b2y2 - b1y1 - b1y2) * 0.5 + eps
        return iou - _siou_penalty(dx, dy, cw, ch, (w1, h1), (w2, h2))
    c2 = cw**2 + ch**2 + eps  # squared enclosing diagonal
    rho2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4  # squared centre distance
    if kind == "diou":
        return iou - rho2 / c2
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():  # guarded: identical boxes (v = 0, iou = 1) would give 0 / 0
        alpha = v / (v - iou + (1 + eps)).clamp(min=eps)
    return iou - (rho2 / c2 + v * alpha)


def _siou_penalty(
    dx: torch.Tensor,
    dy: torch.Tensor,
    cw: torch.Tensor,
    ch: torch.Tensor,
    wh1: tuple[torch.Tensor, torch.Tensor],
    wh2: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """SIoU distance-with-angle cost plus shape cost, halved (Gevorgyan 2022, as the official loss uses it)."""
    sigma = torch.sqrt(dx**2 + dy**2)
    sin_x, sin_y = dx.abs() / sigma, dy.abs() / sigma
    sin_alpha = torch.where(sin_x > math.sqrt(2) / 2, sin_y, sin_x)  # angle to the nearer axis
    angle_cost = torch.cos(2 * torch.arcsin(sin_alpha) - math.pi / 2)
    gamma = angle_cost - 2
    distance_cost = 2 - torch.exp(gamma * (dx / cw) ** 2) - torch.exp(gamma * (dy / ch) ** 2)
    shape_cost = torch.zeros_like(distance_cost)
    for a1, a2 in zip(wh1, wh2, strict=True):
        omega = (a1 - a2).abs() / torch.max(a1, a2)
        shape_cost = shape_cost + (1 - torch.exp(-omega)) ** 4
    return 0.5 * (distance_cost + shape_cost)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Plain IoU of every box in ``a`` with every box in ``b`` (degenerate boxes count as area 0).

    Args:
        a: Tensor[..., N, 4] xyxy.
        b: Tensor[..., M, 4] xyxy; leading dimensions broadcast with ``a``'s.
        eps: added to the union, 1e-9 as in the official assigners.

    Returns:
        Tensor[..., N, M] IoU in [0, 1]; empty when N or M is 0.
    """
    a_ = a.unsqueeze(-2)  # [..., N, 1, 4]
    b_ = b.unsqueeze(-3)  # [..., 1, M, 4]
    inter = (torch.min(a_[..., 2:], b_[..., 2:]) - torch.max(a_[..., :2], b_[..., :2])).clamp(min=0).prod(-1)
    area_a = (a_[..., 2:] - a_[..., :2]).clamp(min=0).prod(-1)
    area_b = (b_[..., 2:] - b_[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + eps)


def points_inside_boxes(points: torch.Tensor, boxes: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Which points lie strictly inside which boxes (every side distance greater than ``eps``).

    Args:
        points: Tensor[A, 2] (x, y).
        boxes: Tensor[..., M, 4] xyxy in the same units.

    Returns:
        Bool Tensor[..., M, A].
    """
    b = boxes.unsqueeze(-2)  # [..., M, 1, 4]
    deltas = torch.cat((points - b[..., :2], b[..., 2:] - points), dim=-1)  # [..., M, A, 4]
    return deltas.amin(dim=-1) > eps


def box_centres(boxes: torch.Tensor) -> torch.Tensor:
    """Tensor[..., 4] xyxy -> Tensor[..., 2] centres (x, y)."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2


def dist_to_box(ltrb: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Distances from a point to the four sides -> xyxy box.

    Args:
        ltrb: Tensor[..., 4] (left, top, right, bottom) distances.
        points: Tensor[..., 2] (x, y), broadcastable with ``ltrb``, same units.

    Returns:
        Tensor[..., 4] xyxy: (x - l, y - t, x + r, y + b).
    """
    return torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), dim=-1)


def box_to_dist(boxes: torch.Tensor, points: torch.Tensor, reg_max: int) -> torch.Tensor:
    """xyxy box -> DFL regression target: distances from the point to the sides.

    Args:
        boxes: Tensor[..., 4] xyxy, in grid units of the point's level.
        points: Tensor[..., 2] (x, y), same units.
        reg_max: highest DFL bin value (16 for 17 bins).

    Returns:
        Tensor[..., 4] ltrb clipped to [0, reg_max - 0.01] so the upper bin ``floor(t) + 1`` exists.
    """
    ltrb = torch.cat((points - boxes[..., :2], boxes[..., 2:] - points), dim=-1)
    return ltrb.clamp(0, reg_max - 0.01)


__all__ = [
    "IOU_KINDS",
    "IouKind",
    "bbox_iou",
    "box_centres",
    "box_to_dist",
    "check_iou_kind",
    "dist_to_box",
    "pairwise_iou",
    "points_inside_boxes",
]
