"""JPEGs decoded at the size the model needs: the scale chosen, boxes on the original pixels, full-size drawing."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from yolov6_sdk.artifact.image_header import jpeg_orientation
from yolov6_sdk.artifact.images import read_image
from yolov6_sdk.artifact.reduced_decode import decode_scale, read_image_for_model
from yolov6_sdk.cli.detect import main as detect_main
from yolov6_sdk.errors import ConfigError, ImageError
from yolov6_sdk.runtime.detect import detect
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import make_image

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "yolov6n-shapes.pt"
IMGSZ = 160  # the demo model's input size


def _exif_segment(orientation: int, order: str = "II") -> bytes:
    """An APP1 segment whose EXIF block holds only the orientation tag (byte order ``order``)."""
    e = "<" if order == "II" else ">"
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0)
    payload = b"Exif\x00\x00" + order.encode() + struct.pack(e + "HI", 42, 8) + ifd
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _jpeg(image: np.ndarray, quality: int = 100, segments: bytes = b"") -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    data = encoded.tobytes()
    return data[:2] + segments + data[2:]


def _demo_picture(seed: int) -> np.ndarray:
    """A 120x160 demo-set picture: at the demo model's letterbox size exactly (160 on its long side)."""
    return make_image(np.random.default_rng([seed, 9]), IMGSZ, 8)[0][20:140]


def _enlarged(path: Path, picture: np.ndarray, factor: int) -> Path:
    """``picture`` enlarged ``factor`` times (each pixel a ``factor`` square) and saved as a JPEG (quality 100)."""
    height, width = picture.shape[:2]
    big = cv2.resize(picture, (width * factor, height * factor), interpolation=cv2.INTER_NEAREST)
    path.write_bytes(_jpeg(big))
    return path


def _centre(image: np.ndarray) -> np.ndarray:
    """Brightness-weighted centre (x, y) of the green channel, in pixel-corner coordinates."""
    weight = image[:, :, 1].astype(np.float64)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]] + 0.5
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


# ------------------------------------------------------------------------------------------ the scale


@pytest.mark.parametrize(
    ("shape", "imgsz", "scale"),
    [
        ((3024, 4032), 640, 4),  # a phone photo: 756x1008 still holds its 480x640 letterbox
        ((1080, 1920), 640, 2),  # 540x960 holds 360x640; 1/4 would give 270x480
        ((480, 640), IMGSZ, 4),
        ((960, 1280), IMGSZ, 8),
        ((240, 320), IMGSZ, 2),  # 2x but not 4x
        ((225, 300), IMGSZ, 1),  # under 2x on both sides: 1/2 would be 113x150, under the 120x160 letterbox
        ((479, 639), IMGSZ, 4),  # libjpeg rounds up: ceil(639 / 4) = 160 still holds the letterbox's 160
        ((100, 130), IMGSZ, 1),  # smaller than the model's input: enlarged, never reduced
    ],
)
def test_decode_scale_is_the_strongest_that_keeps_the_letterbox_size(
    shape: tuple[int, int], imgsz: int, scale: int
) -> None:
    assert decode_scale(shape, imgsz) == scale


def test_a_4x_picture_decodes_at_a_quarter_and_a_small_one_as_read_image(tmp_path: Path) -> None:
    picture = _demo_picture(0)
    quarter = read_image_for_model(_enlarged(tmp_path / "4x.jpg", picture, 4), IMGSZ)
    assert quarter.scale == 4 and quarter.pixels.shape == (120, 160, 3) and quarter.orig_shape == (480, 640)
    half = read_image_for_model(_enlarged(tmp_path / "2x.jpg", picture, 2), IMGSZ)
    assert half.scale == 2 and half.pixels.shape == (120, 160, 3) and half.orig_shape == (240, 320)
    small = tmp_path / "small.jpg"
    small.write_bytes(_jpeg(cv2.resize(picture, (300, 225))))
    full = read_image_for_model(small, IMGSZ)
    assert full.scale == 1 and full.orig_shape == (225, 300)
    np.testing.assert_array_equal(full.pixels, read_image(small))


