"""Calibration images for INT8 quantisation, shared by every calibrator.

A calibration set is a folder of images (searched recursively, sorted by path). ``size`` of them are taken,
evenly spaced over the sorted list, so the choice is deterministic and spans the whole folder. Each batch goes
through the input contract's :func:`~yolov6_sdk.artifact.preprocess.preprocess_batch` (letterbox with gray 114,
BGR -> RGB, 0..1), so the calibrator sees exactly the tensors the deployed model will see: float32
``[B, 3, H, W]``.

Files that cannot be decoded (corrupt, or beyond the pixel limit of
:func:`~yolov6_sdk.artifact.images.read_image`) are skipped and counted, each named in a warning; a folder
without one readable image raises :class:`~yolov6_sdk.errors.CalibrationError`. A batch is letterboxed image by
image as it is read, so one full-size image is decoded at a time whatever the batch size.

:class:`OrtCalibrationReader` adapts a set to ``onnxruntime.quantization.CalibrationDataReader`` and reports
progress through a callback (the CLI draws it as a progress bar). The ranges a calibration produced are cached
as JSON (:func:`save_ranges` / :func:`load_ranges`) under a key that names everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from yolov6_sdk import __version__
from yolov6_sdk.artifact.images import decode_image, read_image, read_image_bytes
from yolov6_sdk.artifact.preprocess import check_imgsz, preprocess_batch
from yolov6_sdk.artifact.spec import INPUT_NAME
from yolov6_sdk.errors import CalibrationError, ImageError
from yolov6_sdk.export.options import DEFAULT_CALIB_SIZE
from yolov6_sdk.fileio import IMAGE_SUFFIXES, atomic_path, files_under

LOGGER = logging.getLogger(__name__)

RANGES_FORMAT = "yolov6-sdk-calibration/1"

Progress = Callable[[int, int], None]
"""Called as ``progress(images_done, images_total)`` after each calibration batch."""


@dataclass(frozen=True)
class CalibrationSet:
    """The images a calibration uses and how they are batched.

    Attributes:
        folder: the calibration folder.
        files: the chosen readable images, in calibration order.
        imgsz: model input (H, W) in pixels.
        batch: images per calibration batch (the last batch may be smaller).
        skipped: chosen files that could not be decoded and were left out.
        fingerprint: sha256 over the files' paths (relative to ``folder``) and contents.
    """

    folder: Path
    files: tuple[Path, ...]
    imgsz: tuple[int, int]
    batch: int
    skipped: int
    fingerprint: str

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_batches(self) -> int:
        return -(-len(self.files) // self.batch)

    def batches(self) -> Iterator[np.ndarray]:
        """Yield float32 ``[b, 3, H, W]`` RGB 0..1 letterboxed batches, exactly as :func:`preprocess_batch`."""
        for start in range(0, len(self.files), self.batch):
            paths = self.files[start : start + self.batch]
            yield np.concatenate([preprocess_batch([read_image(path)], self.imgsz)[0] for path in paths])


def select_evenly(paths: Sequence[Path], size: int) -> list[Path]:
    """``size`` items of ``paths`` at evenly spaced positions (all of them when there are fewer), order kept."""
    if size >= len(paths):
        return list(paths)
    positions = np.linspace(0, len(paths) - 1, size).round().astype(int)
    return [paths[i] for i in positions]


def _decode_error(data: bytes, path: Path) -> str:
    """Why ``data`` (the bytes of ``path``) is no usable image, or "" when it decodes."""
    try:
        decode_image(data, str(path))
    except ImageError as exc:
        return str(exc)
    return ""


def load_calibration_set(
    folder: str | Path,
    imgsz: int | tuple[int, int],
    size: int = DEFAULT_CALIB_SIZE,
    batch: int = 8,
) -> CalibrationSet:
    """Choose ``size`` images of ``folder`` (recursive, sorted, evenly sampled) and check that they decode.

    Raises:
        CalibrationError: ``folder`` is missing or not a folder, holds no image file, or none of the chosen
            files decodes; ``size`` or ``batch`` below 1.
    """
    folder = Path(folder)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CalibrationError(f"the calibration size must be a positive number of images, got {size!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise CalibrationError(f"the calibration batch must be a positive number of images, got {batch!r}")
    imgsz = check_imgsz(imgsz)
    hint = (
        "put a few hundred images like the ones the model will see (JPEG/PNG, sub-folders allowed) in it, "
        "e.g. a sample of the training images, or write synthetic ones with yolov6-datagen ROOT --calib 500"
    )
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder {str(folder)!r} does not exist or is not a folder; {hint}")
    candidates = files_under(folder, IMAGE_SUFFIXES)
    if not candidates:
        raise CalibrationError(f"calibration folder {str(folder)!r} holds no image file; {hint}")
    digest = hashlib.sha256()
    files, skipped = [], 0
    for path in select_evenly(candidates, size):
        try:
            data = read_image_bytes(path)
        except ImageError as exc:
            data, error = b"", str(exc)
        else:
            error = _decode_error(data, path)
        if error:
            LOGGER.warning("calibration: skipping %s", error)
            skipped += 1
            continue
        files.append(path)
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
    if not files:
        raise CalibrationError(
            f"calibration folder {str(folder)!r}: none of its {len(candidates)} image files could be decoded "
            f"(corrupt or not images); {hint}"
        )
    if skipped:
        LOGGER.warning("calibration: skipped %d unreadable image file(s) in %s", skipped, folder)
    LOGGER.info("calibration: %d images from %s (%d found)", len(files), folder, len(candidates))
    return CalibrationSet(folder, tuple(files), imgsz, batch, skipped, digest.hexdigest())


class OrtCalibrationReader(CalibrationDataReader):
    """``CalibrationDataReader`` over a :class:`CalibrationSet`: one ``{input_name: batch}`` per ``get_next``.

    ``progress(done, total)`` is called with image counts after each batch is handed over.
    """

    def __init__(self, calib: CalibrationSet, input_name: str = INPUT_NAME, progress: Progress | None = None) -> None:
        self.calib, self.input_name, self.progress = calib, input_name, progress
        self._batches: Iterator[np.ndarray] | None = None
        self._done = 0

    def __len__(self) -> int:
        return self.calib.num_batches

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._batches, self._done = None, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._batches is None:
            self._batches = self.calib.batches()
        batch = next(self._batches, None)
        if batch is None:
            return None
        self._done += batch.shape[0]
        if self.progress is not None:
            self.progress(self._done, len(self.calib))
        return {self.input_name: batch}


def ranges_key(model_sha256: str, calib: CalibrationSet, method: str, recipe: str = "") -> str:
    """Cache key of calibration ranges: the fp32 ONNX, the images (paths and contents), input size, method, and
    ``recipe`` (what the calibrator records, e.g. its op types; a new SDK release may record more)."""
    parts = [RANGES_FORMAT, __version__, model_sha256, calib.fingerprint, f"{calib.imgsz[0]}x{calib.imgsz[1]}"]
    parts += [method, recipe]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def save_ranges(
    path: str | Path, key: str, ranges: Mapping[str, tuple[float, float]], info: Mapping[str, object]
) -> Path:
    """Write tensor ranges ``{name: (low, high)}`` and their key atomically as JSON; returns the path."""
    payload = {
        "format": RANGES_FORMAT,
        "key": key,
        **info,
        "ranges": {name: [float(lo), float(hi)] for name, (lo, hi) in sorted(ranges.items())},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def load_ranges(path: str | Path, key: str) -> dict[str, tuple[float, float]] | None:
    """Ranges cached at ``path`` under ``key``; None when the file is missing, unreadable or of another key."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("format") != RANGES_FORMAT or payload.get("key") != key:
        return None
    try:
        return {str(name): (float(lo), float(hi)) for name, (lo, hi) in payload["ranges"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
