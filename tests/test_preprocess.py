"""Letterbox pre-processing (numpy and torch forms) and the inverse box mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yolov6_sdk.artifact.preprocess import (
    InputBuffer,
    LetterboxInfo,
    check_imgsz,
    letterbox,
    letterbox_info,
    letterbox_into,
    preprocess_batch,
    preprocess_batch_torch,
    scale_boxes_to_original,
)
from yolov6_sdk.errors import ConfigError, ImageError

RNG = np.random.default_rng(0)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ letterbox


def test_letterbox_splits_odd_padding_as_the_official_does() -> None:
    # 481 rows on a 640 canvas: 159 rows of padding, round(79.5 - 0.1) = 79 on top, 80 below
    image = np.full((481, 640, 3), 7, dtype=np.uint8)
    padded, info = letterbox(image, (640, 640))
    assert info == LetterboxInfo(ratio=1.0, pad=(0, 79), orig_shape=(481, 640), input_shape=(640, 640))
    assert (padded[:79] == 114).all() and (padded[79:560] == 7).all() and (padded[560:] == 114).all()


def test_letterbox_resizes_with_one_ratio_and_centres() -> None:
    padded, info = letterbox(_image(100, 200), (320, 320))
    assert padded.shape == (320, 320, 3) and padded.dtype == np.uint8
    assert info.ratio == pytest.approx(1.6) and info.resized_shape == (160, 320) and info.pad == (0, 80)
    assert (padded[:80] == 114).all() and (padded[240:] == 114).all()


def test_letterbox_without_scaleup_never_enlarges() -> None:
    image = _image(50, 40)
    padded, info = letterbox(image, (128, 96), scaleup=False)
    assert info.ratio == 1.0 and info.pad == (28, 39)
    np.testing.assert_array_equal(padded[39:89, 28:68], image)


def test_letterbox_keeps_a_pixel_for_extreme_aspect_ratios() -> None:
    padded, info = letterbox(_image(1, 3000), (64, 64))
    assert info.resized_shape == (1, 64) and padded.shape == (64, 64, 3)


def test_letterbox_never_modifies_its_input() -> None:
    image = _image(30, 50)
    before = image.copy()
    letterbox(image, (64, 64))
    np.testing.assert_array_equal(image, before)


# ------------------------------------------------------------------------------------------ batches


def test_preprocess_batch_gives_rgb_float_nchw_in_one_canvas() -> None:
    blue = np.zeros((40, 20, 3), dtype=np.uint8)
    blue[..., 0] = 255
    batch, infos = preprocess_batch([blue, _image(64, 96)], imgsz=(64, 96))
    assert batch.shape == (2, 3, 64, 96) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    # channel order RGB: the blue image lights channel 2 only
    left, top = infos[0].pad
    h, w = infos[0].resized_shape
    inside = batch[0, :, top : top + h, left : left + w]
    assert (inside[2] == 1.0).all() and (inside[:2] == 0.0).all()
    assert batch[0, 0, 0, 0] == np.float32(114 / 255)
    assert infos[1] == LetterboxInfo(ratio=1.0, pad=(0, 0), orig_shape=(64, 96), input_shape=(64, 96))


def _reference_batch(images: list[np.ndarray], imgsz: tuple[int, int]) -> np.ndarray:
    """The straightforward form: a padded uint8 canvas per image, flipped, transposed, then divided."""
    batch = np.stack([letterbox(image, imgsz)[0][:, :, ::-1].transpose(2, 0, 1) for image in images]).astype(np.float32)
    return batch / np.float32(255)


@pytest.mark.parametrize("shapes", [[(480, 640)], [(720, 1280), (64, 96), (333, 17)], [(640, 640)]])
def test_preprocess_into_the_buffer_equals_the_straightforward_form(shapes: list[tuple[int, int]]) -> None:
    images = [_image(h, w, seed) for seed, (h, w) in enumerate(shapes)]
    batch, _ = preprocess_batch(images, (320, 320), buffer=InputBuffer())
    np.testing.assert_array_equal(batch, _reference_batch(images, (320, 320)))


def test_preprocess_writes_into_the_given_buffer_without_allocating() -> None:
    buffer = InputBuffer()
    first, _ = preprocess_batch([_image(480, 640, 1), _image(300, 200, 2)], (320, 320), buffer=buffer)
    storage = buffer.storage
    for seed in range(3):  # later calls of the same or a smaller size reuse the same memory
        batch, _ = preprocess_batch([_image(720, 1280, seed)], (320, 320), buffer=buffer)
        assert buffer.storage is storage and batch.base is storage
        assert np.shares_memory(batch, first) and batch.flags.c_contiguous
    smaller, _ = preprocess_batch([_image(480, 640, 1)], (320, 320), canvas=(256, 320), buffer=buffer)
    assert smaller.shape == (1, 3, 256, 320) and smaller.base is storage
    grown, _ = preprocess_batch([_image(48, 64)] * 4, (320, 320), buffer=buffer)  # larger than ever: grows once
    assert grown.base is buffer.storage and buffer.storage is not storage


def test_letterbox_into_writes_the_image_and_gray_padding_in_place() -> None:
    image = _image(100, 200)
    out = np.full((3, 320, 320), -1.0, dtype=np.float32)
    info = letterbox_info(image.shape[:2], (320, 320))
    letterbox_into(image, out, info)
    assert (out >= 0).all()  # every element written: image area and padding
    np.testing.assert_array_equal(out, _reference_batch([image], (320, 320))[0])


def test_scale_boxes_in_place_reuses_the_array_and_matches_the_pure_form() -> None:
    info = letterbox_info((333, 517), (640, 640))
    boxes = RNG.uniform(-20, 660, (50, 4)).astype(np.float32)
    expected = scale_boxes_to_original(boxes, info)
    out = scale_boxes_to_original(boxes, info, inplace=True)
    assert out is boxes
    np.testing.assert_allclose(out, expected, atol=1e-3, rtol=0)


def test_check_imgsz_accepts_multiples_of_32_and_suggests_a_fix() -> None:
    assert check_imgsz(640) == (640, 640) and check_imgsz((480, 640)) == (480, 640)
    with pytest.raises(ConfigError, match=r"multiples of 32; use \(640, 608\)"):
        check_imgsz((630, 600))
    for bad in [(640, 640, 3), 640.0, "640", (0, 32)]:
        with pytest.raises(ConfigError, match="positive ints"):
            check_imgsz(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("images", [[], [np.zeros((8, 8), dtype=np.uint8)], [np.zeros((8, 8, 3))]])
def test_preprocess_batch_rejects_empty_or_unconverted_images(images: list[np.ndarray]) -> None:
    with pytest.raises(ImageError):
        preprocess_batch(images, 32)
    with pytest.raises(ImageError):
        preprocess_batch_torch(images, 32)


@pytest.mark.parametrize(
    "shapes",
    [[(480, 640)], [(640, 512)], [(37, 91), (200, 150)], [(700, 300), (64, 64), (13, 301)], [(320, 320)]],
)
def test_torch_preprocess_matches_numpy_within_one_gray_level(shapes: list[tuple[int, int]]) -> None:
    images = [_image(h, w, seed=i) for i, (h, w) in enumerate(shapes)]
    expected, infos = preprocess_batch(images, (320, 256))
    got, torch_infos = preprocess_batch_torch(images, (320, 256), device="cpu")
    assert torch_infos == infos
    assert got.dtype == torch.float32 and tuple(got.shape) == expected.shape
    assert np.abs(got.numpy() - expected).max() <= 1 / 255 + 1e-6


# ------------------------------------------------------------------------------------------ box mapping


def _forward(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Original-image pixels -> model-input pixels (the mapping letterbox applies)."""
    left, top = info.pad
    return boxes * info.ratio + np.array([left, top, left, top])


