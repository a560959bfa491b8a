"""Box operations, NMS and decoding of model outputs into per-image detections.

Conventions: boxes are ``[N, 4]`` xyxy (x1, y1, x2, y2) in model-input pixels unless stated otherwise;
functions are pure (inputs are never modified) and an empty result is an empty array of the right shape.
Every operation has a numpy form and a torch form written with torch ops only (no torchvision), so it runs
on the model's device; both forms return the same boxes on the same input.

Decoding follows the official YOLOv6 non-max suppression: candidates need objectness > conf and best class
score > conf; score = class score x objectness (the objectness column is a constant 1.0); single-label keeps
the best class per box, multi-label every class with score > conf; at most 30000 candidates (highest
scores) enter class-aware NMS; the ``max_det`` highest-scoring survivors are returned, sorted by score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    import torch

MAX_NMS = 30000  # candidates entering NMS per image, as the official
_EPS = 1e-9  # floor of the IoU denominator (degenerate boxes give IoU 0, not NaN)
_NMS_BLOCK = 1024  # boxes resolved together in the torch NMS


class Detections(NamedTuple):
    """Detections of one image: numpy arrays from the numpy forms, tensors from the torch forms.

    Attributes:
        boxes: ``[N, 4]`` float32 xyxy in model-input pixels.
        scores: ``[N]`` float32, descending.
        class_ids: ``[N]`` int64.
    """

    boxes: Any
    scores: Any
    class_ids: Any


def xywh_to_xyxy(boxes: Any) -> Any:
    """Convert ``[..., 4]`` boxes from centre-size (cx, cy, w, h) to corners (x1, y1, x2, y2).

    Works on numpy arrays and torch tensors; returns a new array of the same type and dtype.
    """
    cat = np.concatenate if isinstance(boxes, np.ndarray) else require("torch").cat
    centre, half = boxes[..., :2], boxes[..., 2:4] / 2
    return cat((centre - half, centre + half), -1)


def box_iou(boxes_a: Any, boxes_b: Any) -> Any:
    """Pairwise IoU of xyxy boxes ``[N, 4]`` and ``[M, 4]`` -> ``[N, M]`` (numpy or torch, same dtype)."""
    if isinstance(boxes_a, np.ndarray):
        maximum, minimum = np.maximum, np.minimum
    else:
        torch = require("torch")
        maximum, minimum = torch.maximum, torch.minimum
    # one [N, M] array per step (no [N, M, 2] intermediates): intersection width and height
    inter_w = minimum(boxes_a[:, None, 2], boxes_b[None, :, 2]) - maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    inter_h = minimum(boxes_a[:, None, 3], boxes_b[None, :, 3]) - maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    inter = inter_w.clip(min=0) * inter_h.clip(min=0)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clip(min=_EPS)


# --------------------------------------------------------------------------------------------- numpy NMS


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_thres: float) -> np.ndarray:
    """Greedy NMS: indices (int64) of the kept boxes, by descending score (ties: lower index first).

    A box is dropped when its IoU with a higher-ranked kept box is greater than ``iou_thres``.
    """
    return batched_nms_numpy(boxes, scores, None, iou_thres)


def batched_nms_numpy(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None, iou_thres: float
) -> np.ndarray:
    """Class-aware NMS (boxes of different classes never suppress each other); ``class_ids=None``: agnostic.

    Every class runs its greedy NMS at the same time, without a loop over classes: boxes are ranked class-major
    (descending score within a class, ties: lower index first); each step keeps the best remaining box of every
    class at once and drops the boxes of its class whose IoU with it exceeds ``iou_thres``, so the steps number
    the most boxes one class keeps. The IoU uses the float operations of :func:`box_iou`, so the answer equals
    per-class greedy NMS exactly. Returns int64 indices of the kept boxes by descending score (ties: lower index).
    """
    order = np.argsort(-scores, kind="stable")
    if class_ids is not None:  # stable: score order is kept within each class
        order = order[np.argsort(class_ids[order], kind="stable")]
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[order, k]) for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    classes = np.zeros(order.size, np.int64) if class_ids is None else np.ascontiguousarray(class_ids[order])
    remaining = np.arange(order.size)  # ranks still undecided, class-major
    kept = [np.zeros(0, dtype=np.int64)]
    while remaining.size:
        rank_classes = classes[remaining]
        is_head = np.ones(remaining.size, dtype=bool)  # the best remaining box of its class
        is_head[1:] = rank_classes[1:] != rank_classes[:-1]
        heads = remaining[is_head]
        kept.append(heads)
        head = heads[np.cumsum(is_head)[~is_head] - 1]  # for every other box, the head of its class
        rest = remaining[~is_head]
        inter_w = np.minimum(x2[head], x2[rest]) - np.maximum(x1[head], x1[rest])
        inter_h = np.minimum(y2[head], y2[rest]) - np.maximum(y1[head], y1[rest])
        inter = inter_w.clip(min=0) * inter_h.clip(min=0)
        union = areas[head] + areas[rest] - inter
        remaining = rest[inter / union.clip(min=_EPS) <= iou_thres]
    keep = np.sort(order[np.concatenate(kept)])
    return keep[np.argsort(-scores[keep], kind="stable")]


# --------------------------------------------------------------------------------------------- torch NMS


def nms_torch(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """Torch form of :func:`nms_numpy` (same indices), on the tensors' device."""
    return batched_nms_torch(boxes, scores, None, iou_thres)


