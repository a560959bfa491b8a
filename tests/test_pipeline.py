"""Reading ahead of the model: order, errors at their own entry, a bounded queue, pipelined streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov6_sdk.errors import ConfigError, ImageError
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.models import fuse
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.pipeline import prefetch
from yolov6_sdk.training.datagen import make_image
from yolov6_sdk.weights import load

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "yolov6n-shapes.pt"


def test_prefetch_yields_every_item_in_order() -> None:
    entries = list(prefetch(range(100), load=lambda i: i * i, depth=3))
    assert [e.index for e in entries] == list(range(100))
    assert [e.value for e in entries] == [i * i for i in range(100)]
    assert all(e.error is None for e in entries)


def test_a_failing_item_reports_at_its_own_entry_and_the_rest_go_on() -> None:
    def load(i: int) -> int:
        if i in (3, 7):
            raise ImageError(f"item {i} is corrupt")
        return i

    entries = list(prefetch(range(10), load=load))
    assert [e.index for e in entries] == list(range(10))
    assert [str(e.error) if e.error else None for e in entries[3:8:4]] == ["item 3 is corrupt", "item 7 is corrupt"]
    assert [e.value for e in entries if e.error is None] == [0, 1, 2, 4, 5, 6, 8, 9]


def test_a_source_that_breaks_reports_at_that_position_and_ends() -> None:
    def source() -> Iterator[int]:
        yield from range(4)
        raise ImageError("stream cut")

    entries = list(prefetch(source()))
    assert [e.value for e in entries[:4]] == [0, 1, 2, 3]
    assert len(entries) == 5 and entries[4].index == 4 and isinstance(entries[4].error, ImageError)


def test_the_queue_stays_bounded_on_a_long_stream() -> None:
    produced = [0]

    def frames() -> Iterator[np.ndarray]:
        for _ in range(300):
            produced[0] += 1
            yield np.zeros((64, 64, 3), dtype=np.uint8)

    ahead = []
    for consumed, _ in enumerate(prefetch(frames(), depth=2), start=1):
        time.sleep(0.001)  # a slow consumer: the reader would run ahead if it could
        ahead.append(produced[0] - consumed)
    # waiting in the queue (2) + the one the reader holds while the queue is full (1)
    assert max(ahead) <= 3 and produced[0] == 300


def test_leaving_early_stops_the_reader_and_closes_the_source() -> None:
    closed = threading.Event()

    def frames() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed.set()

    before = threading.active_count()
    stream = prefetch(frames(), depth=2)
    assert [next(stream).value for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert closed.is_set() and threading.active_count() == before


def test_prefetch_depth_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="depth"):
        next(prefetch(range(3), depth=0))


# ------------------------------------------------------------------------------------------ Detector.stream


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 12-frame video of demo-set pictures and the demo model as a raw ONNX."""
    folder = tmp_path_factory.mktemp("pipeline")
    path = folder / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(12):  # pictures of the demo set's generator
        writer.write(cv2.resize(make_image(rng, (256, 320), 8)[0], (320, 240)))
    writer.release()
    model = export_onnx(fuse(load(DEMO_WEIGHTS).model.eval()), folder / "model.onnx", ExportOptions((160, 160)))
    return path, model


def test_pipelined_stream_equals_the_unpipelined_one(video: tuple[Path, Path]) -> None:
    path, model = video
    with Detector(model, device="cpu", conf=0.3) as detector:
        pipelined = list(detector.stream(path))
        inline = list(detector.stream(path, prefetch_depth=0))
    assert len(pipelined) == len(inline) == 12
    assert [r.frame for r in pipelined] == list(range(12))
    for a, b in zip(pipelined, inline, strict=True):
        np.testing.assert_array_equal(a.boxes.xyxy, b.boxes.xyxy)
        np.testing.assert_array_equal(a.boxes.cls, b.boxes.cls)
        np.testing.assert_array_equal(a.orig_img, b.orig_img)


def test_stream_rejects_a_bad_prefetch_depth(video: tuple[Path, Path]) -> None:
    path, model = video
    with Detector(model, device="cpu") as detector, pytest.raises(ConfigError, match="prefetch_depth"):
        next(detector.stream(path, prefetch_depth=-1))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Seven JPEG files of demo-set pictures, the fourth one corrupt."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(1)
    paths = [folder / f"p{i}.jpg" for i in range(7)]
    for path in paths:
        cv2.imwrite(str(path), make_image(rng, (256, 320), 8)[0])
    paths[3].write_bytes(b"\xff\xd8 not a jpeg")
    return paths


def test_image_files_are_decoded_by_the_reader_thread_ahead_of_the_model(
    video: tuple[Path, Path], pictures: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, model = video
    readable = [p for i, p in enumerate(pictures) if i != 3]
    decoders: list[str] = []
    with Detector(model, device="cpu", conf=0.3, batch=2) as detector:
        inline = [detector(str(path))[0] for path in readable]  # one picture per call: no reader thread
        decode = detector.decode
        monkeypatch.setattr(detector, "decode", lambda item: decoders.append(threading.current_thread().name)
                            or decode(item))  # fmt: skip
        streamed = list(detector.stream(readable))
        listed = detector(readable)
    assert set(decoders) == {"yolov6-reader"}
    assert len(decoders) == 2 * len(readable)
    for a, b, c in zip(inline, streamed, listed, strict=True):
        assert a.path == b.path == c.path
        np.testing.assert_array_equal(a.boxes.xyxy, b.boxes.xyxy)
        np.testing.assert_array_equal(a.boxes.xyxy, c.boxes.xyxy)


def test_a_corrupt_file_raises_at_its_position_or_is_skipped(video: tuple[Path, Path], pictures: list[Path]) -> None:
    _, model = video
    with Detector(model, device="cpu", conf=0.3, batch=2) as detector:
        seen = []
        with pytest.raises(ImageError, match="p3.jpg"):
            for result in detector.stream(pictures):
                seen.append(Path(result.path).name)
        skipped = detector(pictures, errors="skip")
    assert seen == ["p0.jpg", "p1.jpg"]  # the batch holding the corrupt file never ran
    assert [r.ok for r in skipped] == [True, True, True, False, True, True, True]
    assert "p3.jpg" in skipped[3].path
