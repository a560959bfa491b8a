"""Box ops, NMS and output decoding: numpy vs torch vs slow references."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yolov6_sdk.errors import ArtifactError, ConfigError
from yolov6_sdk.runtime import postprocess
from yolov6_sdk.runtime.postprocess import (
    batched_nms_numpy,
    batched_nms_torch,
    box_iou,
    nms_numpy,
    nms_torch,
    postprocess_end2end,
    postprocess_raw,
    postprocess_raw_torch,
    xywh_to_xyxy,
)

THRESHOLDS = [0.3, 0.45, 0.5, 0.65, 0.7]


def _iou_slow(a: list[float], b: list[float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms_slow(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float) -> list[int]:
    """Textbook greedy NMS in plain Python: rank by score (ties: lower index), drop same-class overlaps."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    suppressed, keep = set(), []
    for rank, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[rank + 1 :]:
            if classes[i] == classes[j] and _iou_slow(boxes[i].tolist(), boxes[j].tolist()) > iou_thres:
                suppressed.add(j)
    return keep


@st.composite
def _grid_boxes(draw: st.DrawFn, max_n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes on an integer grid (IoUs are exact fractions, so float32 and float64 agree on every
    comparison with the thresholds used) with tied scores and a few classes."""
    n = draw(st.integers(0, max_n))
    ints = st.lists(st.integers(0, 48), min_size=n, max_size=n)
    sizes = st.lists(st.integers(1, 48), min_size=n, max_size=n)
    x, y, w, h = (np.array(draw(s), dtype=np.float32) for s in (ints, ints, sizes, sizes))
    boxes = np.stack([x, y, x + w, y + h], 1).reshape(n, 4)
    scores = np.array(draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)), dtype=np.float32) / 6
    classes = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    return boxes, scores, classes


# ------------------------------------------------------------------------------------------ box ops


def test_xywh_to_xyxy_numpy_and_torch() -> None:
    xywh = np.array([[10.0, 20.0, 4.0, 6.0]], dtype=np.float32)
    expected = [[8.0, 17.0, 12.0, 23.0]]
    np.testing.assert_array_equal(xywh_to_xyxy(xywh), expected)
    assert xywh_to_xyxy(xywh).dtype == np.float32 and xywh[0, 0] == 10.0
    np.testing.assert_array_equal(xywh_to_xyxy(torch.from_numpy(xywh)).numpy(), expected)


@settings(max_examples=50, deadline=None)
@given(a=_grid_boxes(max_n=10), b=_grid_boxes(max_n=10))
def test_box_iou_matches_slow_reference_in_numpy_and_torch(a: tuple, b: tuple) -> None:
    boxes_a, boxes_b = a[0], b[0]
    expected = np.array([[_iou_slow(p.tolist(), q.tolist()) for q in boxes_b] for p in boxes_a]).reshape(
        len(boxes_a), len(boxes_b)
    )
    got = box_iou(boxes_a, boxes_b)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(box_iou(torch.from_numpy(boxes_a), torch.from_numpy(boxes_b)).numpy(), got)


def test_box_iou_of_degenerate_boxes_is_zero_not_nan() -> None:
    point = np.array([[5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    assert box_iou(point, point)[0, 0] == 0.0


# ------------------------------------------------------------------------------------------ NMS


@settings(max_examples=150, deadline=None)
@given(case=_grid_boxes(), iou_thres=st.sampled_from(THRESHOLDS))
def test_nms_agrees_with_slow_reference(case: tuple, iou_thres: float) -> None:
    boxes, scores, classes = case
    agnostic = np.zeros_like(classes)
    assert nms_numpy(boxes, scores, iou_thres).tolist() == _nms_slow(boxes, scores, agnostic, iou_thres)
    assert batched_nms_numpy(boxes, scores, classes, iou_thres).tolist() == _nms_slow(boxes, scores, classes, iou_thres)


@settings(max_examples=60, deadline=None)
@given(case=_grid_boxes(), iou_thres=st.sampled_from(THRESHOLDS), block=st.sampled_from([4, 16, 1024]))
def test_torch_nms_gives_the_numpy_indices(case: tuple, iou_thres: float, block: int) -> None:
    boxes, scores, classes = case
    tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
    with mock.patch.object(postprocess, "_NMS_BLOCK", block):  # small blocks exercise the cross-block path
        agnostic = nms_torch(tb, ts, iou_thres)
        aware = batched_nms_torch(tb, ts, tc, iou_thres)
    assert agnostic.dtype == torch.int64
    assert agnostic.tolist() == nms_numpy(boxes, scores, iou_thres).tolist()
    assert aware.tolist() == batched_nms_numpy(boxes, scores, classes, iou_thres).tolist()


def _per_class_greedy_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float) -> np.ndarray:
    """The per-class form: one greedy NMS (box_iou against the remaining boxes) per class, then merged."""
    kept = [np.zeros(0, dtype=np.int64)]
    for class_id in np.unique(classes):
        members = np.flatnonzero(classes == class_id)
        order, keep = np.argsort(-scores[members], kind="stable"), []
        while order.size:
            best, order = order[0], order[1:]
            keep.append(best)
            order = order[box_iou(boxes[members][best : best + 1], boxes[members][order])[0] <= iou_thres]
        kept.append(members[np.asarray(keep, dtype=np.int64)])
    merged = np.sort(np.concatenate(kept))
    return merged[np.argsort(-scores[merged], kind="stable")]


@pytest.mark.parametrize("seed", range(12))
def test_single_pass_nms_equals_per_class_nms_on_random_float_boxes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 600))
    xy = rng.uniform(0, 600, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(1, 120, (n, 2)).astype(np.float32)], 1)
    scores = rng.uniform(0.01, 1, n).astype(np.float32).round(2)  # rounded: ties happen
    classes = rng.integers(0, int(rng.integers(1, 20)), n)
    iou_thres = float(rng.choice(THRESHOLDS))
    expected = _per_class_greedy_nms(boxes, scores, classes, iou_thres)
    np.testing.assert_array_equal(batched_nms_numpy(boxes, scores, classes, iou_thres), expected)
    agnostic = _per_class_greedy_nms(boxes, scores, np.zeros_like(classes), iou_thres)
    np.testing.assert_array_equal(nms_numpy(boxes, scores, iou_thres), agnostic)


def test_torch_nms_resolves_a_long_suppression_chain() -> None:
    # each box overlaps only its neighbours: greedy keeps every other box
    x = np.arange(50, dtype=np.float32) * 6
    boxes = np.stack([x, np.zeros_like(x), x + 10, np.full_like(x, 10)], 1)
    scores = np.linspace(1.0, 0.5, 50, dtype=np.float32)
    expected = nms_numpy(boxes, scores, 0.2)
    assert expected.tolist() == list(range(0, 50, 2))
    with mock.patch.object(postprocess, "_NMS_BLOCK", 16):
        assert nms_torch(torch.from_numpy(boxes), torch.from_numpy(scores), 0.2).tolist() == expected.tolist()


def test_nms_of_nothing_is_an_empty_index_array() -> None:
    empty_boxes, empty_scores = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    assert nms_numpy(empty_boxes, empty_scores, 0.5).shape == (0,)
    assert batched_nms_numpy(empty_boxes, empty_scores, np.zeros(0, np.int64), 0.5).dtype == np.int64
    assert nms_torch(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)


# ------------------------------------------------------------------------------------------ decoding


def _raw(rows: list[tuple[float, float, float, float, list[float]]], nc: int = 3) -> np.ndarray:
    """One image of raw outputs from (cx, cy, w, h, class scores) rows; objectness 1.0."""
    out = np.zeros((1, len(rows), 5 + nc), dtype=np.float32)
    for i, (cx, cy, w, h, cls) in enumerate(rows):
        out[0, i, :5] = cx, cy, w, h, 1.0
        out[0, i, 5 : 5 + len(cls)] = cls
    return out


SCENE = _raw(
    [
        (50, 50, 20, 20, [0.9]),  # kept
        (51, 50, 20, 20, [0.8]),  # same class, IoU ~0.9 with the first: suppressed
        (51, 51, 20, 20, [0.0, 0.7]),  # other class: kept
        (150, 150, 10, 10, [0.2, 0.0, 0.3]),  # kept (class 2), and class 0 only with multi-label below 0.25
        (300, 300, 10, 10, [0.1]),  # below conf: dropped
    ]
)


@pytest.mark.parametrize("decode", [postprocess_raw, postprocess_raw_torch])
def test_postprocess_raw_keeps_the_expected_detections(decode) -> None:
    outputs = SCENE if decode is postprocess_raw else torch.from_numpy(SCENE)
    (det,) = decode(outputs)
    boxes, scores, class_ids = (np.asarray(v) for v in det)
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.3])
    assert class_ids.tolist() == [0, 1, 2] and class_ids.dtype == np.int64
    np.testing.assert_allclose(boxes, [[40, 40, 60, 60], [41, 41, 61, 61], [145, 145, 155, 155]])
    assert boxes.dtype == np.float32


def test_postprocess_raw_options() -> None:
    (only_one,) = postprocess_raw(SCENE, classes=[1])
    assert only_one.class_ids.tolist() == [1]
    (agnostic,) = postprocess_raw(SCENE, agnostic=True)
    assert agnostic.class_ids.tolist() == [0, 2]
    (capped,) = postprocess_raw(SCENE, max_det=2)
    np.testing.assert_allclose(capped.scores, [0.9, 0.7])
    (multi,) = postprocess_raw(SCENE, conf=0.15, multi_label=True)
    assert sorted(
        zip(multi.class_ids.tolist(), np.round(multi.scores.astype(np.float64), 2).tolist(), strict=True)
    ) == [
        (0, 0.2),
        (0, 0.9),
        (1, 0.7),
        (2, 0.3),
    ]


def test_postprocess_raw_with_nothing_above_conf_gives_empty_arrays() -> None:
    for det in (postprocess_raw(SCENE, conf=0.95)[0], postprocess_raw_torch(torch.from_numpy(SCENE), conf=0.95)[0]):
        assert tuple(det.boxes.shape) == (0, 4) and tuple(det.scores.shape) == (0,) and det.class_ids.shape[0] == 0


@pytest.mark.parametrize("multi_label", [False, True])
def test_postprocess_numpy_and_torch_give_identical_detections(multi_label: bool) -> None:
    rng = np.random.default_rng(3)
    batch, anchors, nc = 3, 400, 5
    outputs = np.empty((batch, anchors, 5 + nc), dtype=np.float32)
    outputs[..., :2] = rng.uniform(0, 160, (batch, anchors, 2))
    outputs[..., 2:4] = rng.uniform(4, 60, (batch, anchors, 2))
    outputs[..., 4] = 1.0
    outputs[..., 5:] = rng.uniform(0, 1, (batch, anchors, nc)) ** 3
    before = outputs.copy()
    tensor = torch.from_numpy(outputs.copy())
    expected = postprocess_raw(outputs, conf=0.03, iou=0.65, multi_label=multi_label)
    got = postprocess_raw_torch(tensor, conf=0.03, iou=0.65, multi_label=multi_label)
    for exp, det in zip(expected, got, strict=True):
        assert len(exp.scores) > 20
        np.testing.assert_array_equal(det.boxes.numpy(), exp.boxes)
        np.testing.assert_array_equal(det.scores.numpy(), exp.scores)
        np.testing.assert_array_equal(det.class_ids.numpy(), exp.class_ids)
    np.testing.assert_array_equal(outputs, before)
    np.testing.assert_array_equal(tensor.numpy(), before)


def test_postprocess_caps_candidates_before_nms() -> None:
    scores = [[0.3 + 0.01 * i] for i in range(10)]
    outputs = _raw([(20 * i + 10, 10, 8, 8, s) for i, s in enumerate(scores)], nc=1)
    with mock.patch.object(postprocess, "MAX_NMS", 4):
        (det,) = postprocess_raw(outputs)
        (det_torch,) = postprocess_raw_torch(torch.from_numpy(outputs))
    np.testing.assert_allclose(det.scores, [0.39, 0.38, 0.37, 0.36])
    np.testing.assert_array_equal(det_torch.scores.numpy(), det.scores)


def test_postprocess_raw_rejects_bad_inputs_with_a_fix() -> None:
    with pytest.raises(ArtifactError, match="postprocess_end2end"):
        postprocess_raw(np.zeros((1, 100, 4), dtype=np.float32))
    with pytest.raises(ConfigError, match="conf must be a number in 0..1, got 25"):
        postprocess_raw(SCENE, conf=25)
    with pytest.raises(ConfigError, match="max_det"):
        postprocess_raw_torch(torch.from_numpy(SCENE), max_det=0)


def test_postprocess_end2end_splits_valid_rows_per_image() -> None:
    num_dets = np.array([[2], [0], [9]], dtype=np.int32)
    boxes = np.arange(3 * 3 * 4, dtype=np.float32).reshape(3, 3, 4)
    scores = np.array([[0.9, 0.8, 0.0], [0.0, 0.0, 0.0], [0.7, 0.6, 0.5]], dtype=np.float32)
    classes = np.array([[1, 2, -1], [-1, -1, -1], [0, 0, 4]], dtype=np.int32)
    for inputs in [
        (num_dets, boxes, scores, classes),
        tuple(torch.from_numpy(a) for a in (num_dets, boxes, scores, classes)),
    ]:
        first, second, third = postprocess_end2end(*inputs)
        np.testing.assert_array_equal(first.boxes, boxes[0, :2])
        assert first.class_ids.tolist() == [1, 2] and first.class_ids.dtype == np.int64
        assert second.boxes.shape == (0, 4) and second.scores.shape == (0,)
        assert len(third.scores) == 3  # a count above K is capped at K


def test_postprocess_end2end_rejects_mismatched_outputs() -> None:
    with pytest.raises(ArtifactError, match="det_boxes"):
        postprocess_end2end(np.zeros((2, 1)), np.zeros((2, 5, 5)), np.zeros((2, 5)), np.zeros((2, 5)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("multi_label", [False, True])
def test_cuda_postprocess_matches_numpy(multi_label: bool) -> None:
    rng = np.random.default_rng(4)
    outputs = np.empty((2, 8400, 85), dtype=np.float32)
    outputs[..., :2] = rng.uniform(0, 640, (2, 8400, 2))
    outputs[..., 2:4] = rng.uniform(8, 200, (2, 8400, 2))
    outputs[..., 4] = 1.0
    outputs[..., 5:] = rng.uniform(0, 1, (2, 8400, 80)) ** 6
    expected = postprocess_raw(outputs, conf=0.03, iou=0.65, multi_label=multi_label)
    got = postprocess_raw_torch(torch.from_numpy(outputs).cuda(), conf=0.03, iou=0.65, multi_label=multi_label)
    for exp, det in zip(expected, got, strict=True):
        assert det.boxes.is_cuda
        np.testing.assert_array_equal(det.boxes.cpu().numpy(), exp.boxes)
        np.testing.assert_array_equal(det.class_ids.cpu().numpy(), exp.class_ids)