def batched_nms_torch(
    boxes: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor | None, iou_thres: float
) -> torch.Tensor:
    """Torch form of :func:`batched_nms_numpy` (same indices); ``class_ids=None`` is class-agnostic.

    Classes never interact, so boxes are ranked class-major (descending score within a class) and
    resolved in blocks of that ranking: a block is first suppressed by the kept boxes of its class from
    earlier blocks, then greedy order inside the block is solved on its boolean "j suppresses i" matrix by
    fixed-point iteration (keep_i = alive_i and not any_{j<i}(keep_j and M_ji)), whose unique fixed point
    is the greedy answer.
    """
    torch = require("torch")
    order = torch.sort(scores, descending=True, stable=True).indices
    if class_ids is not None:  # stable, so score order is kept within each class
        order = order[torch.sort(class_ids[order], stable=True).indices]
    ranked = boxes[order]
    classes = None if class_ids is None else class_ids[order]
    keep = torch.zeros(order.numel(), dtype=torch.bool, device=boxes.device)
    for block, lookback in enumerate(_block_lookbacks(classes, order.numel())):
        start, stop = block * _NMS_BLOCK, min((block + 1) * _NMS_BLOCK, order.numel())
        alive = _alive_after_earlier_blocks(ranked, classes, keep, lookback, start, stop, iou_thres)
        overlap = (box_iou(ranked[start:stop], ranked[start:stop]) > iou_thres).triu_(diagonal=1)
        if classes is not None:
            overlap &= classes[start:stop, None] == classes[None, start:stop]
        keep[start:stop] = _greedy_fixed_point(overlap, alive)
    kept = order[keep].sort().values  # back to descending score, ties by lower index
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def _block_lookbacks(classes: torch.Tensor | None, count: int) -> list[int]:
    """Per block of the class-major ranking, the first rank that can hold a box of the block's classes."""
    starts = range(0, count, _NMS_BLOCK)
    if classes is None:
        return [0] * len(starts)
    torch = require("torch")
    return torch.searchsorted(classes, classes[::_NMS_BLOCK].contiguous()).tolist()


def _alive_after_earlier_blocks(
    ranked: torch.Tensor,
    classes: torch.Tensor | None,
    keep: torch.Tensor,
    lookback: int,
    start: int,
    stop: int,
    iou_thres: float,
) -> torch.Tensor:
    """``[stop-start]`` bool: block boxes not suppressed by a kept same-class box ranked in lookback..start."""
    torch = require("torch")
    alive = torch.ones(stop - start, dtype=torch.bool, device=ranked.device)
    earlier = keep[lookback:start].nonzero().squeeze(1) + lookback
    if earlier.numel():
        hits = box_iou(ranked[start:stop], ranked[earlier]) > iou_thres
        if classes is not None:
            hits &= classes[start:stop, None] == classes[None, earlier]
        alive = ~hits.any(1)
    return alive


