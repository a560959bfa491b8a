"""What a Detector can be called on: image files, folders, globs, arrays, videos and cameras.

Images come out as HxWx3 uint8 BGR arrays (see :mod:`yolov6_sdk.artifact.images`); video frames are read
one at a time with ``cv2.VideoCapture``, never all at once.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolov6_sdk.artifact.images import as_bgr_uint8, is_image, is_video, list_images, read_image
from yolov6_sdk.errors import ConfigError, ImageError
from yolov6_sdk.fileio import atomic_path

Source = str | Path | np.ndarray | Sequence[str | Path | np.ndarray]


@dataclass(frozen=True)
class ImageItem:
    """One image of a source: a file to read (``path``) or an array given directly (``array``)."""

    path: Path | None = None
    array: np.ndarray | None = None
    name: str = "image"

    def load(self) -> np.ndarray:
        """The image as HxWx3 uint8 BGR. Raises :class:`ImageError` for a bad file or array."""
        if self.path is not None:
            return read_image(self.path)
        return as_bgr_uint8(self.array, self.name)


def is_stream(source: Any) -> bool:
    """True for a video file, a camera index or a stream URL (``rtsp://``, ``http://``...)."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return True
    return isinstance(source, (str, Path)) and ("://" in str(source) or is_video(source))


def image_items(source: Source) -> list[ImageItem]:
    """Expand ``source`` into images, in order.

    Accepted: an image file, a folder (recursive) or a glob pattern (see :func:`list_images`); an HxW[xC]
    array, or an ``[N, H, W, C]`` array as N images; a list or tuple mixing any of these.

    Raises:
        ImageError: a missing path, a folder or pattern without images, or an unsupported source type.
        ConfigError: a video or camera source (use ``Detector.stream``).
    """
    if isinstance(source, np.ndarray):
        if source.ndim == 4:
            return [ImageItem(array=image, name=f"array[{i}]") for i, image in enumerate(source)]
        return [ImageItem(array=source, name="array")]
    if isinstance(source, (str, Path)):
        if is_stream(source):
            raise ConfigError(f"{str(source)!r} is a video or stream; iterate its frames with Detector.stream()")
        return [ImageItem(path=path, name=str(path)) for path in list_images(source)]
    if isinstance(source, (list, tuple)):
        items: list[ImageItem] = []
        for i, element in enumerate(source):
            if isinstance(element, np.ndarray):
                items.append(ImageItem(array=element, name=f"source[{i}]"))
            else:
                items.extend(image_items(element))
        return items
    raise ImageError(
        f"unsupported source of type {type(source).__name__}; pass an image path, folder, glob, numpy BGR image, "
        f"or a list of them"
    )


def media_files(source: str | Path) -> list[Path]:
    """Image and video files named by ``source``: a file (returned as given), a folder (recursive) or a glob.

    Folder and glob results keep image and video suffixes only, sorted by path.

    Raises:
        ImageError: the path does not exist, or the folder / pattern holds no image or video.
    """
    text = str(source)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        candidates = sorted(p for p in path.rglob("*") if p.is_file())
    elif any(char in "*?[" for char in text):
        candidates = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    else:
        raise ImageError(f"source {text!r} does not exist; pass an image or video file, a folder or a glob pattern")
    found = [p for p in candidates if is_image(p) or is_video(p)]
    if not found:
        raise ImageError(f"{text!r} holds no image or video file; check the folder or pattern")
    return found


def _open_capture(source: str | Path | int) -> cv2.VideoCapture:
    if isinstance(source, (str, Path)) and "://" not in str(source):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"video file {str(path)!r} does not exist; check the path (cwd is {Path.cwd()})")
        if path.stat().st_size == 0:
            raise ImageError(f"video file {str(path)!r} is empty (0 bytes); re-copy or re-download it")
    capture = cv2.VideoCapture(int(source) if isinstance(source, (int, np.integer)) else str(source))
    if not capture.isOpened():
        capture.release()
        raise ImageError(
            f"cannot open video source {str(source)!r}: the file is corrupt, the codec is unsupported by this "
            f"OpenCV build, or the camera is unavailable"
        )
    return capture


def video_frames(source: str | Path | int) -> Iterator[np.ndarray]:
    """Yield the frames of a video file, camera index or stream URL as HxWx3 uint8 BGR arrays.

    Frames are decoded lazily; the capture is released when the iterator ends or is closed.

    Raises:
        ImageError: the source cannot be opened, or a file yields no frame at all.
    """
    capture = _open_capture(source)
    count = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield as_bgr_uint8(frame, f"{source} frame {count - 1}")
    finally:
        capture.release()
    if count == 0:
        raise ImageError(f"video source {str(source)!r} yielded no frame; it is corrupt or its codec is unsupported")


def video_fps(source: str | Path | int, default: float = 30.0) -> float:
    """Frames per second recorded in a video (``default`` when unknown, e.g. for cameras)."""
    capture = _open_capture(source)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
    return fps if 0.0 < fps < 1000.0 else default


def video_frame_count(source: str | Path) -> int | None:
    """Number of frames the container declares (None when it does not say)."""
    capture = _open_capture(source)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        capture.release()
    return count if count > 0 else None


@contextlib.contextmanager
def video_writer(path: str | Path, fps: float, size: tuple[int, int]) -> Iterator[cv2.VideoWriter]:
    """An ``mp4v`` ``cv2.VideoWriter`` for frames of ``size`` (w, h) that appears at ``path`` only when complete.

    Frames go to a temporary file beside ``path``, renamed onto it when the block ends without error.

    Raises:
        ImageError: OpenCV cannot open a writer for the suffix of ``path``.
    """
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise ImageError(f"OpenCV cannot write video {str(path)!r} (mp4v); use a .mp4 or .avi file name")
        try:
            yield writer
        finally:
            writer.release()
