"""Losses: IoU family, VFL, DFL and distillation against hand-computed values; YOLOv6Loss end to end."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
import torch

from yolov6_sdk.errors import ConfigError, DatasetError
from yolov6_sdk.training.assigners import Assignment
from yolov6_sdk.training.boxes import bbox_iou, box_to_dist, dist_to_box, pairwise_iou
from yolov6_sdk.training.losses import (
    Distillation,
    YOLOv6Loss,
    bbox_loss,
    dfl_loss,
    distill_decay,
    distill_loss,
    pad_targets,
    varifocal_loss,
)

SIZES = [(8, 8), (4, 4), (2, 2)]  # a 64x64 input at strides 8, 16, 32
NUM_ANCHORS = 84


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny tensors: thread start-up on a shared CPU costs more than the maths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PRED = torch.tensor([0.0, 0.0, 4.0, 2.0])
TARGET = torch.tensor([1.0, 1.0, 5.0, 5.0])


def hand_values() -> dict[str, float]:
    """IoU variants of PRED (4x2 at centre (2,1)) vs TARGET (4x4 at centre (3,3)), worked out by hand."""
    iou = 3 / 21  # intersection 3x1, union 8 + 16 - 3
    v = 4 / math.pi**2 * (math.atan(4 / 4) - math.atan(4 / 2)) ** 2
    angle = 4 / 5  # cos(2 * asin(1 / sqrt(5)) - pi / 2) = 2 sin cos = 2 * (1 / sqrt 5) * (2 / sqrt 5)
    gamma = angle - 2
    distance = 2 - math.exp(gamma * (1 / 5) ** 2) - math.exp(gamma * (2 / 5) ** 2)  # offsets 1, 2; hull 5x5
    shape = (1 - math.exp(-0.0)) ** 4 + (1 - math.exp(-2 / 4)) ** 4  # widths equal, heights 2 vs 4
    return {
        "iou": iou,
        "giou": iou - (25 - 21) / 25,  # hull 5x5
        "diou": iou - 5 / 50,  # centre distance^2 = 1 + 4, hull diagonal^2 = 25 + 25
        "ciou": iou - (5 / 50 + v * v / (v - iou + 1)),
        "siou": iou - 0.5 * (distance + shape),
    }


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou", "siou"])
def test_iou_family_matches_hand_computed_values(kind: str) -> None:
    value = bbox_iou(PRED, TARGET, kind)
    assert value.shape == ()
    assert value.item() == pytest.approx(hand_values()[kind], abs=1e-6)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou", "siou"])
def test_identical_boxes_have_iou_one_and_finite_gradients(kind: str) -> None:
    pred = torch.tensor([[2.0, 3.0, 10.0, 7.0], [0.0, 0.0, 4.0, 2.0]], requires_grad=True)
    target = torch.tensor([[2.0, 3.0, 10.0, 7.0], [1.0, 1.0, 5.0, 5.0]])
    value = bbox_iou(pred, target, kind)
    assert value[0].item() == pytest.approx(1.0, abs=1e-6)
    (1 - value).sum().backward()
    assert torch.isfinite(pred.grad).all()


def test_bbox_iou_rejects_an_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="giou"):
        bbox_iou(PRED, TARGET, "eiou")  # type: ignore[arg-type]


def test_pairwise_iou_equals_elementwise_iou_and_handles_empty_sets() -> None:
    a = torch.tensor([[0.0, 0.0, 4.0, 2.0], [10.0, 10.0, 12.0, 12.0]])
    b = torch.tensor([[1.0, 1.0, 5.0, 5.0], [0.0, 0.0, 4.0, 2.0], [20.0, 20.0, 30.0, 30.0]])
    table = pairwise_iou(a, b)
    assert table.shape == (2, 3)
    torch.testing.assert_close(table, bbox_iou(a[:, None], b[None], "iou"), atol=1e-6, rtol=0)
    assert table[0, 0].item() == pytest.approx(3 / 21)
    assert pairwise_iou(a, torch.zeros(0, 4)).shape == (2, 0)


def test_distances_and_boxes_convert_both_ways_and_dfl_targets_are_clipped() -> None:
    points = torch.tensor([[4.5, 2.5], [0.5, 0.5]])
    ltrb = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.25, 0.5, 20.0, 1.0]])
    boxes = dist_to_box(ltrb, points)
    torch.testing.assert_close(boxes[0], torch.tensor([3.5, 0.5, 7.5, 6.5]))
    back = box_to_dist(boxes, points, reg_max=16)
    torch.testing.assert_close(back[0], ltrb[0])
    assert back[1, 2].item() == pytest.approx(15.99)  # 20 clipped to reg_max - 0.01
    outside = box_to_dist(torch.tensor([[1.0, 1.0, 3.0, 3.0]]), torch.tensor([[0.5, 2.0]]), reg_max=16)
    assert outside[0, 0].item() == 0.0  # point left of the box: negative distance clipped to 0


def test_varifocal_loss_of_two_anchors_matches_hand_value() -> None:
    pred = torch.tensor([[0.8], [0.3]], requires_grad=True)
    target = torch.tensor([[0.6], [0.0]])
    label = torch.tensor([[1.0], [0.0]])
    # positive: BCE(0.8, 0.6) * 0.6; negative: BCE(0.3, 0) * 0.75 * 0.3^2
    positive = -(0.6 * math.log(0.8) + 0.4 * math.log(0.2)) * 0.6
    negative = -math.log(0.7) * 0.75 * 0.3**2
    loss = varifocal_loss(pred, target, label)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(positive + negative, rel=1e-5)
    assert loss.item() == pytest.approx(0.490672, abs=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_varifocal_loss_is_computed_in_float32_from_half_inputs() -> None:
    pred = torch.tensor([[0.8], [0.3]], dtype=torch.float16)
    loss = varifocal_loss(pred, torch.tensor([[0.6], [0.0]]), torch.tensor([[1.0], [0.0]]))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.490672, abs=1e-3)


def test_dfl_loss_of_target_2_3_mixes_the_two_nearest_bins() -> None:
    logits = torch.zeros(1, 4, 17)
    logits[..., 2], logits[..., 3] = 2.0, 1.0
    logits = logits.reshape(1, 68).requires_grad_()
    log_norm = math.log(15 + math.exp(2.0) + math.exp(1.0))
    expected = 0.7 * (log_norm - 2.0) + 0.3 * (log_norm - 1.0)  # CE(bin 2) * (3 - 2.3) + CE(bin 3) * (2.3 - 2)
    loss = dfl_loss(logits, torch.full((1, 4), 2.3), reg_max=16)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_dfl_loss_bins_are_side_major() -> None:
    logits = torch.zeros(1, 4, 17)
    logits[0, 1, 5] = 10.0  # only the "top" side is confident, at bin 5
    sides = torch.tensor([[0.0, 5.0, 0.0, 0.0]])
    loss_right = dfl_loss(logits.reshape(1, 68), sides, reg_max=16)
    loss_wrong = dfl_loss(logits.transpose(1, 2).reshape(1, 68), sides, reg_max=16)
    assert loss_right.item() < loss_wrong.item()


def test_dfl_loss_rejects_logits_of_another_reg_max() -> None:
    with pytest.raises(ConfigError, match="reg_max"):
        dfl_loss(torch.zeros(2, 4 * 17), torch.zeros(2, 4), reg_max=8)


def test_bbox_loss_weights_each_positive_and_normalises() -> None:
    pred = torch.stack((PRED, TARGET))
    target = torch.stack((TARGET, TARGET))
    weights = torch.tensor([0.5, 2.0])
    loss = bbox_loss(pred, target, weights, normaliser=2.5, iou_type="giou")
    expected = (1 - hand_values()["giou"]) * 0.5 / 2.5  # the second box is exact: loss 0
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    empty = bbox_loss(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0), 1.0)
    assert empty.item() == 0.0


def test_distill_loss_matches_hand_values_and_vanishes_for_an_identical_teacher() -> None:
    student = torch.tensor([[[0.2, 0.8]]])
    teacher = torch.tensor([[[0.6, 0.4]]])
    dist = torch.zeros(1, 1, 4 * 17)
    fg = torch.tensor([[True]])
    weights = torch.tensor([[1.0]])
    temperature = 2.0

    def softmax(values: list[float]) -> list[float]:
        exps = [math.exp(v / temperature) for v in values]
        return [e / sum(exps) for e in exps]

    p_s, p_t = softmax([0.2, 0.8]), softmax([0.6, 0.4])
    expected_cls = sum(t * math.log(t / s) for s, t in zip(p_s, p_t, strict=True)) * temperature**2
    kd_cls, kd_dfl = distill_loss(student, teacher, dist, dist, fg, weights, temperature)
    assert kd_cls.item() == pytest.approx(expected_cls, rel=1e-5)
    assert kd_dfl.item() == pytest.approx(0.0, abs=1e-7)

    teacher_dist = dist.clone()
    teacher_dist[..., 3] = 5.0
    student_dist = dist.clone().requires_grad_()
    _, kd_dfl = distill_loss(student, student, student_dist, teacher_dist, fg, weights, temperature)
    assert kd_dfl.item() > 0
    kd_dfl.backward()
    assert torch.isfinite(student_dist.grad).all()

    no_fg = torch.tensor([[False]])
    _, kd_empty = distill_loss(student, teacher, student_dist, teacher_dist, no_fg, weights * 0, temperature)
    assert kd_empty.item() == 0.0


def test_distill_decay_runs_cosine_from_one_to_one_hundredth() -> None:
    assert distill_decay(0, 300) == pytest.approx(1.0)
    assert distill_decay(150, 300) == pytest.approx(0.505)
    assert distill_decay(300, 300) == pytest.approx(0.01)
    with pytest.raises(ConfigError):
        distill_decay(1, 0)


def test_pad_targets_groups_rows_per_image() -> None:
    targets = torch.tensor(
        [
            [1, 2, 0, 0, 8, 8],
            [0, 1, 4, 4, 16, 16],
            [1, 0, 10, 10, 20, 20],
        ],
        dtype=torch.float32,
    )
    labels, boxes, mask = pad_targets(targets, batch_size=3, num_classes=3)
    assert labels.shape == (3, 2, 1) and boxes.shape == (3, 2, 4) and mask.shape == (3, 2, 1)
    assert mask[:, :, 0].tolist() == [[1, 0], [1, 1], [0, 0]]
    assert labels[1, :, 0].tolist() == [2, 0]
    torch.testing.assert_close(boxes[1, 1], torch.tensor([10.0, 10.0, 20.0, 20.0]))
    empty = pad_targets(torch.zeros(0, 6), batch_size=2, num_classes=3)
    assert [t.shape for t in empty] == [(2, 0, 1), (2, 0, 4), (2, 0, 1)]


@pytest.mark.parametrize(
    ("row", "message"),
    [([0, 5, 0, 0, 4, 4], "classes"), ([2, 0, 0, 0, 4, 4], "batch"), ([0, 0.5, 0, 0, 4, 4], "classes")],
)
def test_pad_targets_rejects_bad_rows(row: list[float], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        pad_targets(torch.tensor([row], dtype=torch.float32), batch_size=2, num_classes=3)


def free_outputs(use_dfl: bool, batch: int = 1, num_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable class logits and regression at the official initial biases (-4.595 and 1.0)."""
    channels = 68 if use_dfl else 4
    cls_logits = torch.full((batch, NUM_ANCHORS, num_classes), -math.log((1 - 0.01) / 0.01), requires_grad=True)
    reg = torch.ones(batch, NUM_ANCHORS, channels, requires_grad=True)
    return cls_logits, reg