def _greedy_fixed_point(overlap: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Solve keep_i = alive_i and not any_j<i (keep_j and overlap_ji) for a strictly upper-triangular mask."""
    keep = alive
    while True:
        suppressed = (overlap & keep[:, None]).any(0)
        updated = alive & ~suppressed
        if bool((updated == keep).all()):
            return updated
        keep = updated


# --------------------------------------------------------------------------------------------- decoding


def check_thresholds(conf: float, iou: float, max_det: int) -> None:
    """The one check of NMS settings: ``conf`` and ``iou`` numbers in 0..1, ``max_det`` a positive int.

    Raises:
        ConfigError: naming the value and what is expected.
    """
    for label, value in (("conf", conf), ("iou", iou)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ConfigError(f"{label} must be a number in 0..1, got {value!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{label} must be a number in 0..1, got {value!r}")
    if isinstance(max_det, bool) or not isinstance(max_det, (int, np.integer)) or max_det < 1:
        raise ConfigError(f"max_det must be a positive int, got {max_det!r}")


def _check_raw_shape(shape: Sequence[int]) -> None:
    if len(shape) != 3 or shape[2] < 6:
        raise ArtifactError(
            f"raw model output must be [B, anchors, 5 + num_classes], got shape {tuple(shape)}; "
            f"an end-to-end model gives num_dets/det_boxes/det_scores/det_classes: use postprocess_end2end"
        )


def postprocess_raw(
    outputs: np.ndarray,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    multi_label: bool = False,
    agnostic: bool = False,
) -> list[Detections]:
    """Decode raw outputs ``[B, A, 5+nc]`` (cx, cy, w, h input pixels, objectness, class scores) with NMS.

    ``classes`` keeps only those class ids; ``multi_label`` keeps every class above ``conf`` (mAP eval
    uses conf 0.03, iou 0.65); ``agnostic`` lets boxes of different classes suppress each other.
    Returns one :class:`Detections` of numpy arrays per image.

    Raises:
        ConfigError: a threshold out of range (:func:`check_thresholds`).
        ArtifactError: ``outputs`` is not ``[B, A, 5 + nc]``.
    """
    check_thresholds(conf, iou, max_det)
    return decode_raw(outputs, conf, iou, max_det, classes, multi_label, agnostic)


def decode_raw(
    outputs: np.ndarray,
    conf: float,
    iou: float,
    max_det: int,
    classes: Sequence[int] | None,
    multi_label: bool,
    agnostic: bool = False,
) -> list[Detections]:
    """The kernel of :func:`postprocess_raw`, for callers that checked the thresholds themselves."""
    _check_raw_shape(outputs.shape)
    results = []
    for pred in np.asarray(outputs, dtype=np.float32):
        candidates = (pred[:, 4] > conf) & (pred[:, 5:].max(1) > conf)
        pred = pred[candidates]
        all_scores = pred[:, 5:] * pred[:, 4:5]
        boxes = xywh_to_xyxy(pred[:, :4])
        if multi_label:
            rows, class_ids = np.nonzero(all_scores > conf)
            boxes, scores = boxes[rows], all_scores[rows, class_ids]
        else:
            class_ids = all_scores.argmax(1)
            scores = np.take_along_axis(all_scores, class_ids[:, None], 1)[:, 0]
            above = scores > conf
            boxes, scores, class_ids = boxes[above], scores[above], class_ids[above]
        if classes is not None:
            wanted = np.isin(class_ids, np.asarray(classes, dtype=np.int64))
            boxes, scores, class_ids = boxes[wanted], scores[wanted], class_ids[wanted]
        if scores.size > MAX_NMS:
            top = np.argsort(-scores, kind="stable")[:MAX_NMS]
            boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
        class_ids = class_ids.astype(np.int64)
        nms_classes = np.zeros_like(class_ids) if agnostic else class_ids
        keep = batched_nms_numpy(boxes, scores, nms_classes, iou)[:max_det]
        results.append(Detections(boxes[keep], scores[keep], class_ids[keep]))
    return results


def postprocess_raw_torch(
    outputs: torch.Tensor,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    multi_label: bool = False,
    agnostic: bool = False,
) -> list[Detections]:
    """Torch form of :func:`postprocess_raw`: same detections, as tensors on ``outputs``' device."""
    check_thresholds(conf, iou, max_det)
    return decode_raw_torch(outputs, conf, iou, max_det, classes, multi_label, agnostic)


def decode_raw_torch(
    outputs: torch.Tensor,
    conf: float,
    iou: float,
    max_det: int,
    classes: Sequence[int] | None,
    multi_label: bool,
    agnostic: bool = False,
) -> list[Detections]:
    """The kernel of :func:`postprocess_raw_torch`, for callers that checked the thresholds themselves."""
    torch = require("torch")
    _check_raw_shape(outputs.shape)
    results = []
    for pred in outputs.float():
        candidates = (pred[:, 4] > conf) & (pred[:, 5:].max(1).values > conf)
        pred = pred[candidates]
        all_scores = pred[:, 5:] * pred[:, 4:5]
        boxes = xywh_to_xyxy(pred[:, :4])
        if multi_label:
            rows, class_ids = (all_scores > conf).nonzero(as_tuple=True)
            boxes, scores = boxes[rows], all_scores[rows, class_ids]
        else:
            scores, class_ids = all_scores.max(1)
            above = scores > conf
            boxes, scores, class_ids = boxes[above], scores[above], class_ids[above]
        if classes is not None:
            wanted = torch.isin(class_ids, torch.as_tensor(list(classes), device=class_ids.device))
            boxes, scores, class_ids = boxes[wanted], scores[wanted], class_ids[wanted]
        if scores.numel() > MAX_NMS:
            top = torch.sort(scores, descending=True, stable=True).indices[:MAX_NMS]
            boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
        nms_classes = None if agnostic else class_ids
        keep = batched_nms_torch(boxes, scores, nms_classes, iou)[:max_det]
        results.append(Detections(boxes[keep], scores[keep], class_ids[keep].long()))
    return results


def postprocess_end2end(num_dets: Any, det_boxes: Any, det_scores: Any, det_classes: Any) -> list[Detections]:
    """Split end-to-end outputs (EfficientNMS convention) into per-image numpy :class:`Detections`.

    Args:
        num_dets: ``[B, 1]`` int, valid rows per image (counts above K are capped at K).
        det_boxes: ``[B, K, 4]`` float, xyxy input pixels.
        det_scores: ``[B, K]`` float.
        det_classes: ``[B, K]`` int.

    numpy arrays or torch tensors (copied to the CPU) are accepted.
    """
    counts = to_numpy(num_dets).reshape(-1).astype(np.int64)
    boxes, scores, class_ids = to_numpy(det_boxes), to_numpy(det_scores), to_numpy(det_classes)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or not (len(counts) == len(boxes) == len(scores)):
        raise ArtifactError(
            f"end-to-end outputs must be num_dets [B,1], det_boxes [B,K,4], det_scores [B,K], det_classes "
            f"[B,K]; got {to_numpy(num_dets).shape}, {boxes.shape}, {scores.shape}, {class_ids.shape}"
        )
    results = []
    for i, count in enumerate(np.clip(counts, 0, boxes.shape[1])):
        results.append(
            Detections(
                boxes[i, :count].astype(np.float32),
                scores[i, :count].astype(np.float32),
                class_ids[i, :count].astype(np.int64),
            )
        )
    return results


def to_numpy(array: Any) -> np.ndarray:
    """A numpy view of a numpy array, or a CPU copy of a torch tensor."""
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return np.asarray(array)
