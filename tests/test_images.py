"""Image reading and array normalisation: everything becomes HxWx3 uint8 BGR or a clear ImageError."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov6_sdk.artifact.images import as_bgr_uint8, is_image, is_video, list_images, read_image
from yolov6_sdk.errors import ImageError


def _write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def _jpeg_with_exif_orientation(image: np.ndarray, orientation: int) -> bytes:
    """Encode ``image`` as JPEG with an APP1 EXIF segment holding only the orientation tag."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = encoded.tobytes()
    return data[:2] + segment + data[2:]


# ------------------------------------------------------------------------------------------ read_image


def test_read_image_returns_bgr_uint8_as_written(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = read_image(_write(tmp_path / "a.png", image))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, image)


def test_read_image_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="nope.jpg.*does not exist"):
        read_image(tmp_path / "nope.jpg")


def test_read_image_zero_byte_file_says_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg.*empty \\(0 bytes\\)"):
        read_image(path)


@pytest.mark.parametrize("content", [b"not an image at all", b"\xff\xd8\xff\xe0garbage", b"\x89PNG\r\n\x1a\n"])
def test_read_image_corrupt_file_says_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="broken.jpg.*corrupt"):
        read_image(path)


def test_read_image_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)


def test_read_image_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = read_image(_write(tmp_path / "g.png", gray))
    assert out.shape == (3, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)


def test_read_image_drops_alpha_without_compositing(tmp_path: Path) -> None:
    bgra = np.zeros((2, 3, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 0  # fully transparent
    out = read_image(_write(tmp_path / "a.png", bgra))
    np.testing.assert_array_equal(out, bgra[..., :3])


def test_read_image_scales_16_bit_by_257(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 257, 385, 65535]], dtype=np.uint16)
    out = read_image(_write(tmp_path / "deep.png", np.dstack([values, values, values])))
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 1, 1, 255])


def test_read_image_16_bit_grayscale_becomes_bgr_uint8(tmp_path: Path) -> None:
    out = read_image(_write(tmp_path / "deep_gray.png", np.full((2, 2), 65535, dtype=np.uint16)))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3) and (out == 255).all()


def test_read_image_applies_jpeg_exif_orientation(tmp_path: Path) -> None:
    image = np.zeros((4, 8, 3), dtype=np.uint8)
    image[:, :4] = 255  # left half white
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_with_exif_orientation(image, orientation=6))  # 6 = rotate 90 degrees clockwise
    out = read_image(path)
    assert out.shape == (8, 4, 3)
    assert out[:4].min() > 200 and out[4:].max() < 60  # white half now on top


# ------------------------------------------------------------------------------------------ as_bgr_uint8


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1)])
def test_as_bgr_uint8_expands_grayscale(shape: tuple[int, ...]) -> None:
    array = np.full(shape, 7, dtype=np.uint8)
    out = as_bgr_uint8(array, "gray")
    assert out.shape == (4, 5, 3) and (out == 7).all()


def test_as_bgr_uint8_keeps_bgr_and_drops_alpha() -> None:
    bgra = np.random.default_rng(1).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(as_bgr_uint8(bgra[..., :3]), bgra[..., :3])
    out = as_bgr_uint8(bgra)
    np.testing.assert_array_equal(out, bgra[..., :3])
    assert out.flags.c_contiguous


def test_as_bgr_uint8_scales_uint16_and_float() -> None:
    deep = np.array([[0, 257, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(as_bgr_uint8(deep)[0, :, 0], [0, 1, 255])
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(as_bgr_uint8(floats)[0, :, 2], [0, 128, 255])


def test_as_bgr_uint8_never_modifies_its_input() -> None:
    array = np.random.default_rng(2).random((5, 3, 4))
    before = array.copy()
    as_bgr_uint8(array)
    np.testing.assert_array_equal(array, before)


def test_as_bgr_uint8_chw_array_says_transpose() -> None:
    with pytest.raises(ImageError, match=r"frame.*channels-first.*transpose\(1, 2, 0\)"):
        as_bgr_uint8(np.zeros((3, 32, 48), dtype=np.uint8), "frame")


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4, 2), dtype=np.uint8), "unsupported image shape"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), "unsupported image shape"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "empty"),
        (np.zeros((4, 4, 3), dtype=np.int32), "unsupported dtype int32"),
        (np.full((4, 4, 3), 2.0), "expected 0..1"),
        (np.full((4, 4, 3), np.nan), "NaN"),
    ],
)
def test_as_bgr_uint8_rejects_bad_arrays_with_the_reason(array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        as_bgr_uint8(array, "input")


def test_as_bgr_uint8_rejects_non_arrays() -> None:
    with pytest.raises(ImageError, match="expected a numpy array.*got list"):
        as_bgr_uint8([[1, 2], [3, 4]])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ list_images


def _tree(root: Path) -> None:
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    (root / "sub" / "deeper").mkdir(parents=True)
    for name in ["b.jpg", "a.PNG", "sub/c.bmp", "sub/deeper/d.webp"]:
        _write(root / name, image)
    (root / "notes.txt").write_text("x")
    (root / "clip.mp4").write_bytes(b"\x00")


def test_list_images_folder_is_recursive_sorted_and_filtered(tmp_path: Path) -> None:
    _tree(tmp_path)
    found = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.PNG",
        "b.jpg",
        "sub/c.bmp",
        "sub/deeper/d.webp",
    ]


def test_list_images_glob_and_single_file(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert [p.name for p in list_images(str(tmp_path / "**" / "*.*"))] == ["a.PNG", "b.jpg", "c.bmp", "d.webp"]
    assert list_images(tmp_path / "b.jpg") == [tmp_path / "b.jpg"]


def test_list_images_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="missing.*does not exist"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="empty.*holds no image"):
        list_images(tmp_path / "empty")
    with pytest.raises(ImageError, match="matches no image"):
        list_images(str(tmp_path / "*.jpg"))


def test_video_and_image_suffixes_are_told_apart() -> None:
    assert is_video("clip.MP4") and is_video(Path("a/b.mkv")) and not is_video("a.jpg")
    assert is_image("a.JPEG") and is_image("x.tif") and not is_image("clip.mp4")
