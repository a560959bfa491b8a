"""Label assignment: hand-built cases on a small 8-pixel grid, plus invariants on random inputs."""

from __future__ import annotations

import torch

from yolov6_sdk.models.anchors import anchor_boxes_for_atss, make_anchor_points
from yolov6_sdk.training.assigners import ATSSAssigner, TaskAlignedAssigner

NUM_CLASSES = 3


def grid_points(h: int, w: int, stride: int = 8) -> torch.Tensor:
    """Anchor points of one level in input pixels, [h * w, 2], row-major."""
    points, strides = make_anchor_points([(h, w)], [stride])
    return points * strides


def one_gt(box: list[float], label: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor([[[float(label)]]]), torch.tensor([[box]]), torch.ones(1, 1, 1)


def test_tal_positives_are_the_points_inside_the_gt_with_aligned_soft_scores() -> None:
    # 4x4 grid of stride 8: points at 4, 12, 20, 28. GT (0, 0, 16, 16) holds exactly the points
    # (4,4), (12,4), (4,12), (12,12) = anchors 0, 1, 4, 5; topk 13 > 4 so all four are positives.
    points = grid_points(4, 4)
    scores = torch.full((1, 16, NUM_CLASSES), 0.5)
    pred = torch.zeros(1, 16, 4)
    pred[0, 0] = torch.tensor([0.0, 0.0, 16.0, 16.0])  # IoU 1
    pred[0, 1] = torch.tensor([8.0, 0.0, 16.0, 16.0])  # IoU 128 / 256 = 0.5
    pred[0, 4] = torch.tensor([0.0, 0.0, 16.0, 8.0])  # IoU 0.5
    pred[0, 5] = torch.tensor([0.0, 0.0, 8.0, 8.0])  # IoU 64 / 256 = 0.25
    labels, boxes, mask = one_gt([0.0, 0.0, 16.0, 16.0], label=2)

    out = TaskAlignedAssigner(topk=13, num_classes=NUM_CLASSES)(scores, pred, points, labels, boxes, mask)

    assert out.fg_mask[0].nonzero().flatten().tolist() == [0, 1, 4, 5]
    assert out.target_labels[0, [0, 1, 4, 5]].tolist() == [2, 2, 2, 2]
    assert (out.target_labels[0, ~out.fg_mask[0]] == NUM_CLASSES).all()
    torch.testing.assert_close(out.target_boxes[0, 5], torch.tensor([0.0, 0.0, 16.0, 16.0]))
    # t = s * u^6: 0.5, 0.5 * 0.5^6, 0.5 * 0.5^6, 0.5 * 0.25^6; scores = t * max_iou (1) / max_t (0.5).
    expected = torch.tensor([1.0, 0.5**6, 0.5**6, 0.25**6])
    torch.testing.assert_close(out.target_scores[0, [0, 1, 4, 5], 2], expected)
    assert out.target_scores[0, :, :2].abs().sum() == 0
    assert out.target_scores[0, ~out.fg_mask[0]].abs().sum() == 0


def test_tal_keeps_only_the_topk_best_aligned_points() -> None:
    points = grid_points(4, 4)
    scores = torch.full((1, 16, NUM_CLASSES), 0.5)
    scores[0, 5, 1] = 0.9  # anchor 5 is the best aligned, then anchor 0
    scores[0, 0, 1] = 0.8
    pred = points.repeat(1, 2)[None] + torch.tensor([-4.0, -4.0, 4.0, 4.0])
    labels, boxes, mask = one_gt([0.0, 0.0, 16.0, 16.0], label=1)

    out = TaskAlignedAssigner(topk=2, num_classes=NUM_CLASSES)(scores, pred, points, labels, boxes, mask)

    assert out.fg_mask[0].nonzero().flatten().tolist() == [0, 5]


def test_tal_shared_anchor_goes_to_the_gt_with_the_higher_iou() -> None:
    # GT a (0,0,16,16) and GT b (8,0,24,16) both hold the points (12,4) and (12,12) = anchors 1 and 5.
    points = grid_points(4, 4)
    scores = torch.full((1, 16, NUM_CLASSES), 0.5)
    pred = points.repeat(1, 2)[None] + torch.tensor([-4.0, -4.0, 4.0, 4.0])  # 8x8 boxes around each point
    pred[0, 1] = torch.tensor([8.0, 0.0, 24.0, 16.0])  # equals GT b: IoU 1 with b, 1/3 with a
    pred[0, 5] = torch.tensor([0.0, 0.0, 16.0, 16.0])  # equals GT a
    labels = torch.tensor([[[0.0], [1.0]]])
    boxes = torch.tensor([[[0.0, 0.0, 16.0, 16.0], [8.0, 0.0, 24.0, 16.0]]])

    out = TaskAlignedAssigner(num_classes=NUM_CLASSES)(scores, pred, points, labels, boxes, torch.ones(1, 2, 1))

    assert out.fg_mask[0, [0, 1, 2, 4, 5, 6]].all()
    assert out.target_labels[0, 1].item() == 1
    torch.testing.assert_close(out.target_boxes[0, 1], boxes[0, 1])
    assert out.target_labels[0, 5].item() == 0
    torch.testing.assert_close(out.target_boxes[0, 5], boxes[0, 0])
    assert (out.target_scores[0].count_nonzero(dim=-1) <= 1).all()


def test_tal_image_without_gt_gets_no_positives() -> None:
    points = grid_points(4, 4)
    scores = torch.rand(2, 16, NUM_CLASSES)
    pred = points.repeat(1, 2)[None].repeat(2, 1, 1) + torch.tensor([-6.0, -6.0, 6.0, 6.0])
    labels = torch.tensor([[[-1.0]], [[1.0]]])  # image 0 holds only a padding row
    boxes = torch.tensor([[[0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 16.0, 16.0]]])
    mask = torch.tensor([[[0.0]], [[1.0]]])

    out = TaskAlignedAssigner(num_classes=NUM_CLASSES)(scores, pred, points, labels, boxes, mask)

    assert not out.fg_mask[0].any()
    assert out.target_scores[0].sum() == 0
    assert (out.target_labels[0] == NUM_CLASSES).all()
    assert out.fg_mask[1].sum() == 4


def test_both_assigners_return_background_when_no_image_has_a_gt() -> None:
    points = grid_points(4, 4)
    labels, boxes, mask = torch.zeros(2, 0, 1), torch.zeros(2, 0, 4), torch.zeros(2, 0, 1)
    pred = torch.rand(2, 16, 4)
    tal = TaskAlignedAssigner(num_classes=NUM_CLASSES)(
        torch.rand(2, 16, NUM_CLASSES), pred, points, labels, boxes, mask
    )
    anchors, _, counts = anchor_boxes_for_atss([(4, 4)], [8])
    atss = ATSSAssigner(num_classes=NUM_CLASSES)(anchors, counts, labels, boxes, mask, pred)
    for out in (tal, atss):
        assert out.target_labels.shape == (2, 16) and (out.target_labels == NUM_CLASSES).all()
        assert out.target_boxes.shape == (2, 16, 4) and out.target_scores.shape == (2, 16, NUM_CLASSES)
        assert out.fg_mask.dtype == torch.bool and not out.fg_mask.any()


def test_atss_keeps_candidates_above_mean_plus_std_iou() -> None:
    # 8x8 grid of stride 8, anchors are 40-pixel squares. GT (4, 4, 36, 36) is centred on the point (20, 20).
    # Its 9 nearest points: the centre (anchor IoU 1024/1600 = 0.64), 4 edge neighbours (896/1728 = 0.5185),
    # 4 diagonal neighbours (784/1840 = 0.4261). Threshold = mean 0.4909 + std 0.0725 = 0.5635, so only the
    # centre anchor (index 2 * 8 + 2 = 18) is positive.
    anchors, _, counts = anchor_boxes_for_atss([(8, 8)], [8])
    labels, boxes, mask = one_gt([4.0, 4.0, 36.0, 36.0], label=1)
    pred = torch.zeros(1, 64, 4)
    pred[0, 18] = torch.tensor([4.0, 4.0, 36.0, 20.0])  # half of the GT: IoU 0.5

    out = ATSSAssigner(topk=9, num_classes=NUM_CLASSES)(anchors, counts, labels, boxes, mask, pred)

    assert out.fg_mask[0].nonzero().flatten().tolist() == [18]
    assert out.target_labels[0, 18].item() == 1
    torch.testing.assert_close(out.target_boxes[0, 18], boxes[0, 0])
    torch.testing.assert_close(out.target_scores[0, 18], torch.tensor([0.0, 0.5, 0.0]))
    unweighted = ATSSAssigner(num_classes=NUM_CLASSES)(anchors, counts, labels, boxes, mask)
    torch.testing.assert_close(unweighted.target_scores[0, 18], torch.tensor([0.0, 1.0, 0.0]))


def test_assignments_on_random_inputs_respect_the_invariants() -> None:
    generator = torch.Generator().manual_seed(0)
    sizes, strides = [(12, 12), (6, 6), (3, 3)], [8, 16, 32]
    points, point_strides = make_anchor_points(sizes, strides)
    points_px = points * point_strides
    anchors, _, counts = anchor_boxes_for_atss(sizes, strides)
    batch, rows, num_anchors = 3, 6, points.shape[0]
    for _ in range(10):
        corner = torch.rand(batch, rows, 2, generator=generator) * 70
        boxes = torch.cat((corner, corner + 4 + torch.rand(batch, rows, 2, generator=generator) * 40), dim=-1)
        labels = torch.randint(0, NUM_CLASSES, (batch, rows, 1), generator=generator).float()
        mask = (torch.rand(batch, rows, 1, generator=generator) > 0.3).float()
        ltrb = torch.rand(batch, num_anchors, 4, generator=generator) * 3 * point_strides
        pred = torch.cat((points_px - ltrb[..., :2], points_px + ltrb[..., 2:]), dim=-1)
        scores = torch.rand(batch, num_anchors, NUM_CLASSES, generator=generator)
        outs = [
            TaskAlignedAssigner(num_classes=NUM_CLASSES)(scores, pred, points_px, labels, boxes, mask),
            ATSSAssigner(num_classes=NUM_CLASSES)(anchors, counts, labels, boxes, mask, pred),
        ]
        for out in outs:
            fg = out.fg_mask
            inside_points = points_px.expand(batch, -1, -1)[fg]
            target = out.target_boxes[fg]
            assert (inside_points > target[:, :2]).all() and (inside_points < target[:, 2:]).all()
            assert (out.target_scores >= 0).all() and (out.target_scores <= 1 + 1e-6).all()
            assert out.target_scores[~fg].sum() == 0
            assert (out.target_scores[fg].count_nonzero(dim=-1) <= 1).all()
            assert (out.target_labels[fg] < NUM_CLASSES).all()
            for b in range(batch):  # every positive belongs to a real (unpadded) GT of its own image
                real = boxes[b][mask[b, :, 0] > 0]
                assert all((real == box).all(-1).any() for box in out.target_boxes[b][fg[b]])