def test_a_large_png_is_decoded_as_read_image(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), cv2.resize(_demo_picture(1), (640, 480)))
    decoded = read_image_for_model(path, IMGSZ)
    assert decoded.scale == 1
    np.testing.assert_array_equal(decoded.pixels, read_image(path))


def test_reduced_decode_keeps_the_pixel_limit_of_the_full_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _enlarged(tmp_path / "4x.jpg", _demo_picture(0), 4)
    monkeypatch.setenv("YOLOV6_MAX_PIXELS", str(640 * 480 - 1))  # the quarter decode alone would fit
    with pytest.raises(ImageError, match=r"4x\.jpg.*declares 640 x 480 pixels"):
        read_image_for_model(path, IMGSZ)


# ------------------------------------------------------------------------------------------ EXIF orientation


@pytest.mark.parametrize("order", ["II", "MM"])
def test_jpeg_orientation_reads_the_exif_tag(order: str) -> None:
    image = np.zeros((16, 24, 3), dtype=np.uint8)
    assert jpeg_orientation(_jpeg(image)) == 1
    assert jpeg_orientation(_jpeg(image, segments=_exif_segment(6, order))) == 6
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    xmp_first = b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp + _exif_segment(8, order)
    assert jpeg_orientation(_jpeg(image, segments=xmp_first)) == 8  # OpenCV, too, finds the Exif block


def test_jpeg_orientation_is_unknown_for_a_bad_value_or_block() -> None:
    image = np.zeros((16, 24, 3), dtype=np.uint8)
    assert jpeg_orientation(_jpeg(image, segments=_exif_segment(9))) is None
    broken = _exif_segment(6)[:-8]  # the directory entry cut short
    broken = broken[:2] + struct.pack(">H", len(broken) - 2) + broken[4:]
    assert jpeg_orientation(_jpeg(image, segments=broken)) is None
    assert jpeg_orientation(b"\x89PNG\r\n\x1a\n") is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_pixels_map_to_the_full_decode_exactly_for_every_orientation(tmp_path: Path, orientation: int) -> None:
    # neither side divisible by 8: the decoded grid overhangs the picture, at its start where EXIF flips a side
    stored = np.zeros((403, 805, 3), dtype=np.uint8)
    stored[30:90, 700:780] = 255  # near the right edge, where a uniform factor 805/101 would be 6 px off
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(_jpeg(stored, segments=_exif_segment(orientation)))
    full = read_image(path)
    for imgsz, scale in ((64, 8), (192, 4), (352, 2)):
        decoded = read_image_for_model(path, imgsz)
        assert decoded.scale == scale and decoded.orig_shape == full.shape[:2]
        centre = _centre(decoded.pixels) * scale - np.array(decoded.overhang)
        np.testing.assert_allclose(centre, _centre(full), atol=0.1)
        box = decoded.boxes_to_original(np.array([[0, 0, *decoded.pixels.shape[1::-1]]], dtype=np.float32))
        np.testing.assert_array_equal(box[0], [0, 0, full.shape[1], full.shape[0]])  # clipped to the picture


def test_a_malformed_exif_block_keeps_the_full_decode(tmp_path: Path) -> None:
    path = tmp_path / "odd.jpg"
    path.write_bytes(_jpeg(np.full((480, 640, 3), 90, dtype=np.uint8), segments=_exif_segment(9)))
    decoded = read_image_for_model(path, IMGSZ)
    assert decoded.scale == 1
    np.testing.assert_array_equal(decoded.pixels, read_image(path))


# ------------------------------------------------------------------------------------------ the Detector


