"""What a Detector can be called on: image files, folders, globs, arrays, videos and cameras.

Images come out as HxWx3 uint8 BGR arrays (see :mod:`yolov6_sdk.artifact.images`), a JPEG file decoded at the
reduced size the model needs when asked (:meth:`ImageItem.decode`, :mod:`yolov6_sdk.artifact.reduced_decode`),
its detections then mapped back to the full picture by :func:`on_original`; video frames are read one at a time
with ``cv2.VideoCapture``, never all at once; a damaged frame is skipped and counted (:class:`VideoFrames`).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolov6_sdk.artifact.images import (
    as_bgr_uint8,
    is_image,
    is_video,
    list_images,
    read_image,
    refuse_special_path,
)
from yolov6_sdk.artifact.reduced_decode import DecodedImage, read_full_size, read_image_for_model
from yolov6_sdk.errors import ConfigError, ImageError
from yolov6_sdk.fileio import IMAGE_SUFFIXES, VIDEO_SUFFIXES, atomic_path, files_under
from yolov6_sdk.runtime.results import Results

LOGGER = logging.getLogger(__name__)

Source = str | Path | np.ndarray | Sequence[str | Path | np.ndarray]


@dataclass(frozen=True)
class ImageItem:
    """One image of a source: a file to read (``path``) or an array given directly (``array``)."""

    path: Path | None = None
    array: np.ndarray | None = None
    name: str = "image"

    def decode(self, imgsz: int | tuple[int, int] | None = None) -> DecodedImage:
        """The image as HxWx3 uint8 BGR: a file whose picture is far larger than a model of input ``imgsz``
        needs decoded at 1/2, 1/4 or 1/8 scale (:func:`read_image_for_model`), at full size when ``imgsz`` is
        None or for an array.

        Raises:
            ImageError: a bad file or array.
        """
        if self.path is not None:
            if imgsz is not None:
                return read_image_for_model(self.path, imgsz)
            return DecodedImage.at_full_size(read_image(self.path), self.path)
        return DecodedImage.at_full_size(as_bgr_uint8(self.array, self.name))


def on_original(result: Results, decoded: DecodedImage) -> Results:
    """``result`` of the model run on ``decoded`` in terms of the full-size picture.

    Unchanged for a picture decoded at full size or a failed result. For a reduced decode: boxes in original
    pixels (:meth:`DecodedImage.boxes_to_original`), ``orig_shape`` the original's, and ``orig_img`` the full
    picture decoded again from the file when first asked for (never the small one the model saw).
    """
    if not decoded.reduced or not result.ok:
        return result
    return Results(
        decoded.boxes_to_original(result.boxes.xyxy),
        result.scores,
        result.class_ids,
        result.names,
        decoded.orig_shape,
        path=result.path,
        speed=result.speed,
        frame=result.frame,
        orig_img_loader=functools.partial(read_full_size, decoded.path, decoded.orig_shape),
    )


def is_stream(source: Any) -> bool:
    """True for a video file, a camera index or a stream URL (``rtsp://``, ``http://``...)."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return True
    return isinstance(source, (str, Path)) and ("://" in str(source) or is_video(source))


def image_items(source: Source, strict: bool = True) -> list[ImageItem]:
    """Expand ``source`` into images, in order.

    Accepted: an image file, a folder (recursive) or a glob pattern (see :func:`list_images`); an HxW[xC]
    array, or an ``[N, H, W, C]`` array as N images; a list or tuple mixing any of these. ``strict=False``
    keeps a list entry that names no image (a missing path, an empty folder) as one item whose ``load``
    raises the error, so a caller can report it in its place and go on.

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
            elif strict or not isinstance(element, (str, Path)):
                items.extend(image_items(element))
            else:
                try:
                    items.extend(image_items(element))
                except ImageError:
                    items.append(ImageItem(path=Path(element), name=str(element)))
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
        candidates = files_under(path, IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    elif any(char in "*?[" for char in text):
        candidates = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    else:
        refuse_special_path(path, "source")
        raise ImageError(f"source {text!r} does not exist; pass an image or video file, a folder or a glob pattern")
    found = [p for p in candidates if is_image(p) or is_video(p)]
    if not found:
        raise ImageError(f"{text!r} holds no image or video file; check the folder or pattern")
    return found


MAX_CAMERA_INDEX = 99
"""Highest camera index taken (OpenCV reads larger numbers as a capture backend plus an index)."""


def check_camera_index(index: int) -> int:
    """``index`` when it names a camera OpenCV can be asked to open: 0..:data:`MAX_CAMERA_INDEX`, and on Linux a
    video device ``/dev/video<index>`` that exists (OpenCV's automatic choice for -1 can crash the process).

    Raises:
        ImageError: a negative or too large index, or no such camera device.
    """
    if not 0 <= index <= MAX_CAMERA_INDEX:
        raise ImageError(
            f"camera index {index} is out of range; pass the number of a camera, 0 to {MAX_CAMERA_INDEX} "
            "(0 is the first camera)"
        )
    device = Path(f"/dev/video{index}")
    if sys.platform.startswith("linux") and not device.is_char_device():
        found = sorted(p.name for p in Path("/dev").glob("video[0-9]*"))
        raise ImageError(
            f"camera {index} does not exist ({device} is not a video device); cameras found: "
            f"{', '.join(found) or 'none'}"
        )
    return index


def _open_capture(source: str | Path | int) -> cv2.VideoCapture:
    if isinstance(source, (str, Path)) and "://" not in str(source):
        path = Path(source)
        refuse_special_path(path, "video file")
        if not path.is_file():
            raise ImageError(f"video file {str(path)!r} does not exist; check the path (cwd is {Path.cwd()})")
        if path.stat().st_size == 0:
            raise ImageError(f"video file {str(path)!r} is empty (0 bytes); re-copy or re-download it")
    if isinstance(source, (int, np.integer)):
        source = check_camera_index(int(source))
    capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not capture.isOpened():
        capture.release()
        raise ImageError(
            f"cannot open video source {str(source)!r}: the file is corrupt, the codec is unsupported by this "
            f"OpenCV build, or the camera is unavailable"
        )
    return capture


MAX_FAILED_READS = 250
"""Consecutive failed frame reads tried before a video is taken to have ended (damage is skipped up to this)."""
STREAM_RETRIES = 25
"""Consecutive failed reads tolerated from a camera or stream URL, or a file that declares no frame count."""


class VideoFrames:
    """The frames of a video file, camera index or stream URL as HxWx3 uint8 BGR arrays, read lazily.

    A frame that fails to decode (a damaged block) is skipped and counted, and reading goes on: a file that
    declares its frame count is read until that many frames were delivered or skipped, trying at most
    :data:`MAX_FAILED_READS` failed reads in a row; other sources tolerate :data:`STREAM_RETRIES`. After the
    iteration ``delivered``, ``skipped`` and ``declared`` tell what happened, :attr:`ended_early` whether frames
    were missing at the end, and :meth:`summary` says it in words (also logged as a warning). The capture is
    released when the iteration ends or is closed (a VideoFrames never iterated releases it when collected).

    Raises:
        ImageError: the source cannot be opened (on creation), or it yields no frame at all (on iteration).
    """

    def __init__(self, source: str | Path | int) -> None:
        self.source = source
        self._capture = _open_capture(source)
        declared = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not _is_live(source) else 0
        self.declared: int | None = declared if declared > 0 else None
        self.delivered = 0
        self.skipped = 0
        self.index = -1  # index (from 0, damaged frames counted) of the frame last delivered

    @property
    def ended_early(self) -> bool:
        """True when the file declared more frames than were delivered or skipped."""
        return self.declared is not None and self.delivered + self.skipped < self.declared

    def summary(self) -> str:
        """What went wrong while reading (skipped frames, an early end), or "" when every frame came through."""
        parts = []
        if self.skipped:
            parts.append(f"skipped {self.skipped} damaged frame(s)")
        if self.ended_early:
            parts.append(f"ended after {self.delivered + self.skipped} of the {self.declared} frames it declares")
        return f"video {str(self.source)!r}: {'; '.join(parts)}" if parts else ""

    def __iter__(self) -> Iterator[np.ndarray]:
        capture, self._capture = self._capture, None
        if capture is None:
            raise ImageError(f"the frames of {str(self.source)!r} were read already; open the video again")
        try:
            yield from self._read(capture)
        finally:
            capture.release()
        if self.summary():
            LOGGER.warning("%s", self.summary())
        if self.delivered == 0:
            raise ImageError(
                f"video source {str(self.source)!r} yielded no frame; it is corrupt or its codec is unsupported"
            )

    def numbered(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(index in the video, frame)`` pairs, the index read as each frame arrives (in the thread that reads)."""
        iterator = iter(self)
        try:
            for frame in iterator:
                yield self.index, frame
        finally:
            iterator.close()

    def _read(self, capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
        failed = 0
        while True:
            ok, frame = capture.read()
            if ok and frame is not None:
                self.skipped += failed
                self.index += failed + 1
                self.delivered, failed = self.delivered + 1, 0
                yield as_bgr_uint8(frame, f"{self.source} frame {self.index}")
            elif not self._retry(failed := failed + 1):
                return

    def _retry(self, failed: int) -> bool:
        """Whether to read again after ``failed`` failed reads in a row."""
        if self.declared is None:
            return failed <= STREAM_RETRIES
        return failed <= MAX_FAILED_READS and self.delivered + self.skipped + failed <= self.declared


def _is_live(source: str | Path | int) -> bool:
    return isinstance(source, (int, np.integer)) or "://" in str(source)


def video_frames(source: str | Path | int) -> VideoFrames:
    """The frames of a video file, camera index or stream URL: a :class:`VideoFrames` to iterate once.

    Raises:
        ImageError: the source cannot be opened, or (while iterating) it yields no frame at all.
    """
    return VideoFrames(source)


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


def warn_about_videos(source: Any) -> None:
    """Say so when a folder holds videos: a call returns still images only (a list of every frame's Results
    would hold every frame in memory); :meth:`Detector.stream` or :func:`yolov6_sdk.detect` runs them."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        videos = sorted(p.name for p in Path(source).rglob("*") if is_video(p) and p.is_file())
        if videos:
            LOGGER.warning("%s holds %d video(s) (%s) that Detector(...) does not read: run them with "
                           "detector.stream(video) or yolov6_sdk.detect(model, folder)", source, len(videos),
                           ", ".join(videos[:3]) + (", ..." if len(videos) > 3 else ""))  # fmt: skip
