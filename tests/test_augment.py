"""Training augmentations: boxes follow the pixels, borders are gray 114, inputs are never modified."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolov6_sdk.artifact import preprocess
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.training import augment as aug

FAST = settings(max_examples=40, deadline=None)


@st.composite
def rect_images(draw: st.DrawFn, max_rects: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A black image with white axis-aligned rectangles (one image per rectangle) and their boxes."""
    h, w = draw(st.integers(48, 128)), draw(st.integers(48, 128))
    boxes = []
    for _ in range(draw(st.integers(1, max_rects))):
        x1, y1 = draw(st.integers(0, w - 8)), draw(st.integers(0, h - 8))
        x2, y2 = draw(st.integers(x1 + 6, w)), draw(st.integers(y1 + 6, h))
        boxes.append([x1, y1, x2, y2])
    return np.zeros((h, w, 3), np.uint8), np.array(boxes, np.float32)


def _paint(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    out = img.copy()
    x1, y1, x2, y2 = box.astype(int)
    out[y1:y2, x1:x2] = 255
    return out


def _white_extent(img: np.ndarray) -> np.ndarray | None:
    """Pixel-edge box of the pixels brighter than mid-gray, or None."""
    mask = img.max(axis=2) > 127
    if not mask.any():
        return None
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def _inside(boxes: np.ndarray, h: int, w: int) -> bool:
    return bool(
        (boxes[:, [0, 1]] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        and (boxes[:, [2, 3]] >= boxes[:, [0, 1]]).all()
    )  # fmt: skip


def test_config_defaults_are_the_official_n_s_hyperparameters() -> None:
    cfg = aug.AugmentConfig()
    assert (cfg.hsv_h, cfg.hsv_s, cfg.hsv_v) == (0.015, 0.7, 0.4)
    assert (cfg.degrees, cfg.translate, cfg.scale, cfg.shear) == (0.0, 0.1, 0.5, 0.0)
    assert (cfg.flipud, cfg.fliplr, cfg.mosaic, cfg.mixup) == (0.0, 0.5, 1.0, 0.0)


@pytest.mark.parametrize("kwargs", [{"fliplr": 1.5}, {"mosaic": -0.1}, {"hsv_v": float("nan")}])
def test_config_rejects_out_of_range_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        aug.AugmentConfig(**kwargs)


@FAST
@given(rect_images(), st.sampled_from(["lr", "ud"]))
def test_flips_move_boxes_exactly_with_the_drawn_rectangles(sample: tuple, which: str) -> None:
    img, boxes = sample
    flip = aug.fliplr if which == "lr" else aug.flipud
    for i, box in enumerate(boxes):
        out, new = flip(_paint(img, box), boxes)
        np.testing.assert_array_equal(new[i], _white_extent(out))
    assert new.dtype == np.float32 and new.shape == boxes.shape


@FAST
@given(rect_images(), st.integers(0, 2**32 - 1), st.floats(0.0, 0.5), st.floats(0.0, 0.3), st.integers(40, 120))
def test_affine_without_rotation_keeps_boxes_on_the_drawn_rectangles(
    sample: tuple, seed: int, scale: float, translate: float, size: int
) -> None:
    img, boxes = sample
    for i, box in enumerate(boxes):
        rng = np.random.default_rng(seed)  # the same transform for each rectangle
        out, new, kept = aug.random_affine(_paint(img, box), boxes, 0.0, translate, scale, 0.0, size, rng)
        assert out.shape == (size, size, 3)
        assert _inside(new, size, size)
        if i in kept:
            extent = _white_extent(out)
            assert extent is not None
            np.testing.assert_allclose(new[list(kept).index(i)], extent, atol=2.0)


@FAST
@given(rect_images(max_rects=6), st.integers(0, 2**32 - 1), st.floats(0, 45), st.floats(0, 10))
def test_affine_with_rotation_and_shear_keeps_boxes_inside_the_image(
    sample: tuple, seed: int, degrees: float, shear: float
) -> None:
    img, boxes = sample
    out, new, kept = aug.random_affine(img, boxes, degrees, 0.1, 0.5, shear, (64, 96), np.random.default_rng(seed))
    assert out.shape == (64, 96, 3) and new.dtype == np.float32 and kept.dtype == np.int64
    assert len(new) == len(kept) and _inside(new, 64, 96)
    w, h = new[:, 2] - new[:, 0], new[:, 3] - new[:, 1]
    assert ((w > 2) & (h > 2)).all() and (np.maximum(w / h, h / w) < 20).all()


def test_affine_border_is_gray_114() -> None:
    img = np.zeros((40, 40, 3), np.uint8)
    out, _, _ = aug.random_affine(img, np.zeros((0, 4), np.float32), 0, 0, 0, 0, 80, np.random.default_rng(0))
    assert (out[:20] == 114).all() and (out[20:60, 20:60] == 0).all()


tile_shapes = st.lists(st.tuples(st.integers(24, 96), st.integers(24, 96)), min_size=4, max_size=4)


@FAST
@given(tile_shapes, st.integers(0, 2**32 - 1))
def test_mosaic_border_is_exactly_114_where_no_image_was_placed(shapes: list, seed: int) -> None:
    size = 64
    colours = [10, 60, 160, 220]
    images = [np.full((h, w, 3), c, np.uint8) for (h, w), c in zip(shapes, colours, strict=True)]
    full = [np.array([[0, 0, w, h]], np.float32) for h, w in shapes]
    classes = [np.array([k]) for k in range(4)]
    cfg = aug.AugmentConfig(translate=0.0, scale=0.0)  # an integer shift: no interpolation at tile edges
    out, boxes, cls = aug.mosaic4(images, full, classes, size, np.random.default_rng(seed), cfg)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    assert set(np.unique(out)) <= {114, *colours}
    np.testing.assert_allclose(boxes, np.round(boxes), atol=1e-3)  # tiles land on whole pixels
    for box, k in zip(np.round(boxes).astype(int), cls, strict=True):
        x1, y1, x2, y2 = box
        assert (out[y1:y2, x1:x2] == colours[k]).all()
        outside = np.ones((size, size), bool)
        outside[y1:y2, x1:x2] = False
        assert not (out[outside] == colours[k]).any()


@FAST
@given(tile_shapes, st.integers(0, 2**32 - 1), st.data())
def test_mosaic_boxes_follow_the_drawn_rectangles(shapes: list, seed: int, data: st.DataObject) -> None:
    boxes = []
    for h, w in shapes:
        x1, y1 = data.draw(st.integers(2, w - 10)), data.draw(st.integers(2, h - 10))
        x2, y2 = data.draw(st.integers(x1 + 8, w - 2)), data.draw(st.integers(y1 + 8, h - 2))
        boxes.append(np.array([[x1, y1, x2, y2]], np.float32))
    classes = [np.array([k]) for k in range(4)]
    black = [np.zeros((h, w, 3), np.uint8) for h, w in shapes]
    for k in range(4):  # the same seed, so the same mosaic, with only tile k's rectangle painted
        images = [_paint(t, boxes[i][0]) if i == k else t for i, t in enumerate(black)]
        out, new, cls = aug.mosaic4(images, boxes, classes, 64, np.random.default_rng(seed))
        assert _inside(new, 64, 64)
        if k in cls:
            np.testing.assert_allclose(new[list(cls).index(k)], _white_extent(out), atol=2.0)


def test_letterbox_centres_with_the_official_rounding() -> None:
    img = np.zeros((45, 100, 3), np.uint8)
    out, info = aug.letterbox(img, 64)
    # 100 -> 64 gives 28.8 -> 29 rows; 35 rows of padding: top round(17.5 - 0.1) = 17, bottom 18
    assert out.shape == (64, 64, 3) and info.ratio == pytest.approx(0.64) and info.pad == (0, 17)
    assert (out[:17] == 114).all() and (out[17:46] == 0).all() and (out[46:] == 114).all()


def test_letterbox_without_scaleup_keeps_small_images_at_their_size() -> None:
    out, info = aug.letterbox(np.zeros((20, 30, 3), np.uint8), (64, 96), scaleup=False)
    assert info.ratio == 1.0 and info.pad == (33, 22) and out.shape == (64, 96, 3)


@FAST
@given(st.integers(20, 300), st.integers(20, 300), st.integers(32, 160), st.integers(0, 2**32 - 1))
def test_letterbox_equals_the_runtime_letterbox(h: int, w: int, size: int, seed: int) -> None:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out, info = aug.letterbox(img, size)
    expected, expected_info = preprocess.letterbox(img, size)
    assert info == expected_info
    np.testing.assert_array_equal(out, expected)


@FAST
@given(st.integers(20, 300), st.integers(20, 300), st.integers(32, 160))
def test_letterboxed_boxes_map_back_exactly(h: int, w: int, size: int) -> None:
    boxes = np.array([[0, 0, w, h], [w / 4, h / 3, w / 2, h / 2]], np.float32)
    img, moved = aug.letterbox_train(np.zeros((h, w, 3), np.uint8), boxes, size)
    _, info = aug.letterbox(np.zeros((h, w, 3), np.uint8), size)
    assert img.shape == (size, size, 3)
    np.testing.assert_allclose(preprocess.scale_boxes_to_original(moved, info), boxes, atol=1e-3)


def test_hsv_with_zero_gains_is_an_exact_copy() -> None:
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = aug.augment_hsv(img, 0, 0, 0, np.random.default_rng(0))
    assert out is not img and np.array_equal(out, img)


def test_hsv_changes_colours_without_touching_the_input() -> None:
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    before = img.copy()
    out = aug.augment_hsv(img, 0.5, 0.7, 0.4, np.random.default_rng(1))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before) and not np.array_equal(out, img)


def test_mixup_blends_with_a_ratio_near_one_half() -> None:
    a, b = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 200, np.uint8)
    out = aug.mixup(a, b, np.random.default_rng(0))
    assert out.dtype == np.uint8 and len(np.unique(out)) == 1 and 50 < out[0, 0, 0] < 150


def test_no_function_modifies_its_inputs() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 30, 40], [40, 10, 69, 49]], np.float32)
    img0, boxes0 = img.copy(), boxes.copy()
    aug.fliplr(img, boxes)
    aug.flipud(img, boxes)
    aug.letterbox_train(img, boxes, 64)
    aug.random_affine(img, boxes, 10, 0.1, 0.5, 2, 64, rng)
    aug.mosaic4([img] * 4, [boxes] * 4, [np.array([0, 1])] * 4, 64, rng)
    aug.mixup(img, img, rng)
    assert np.array_equal(img, img0) and np.array_equal(boxes, boxes0)


def test_identity_affine_returns_the_same_pixels_and_boxes() -> None:
    img = cv2.resize(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64))
    boxes = np.array([[4, 4, 40, 30]], np.float32)
    out, new, kept = aug.random_affine(img, boxes, 0, 0, 0, 0, 64, np.random.default_rng(0))
    assert np.array_equal(out, img) and np.array_equal(new, boxes) and kept.tolist() == [0]