@pytest.fixture(scope="module")
def enlarged(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> SimpleNamespace:
    """Demo pictures enlarged 4x as JPEGs, and the demo model's detections with reduced decode on and off."""
    folder = tmp_path_factory.mktemp("enlarged")
    paths = [_enlarged(folder / f"{seed}.jpg", _demo_picture(seed), 4) for seed in range(6)]
    with (
        Detector(DEMO_WEIGHTS, device="cpu") as reduced,
        Detector(DEMO_WEIGHTS, device="cpu", reduced_decode=False) as full,
    ):
        return SimpleNamespace(paths=paths, reduced=reduced(folder), full=full(folder), folder=folder)


def test_reduced_decode_finds_the_same_boxes_on_the_original_pixels_within_1_px(enlarged: SimpleNamespace) -> None:
    assert sum(len(r.filter(conf=0.5)) for r in enlarged.full) >= 6
    for reduced, full in zip(enlarged.reduced, enlarged.full, strict=True):
        assert reduced.orig_shape == full.orig_shape == (480, 640) and reduced.path == full.path
        for one, other in ((reduced, full), (full, reduced)):  # every confident box has its twin in the other
            sure = one.filter(conf=0.5).boxes.xyxy
            if len(sure):
                assert np.abs(sure[:, None] - other.boxes.xyxy[None]).max(2).min(1).max() <= 1.0


def test_reduced_decode_false_decodes_every_file_at_full_size(enlarged: SimpleNamespace) -> None:
    with Detector(DEMO_WEIGHTS, device="cpu", reduced_decode=False) as detector:
        expected = detector.predict_batch([read_image(p) for p in enlarged.paths], [str(p) for p in enlarged.paths])
        assert detector.reduced_decode is False
    for result, want in zip(enlarged.full, expected, strict=True):
        np.testing.assert_array_equal(result.boxes.xyxy, want.boxes.xyxy)
        np.testing.assert_array_equal(result.orig_img, want.orig_img)


def test_plot_save_and_crops_of_a_reduced_decode_are_full_size(enlarged: SimpleNamespace, tmp_path: Path) -> None:
    result = next(r for r in enlarged.reduced if len(r))
    np.testing.assert_array_equal(result.orig_img, read_image(result.path))  # the full picture, not the small one
    assert result.plot().shape == (480, 640, 3)
    assert cv2.imread(str(result.save(tmp_path / "drawn.png"))).shape == (480, 640, 3)
    crops = result.save_crop(tmp_path / "crops", suffix=".png")
    x1, y1, x2, y2 = result.boxes.xyxy[0]
    height, width = cv2.imread(str(crops[0])).shape[:2]
    assert (width, height) == (int(np.ceil(x2)) - int(np.floor(x1)), int(np.ceil(y2)) - int(np.floor(y1)))


def test_the_full_picture_is_decoded_only_when_asked(tmp_path: Path, one_torch_thread: None) -> None:
    path = _enlarged(tmp_path / "gone.jpg", _demo_picture(2), 4)
    with Detector(DEMO_WEIGHTS, device="cpu") as detector:
        result = detector(path)[0]
    path.unlink()  # detections, filtering and JSON need no pixels
    assert result.filter(conf=0.0).to_dict()["shape"] == [480, 640] and json.loads(result.to_json())
    with pytest.raises(ImageError, match="gone.jpg.*does not exist"):
        result.plot()


def test_a_file_changed_after_detection_is_refused_when_drawn(tmp_path: Path, one_torch_thread: None) -> None:
    path = _enlarged(tmp_path / "moved.jpg", _demo_picture(3), 4)
    with Detector(DEMO_WEIGHTS, device="cpu") as detector:
        result = detector(path)[0]
    path.write_bytes(_jpeg(np.zeros((100, 100, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match="moved.jpg.*changed since"):
        result.save_crop(tmp_path / "crops")


def test_reduced_decode_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="reduced_decode must be True or False"):
        Detector(DEMO_WEIGHTS, device="cpu", reduced_decode="no")  # type: ignore[arg-type]


def test_detect_saves_full_size_copies_and_the_cli_turns_reduced_decode_off(
    enlarged: SimpleNamespace, tmp_path: Path
) -> None:
    report = detect(DEMO_WEIGHTS, enlarged.folder, save_dir=tmp_path / "out", device="cpu")
    assert [r["detections"] for r in report.records] == [r.to_dict()["detections"] for r in enlarged.reduced]
    assert all(cv2.imread(str(p)).shape == (480, 640, 3) for p in report.saved)
    json_path = tmp_path / "full.json"
    argv = [str(enlarged.folder), "--model", str(DEMO_WEIGHTS), "--device", "cpu", "--no-save"]
    assert detect_main([*argv, "--no-reduced-decode", "--save-json", str(json_path)]) == 0
    records = json.loads(json_path.read_text())["results"]
    assert [r["detections"] for r in records] == [r.to_dict()["detections"] for r in enlarged.full]