@pytest.mark.parametrize(("use_dfl", "iou_type"), [(True, "giou"), (False, "siou")])
def test_loss_falls_by_80_percent_when_fitting_free_outputs_to_one_gt(use_dfl: bool, iou_type: str) -> None:
    # Neutral start (p = 0.5): with the 0.01 prior the DFL entropy floor of fractional targets is a large
    # share of the starting loss, which would measure the floor rather than the fit.
    start = time.perf_counter()
    loss_fn = YOLOv6Loss(num_classes=2, use_dfl=use_dfl, iou_type=iou_type)  # type: ignore[arg-type]
    cls_logits, reg = free_outputs(use_dfl)
    with torch.no_grad():
        cls_logits.zero_()
    targets = torch.tensor([[0, 1, 10.0, 14.0, 42.0, 50.0]])
    optimiser = torch.optim.Adam([cls_logits, reg], lr=0.1)
    history = []
    for _ in range(100):
        loss, parts = loss_fn(cls_logits.sigmoid(), reg, SIZES, targets, epoch=0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append((loss.item(), parts["iou"].item()))
    assert parts["num_positives"].item() > 0
    assert history[-1][0] <= 0.2 * history[0][0], history[::10]
    assert history[-1][1] <= 0.2 * history[0][1], history[::10]  # the boxes themselves were fitted
    assert time.perf_counter() - start < 20


def test_zero_gt_batch_gives_a_finite_loss_with_gradients() -> None:
    loss_fn = YOLOv6Loss(num_classes=2, warmup_epochs=1)
    cls_logits, reg = free_outputs(use_dfl=True, batch=2)
    for epoch in (0, 1):  # ATSS, then TAL
        loss, parts = loss_fn(cls_logits.sigmoid(), reg, SIZES, torch.zeros(0, 6), epoch=epoch)
        loss.backward()
        assert torch.isfinite(loss) and loss.item() > 0  # background classification still counts
        assert parts["iou"].item() == 0.0 and parts["dfl"].item() == 0.0
        assert torch.isfinite(cls_logits.grad).all() and torch.isfinite(reg.grad).all()


def test_total_is_the_sum_of_weighted_components_and_gradients_are_finite() -> None:
    loss_fn = YOLOv6Loss(num_classes=2)
    cls_logits, reg = free_outputs(use_dfl=True, batch=2)
    targets = torch.tensor([[0, 1, 10.0, 14.0, 42.0, 50.0], [1, 0, 0.0, 0.0, 30.0, 20.0], [1, 1, 20, 20, 60, 60]])
    loss, parts = loss_fn(cls_logits.sigmoid(), reg, SIZES, targets, epoch=0)
    assert loss.item() == pytest.approx((parts["class"] + parts["iou"] + parts["dfl"]).item(), rel=1e-6)
    assert all(not value.requires_grad for value in parts.values())
    loss.backward()
    assert torch.isfinite(cls_logits.grad).all() and torch.isfinite(reg.grad).all()


def test_exact_box_predictions_give_zero_iou_loss_in_stride_units() -> None:
    gt = torch.tensor([10.0, 14.0, 42.0, 50.0])
    loss_fn = YOLOv6Loss(num_classes=2, use_dfl=False)
    from yolov6_sdk.models.anchors import make_anchor_points

    points, strides = make_anchor_points(SIZES, (8, 16, 32))
    exact = torch.cat((points * strides - gt[:2], gt[2:] - points * strides), dim=-1) / strides  # grid units
    scores = torch.full((1, NUM_ANCHORS, 2), 0.5)
    _, parts = loss_fn(scores, exact[None], SIZES, torch.tensor([[0, 1, *gt.tolist()]]), epoch=0)
    assert parts["num_positives"].item() > 0
    assert parts["iou"].item() == pytest.approx(0.0, abs=1e-5)


def test_warmup_epochs_use_atss_then_tal(monkeypatch: pytest.MonkeyPatch) -> None:
    loss_fn = YOLOv6Loss(num_classes=2, warmup_epochs=2)
    calls: list[str] = []
    for name in ("warmup_assigner", "assigner"):
        original = getattr(loss_fn, name).forward

        def spy(*args: object, _name: str = name, _original: object = original) -> Assignment:
            calls.append(_name)
            return _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(getattr(loss_fn, name), "forward", spy)
    cls_logits, reg = free_outputs(use_dfl=True)
    targets = torch.tensor([[0, 1, 10.0, 14.0, 42.0, 50.0]])
    for epoch in (0, 1, 2):
        loss, _ = loss_fn(cls_logits.sigmoid(), reg, SIZES, targets, epoch=epoch)
        assert torch.isfinite(loss)
    assert calls == ["warmup_assigner", "warmup_assigner", "assigner"]


def test_reg_lrtb_branch_adds_its_own_iou_loss() -> None:
    loss_fn = YOLOv6Loss(num_classes=2)
    cls_logits, reg = free_outputs(use_dfl=True)
    targets = torch.tensor([[0, 1, 10.0, 14.0, 42.0, 50.0]])
    lrtb = torch.full((1, NUM_ANCHORS, 4), 8.0)  # the expectation of uniform 17-bin logits
    _, plain = loss_fn(cls_logits.sigmoid(), reg, SIZES, targets, epoch=0)
    _, with_lrtb = loss_fn(cls_logits.sigmoid(), reg, SIZES, targets, epoch=0, reg_lrtb=lrtb)
    assert with_lrtb["iou"].item() == pytest.approx(2 * plain["iou"].item(), rel=1e-5)
    assert with_lrtb["class"].item() == pytest.approx(plain["class"].item())


def test_distillation_adds_decayed_class_and_dfl_terms_to_the_total() -> None:
    loss_fn = YOLOv6Loss(num_classes=2)
    cls_logits, reg = free_outputs(use_dfl=True)
    targets = torch.tensor([[0, 1, 10.0, 14.0, 42.0, 50.0]])
    teacher = Distillation(torch.rand(1, NUM_ANCHORS, 2), torch.randn(1, NUM_ANCHORS, 68), max_epochs=10)
    _, plain = loss_fn(cls_logits.sigmoid(), reg, SIZES, targets, epoch=5)
    total, parts = loss_fn(cls_logits.sigmoid(), reg, SIZES, targets, epoch=5, distill=teacher)
    assert parts["distill_cls"].item() > 0 and parts["distill_dfl"].item() > 0
    for name in ("class", "iou", "dfl"):
        assert parts[name].item() == pytest.approx(plain[name].item(), rel=1e-6)
    summed = sum(parts[name] for name in ("class", "iou", "dfl", "distill_cls", "distill_dfl"))
    assert total.item() == pytest.approx(summed.item(), rel=1e-6)
    total.backward()
    assert torch.isfinite(reg.grad).all()


def test_loss_rejects_outputs_that_do_not_match_its_configuration() -> None:
    cls_logits, reg = free_outputs(use_dfl=False)
    targets = torch.zeros(0, 6)
    with pytest.raises(ConfigError, match="use_dfl"):
        YOLOv6Loss(num_classes=2, use_dfl=True)(cls_logits.sigmoid(), reg, SIZES, targets, epoch=0)
    with pytest.raises(ConfigError, match="num_classes"):
        YOLOv6Loss(num_classes=3, use_dfl=False)(cls_logits.sigmoid(), reg, SIZES, targets, epoch=0)
    with pytest.raises(ConfigError, match="strides"):
        YOLOv6Loss(num_classes=2, use_dfl=False)(cls_logits.sigmoid(), reg, SIZES[:2], targets, epoch=0)
    with pytest.raises(ConfigError, match="weight"):
        YOLOv6Loss(num_classes=2, weights={"cls": 1.0})
    with pytest.raises(ConfigError, match="IoU kind"):
        YOLOv6Loss(num_classes=2, iou_type="eiou")  # type: ignore[arg-type]