@st.composite
def _boxes_in_image(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = draw(st.integers(1, 2000)), draw(st.integers(1, 2000))
    n = draw(st.integers(0, 8))
    xs = draw(st.lists(st.floats(0, w), min_size=2 * n, max_size=2 * n))
    ys = draw(st.lists(st.floats(0, h), min_size=2 * n, max_size=2 * n))
    x, y = np.sort(np.array(xs).reshape(n, 2), 1), np.sort(np.array(ys).reshape(n, 2), 1)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).reshape(n, 4), (h, w)


@settings(max_examples=200, deadline=None)
@given(
    case=_boxes_in_image(),
    canvas=st.sampled_from([(640, 640), (320, 480), (96, 64)]),
    scaleup=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_letterbox_maps_boxes_back_exactly(
    case: tuple[np.ndarray, tuple[int, int]], canvas: tuple[int, int], scaleup: bool, dtype: type
) -> None:
    boxes, shape = case
    info = letterbox_info(shape, canvas, scaleup)
    mapped = _forward(boxes, info).astype(dtype)
    back = scale_boxes_to_original(mapped, info)
    assert back.dtype == dtype and back.shape == boxes.shape
    np.testing.assert_allclose(back, boxes, atol=1e-3, rtol=0)


def test_scale_boxes_clips_to_the_original_image_and_keeps_input() -> None:
    info = letterbox_info((100, 200), (320, 320))  # ratio 1.6, pad (0, 80)
    boxes = np.array([[-50.0, 0.0, 400.0, 400.0], [16.0, 96.0, 32.0, 112.0]], dtype=np.float32)
    before = boxes.copy()
    out = scale_boxes_to_original(boxes, info)
    np.testing.assert_allclose(out, [[0, 0, 200, 100], [10, 10, 20, 20]], atol=1e-5)
    np.testing.assert_array_equal(boxes, before)
    assert scale_boxes_to_original(np.zeros((0, 4), dtype=np.int64), info).dtype == np.float32


def test_scale_boxes_torch_matches_numpy() -> None:
    info = letterbox_info((333, 517), (640, 640))
    boxes = RNG.uniform(-20, 660, (50, 4)).astype(np.float32)
    expected = scale_boxes_to_original(boxes, info)
    tensor = torch.from_numpy(boxes.copy())
    got = scale_boxes_to_original(tensor, info)
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(tensor.numpy(), boxes)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_preprocess_matches_numpy_within_one_gray_level() -> None:
    images = [_image(480, 640, seed=1), _image(333, 517, seed=2), _image(1080, 1920, seed=3)]
    expected, infos = preprocess_batch(images, (640, 640))
    got, cuda_infos = preprocess_batch_torch(images, (640, 640), device="cuda")
    assert got.is_cuda and cuda_infos == infos
    assert np.abs(got.cpu().numpy() - expected).max() <= 1 / 255 + 1e-6
