"""Decoding a JPEG at the size the model needs (1/2, 1/4 or 1/8 scale), and mapping boxes back to its pixels.

libjpeg scales while it decodes (its DCT scaling, OpenCV's ``IMREAD_REDUCED_COLOR_2/4/8``) for a fraction of
the cost of a full decode. At scale 1/s each decoded pixel is the mean of an s x s block of the stored picture,
and a side of N pixels decodes to ceil(N/s) pixels: the last block of a side that s does not divide is partial.
Decoded pixel i therefore covers original pixels [i*s, (i+1)*s), so a point at x in the decoded picture lies at
x*s in the original, exactly, and the decoded grid overhangs the picture by s*ceil(N/s) - N pixels at the end of
the stored side. (One factor N / ceil(N/s) per side would misplace points near the far edge by up to s - 1
pixels.) When the EXIF orientation reverses a stored side, the overhang comes first on that side and the mapping
subtracts it. The decoded size is checked against ceil(N/s) before it is used, so a decoder that scaled
otherwise (or not at all) never gets its boxes mapped with the wrong factor.

:func:`decode_scale` picks the strongest reduction whose picture still holds, on both sides, the size the
letterbox resizes the picture to (:func:`~yolov6_sdk.artifact.preprocess.letterbox_info`), so the model never
sees an enlarged pixel. :func:`read_image_for_model` reads a file that way; a file that is not a JPEG, whose
EXIF block is malformed, or that is smaller than twice its letterboxed size on a side is decoded as
:func:`~yolov6_sdk.artifact.images.read_image` decodes it, with the same checks (header, pixel limit) first.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolov6_sdk.artifact.image_header import jpeg_orientation
from yolov6_sdk.artifact.images import (
    check_declared_size,
    decode_image,
    decode_with_flags,
    is_jpeg,
    read_image,
    read_image_bytes,
)
from yolov6_sdk.artifact.preprocess import check_imgsz, letterbox_info
from yolov6_sdk.errors import ImageError

LOGGER = logging.getLogger(__name__)

DECODE_SCALES = (8, 4, 2)
"""Reductions libjpeg decodes at, strongest first (1/8, 1/4, 1/2)."""
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
# EXIF orientation -> (stored sides swapped, displayed x runs against the stored side, displayed y does)
_ORIENTATION_AXES = {
    1: (False, False, False),
    2: (False, True, False),
    3: (False, True, True),
    4: (False, False, True),
    5: (True, False, False),
    6: (True, True, False),
    7: (True, True, True),
    8: (True, False, True),
}


@dataclass(frozen=True)
class DecodedImage:
    """A picture as decoded for the model, and where its pixels lie in the full-size picture.

    Attributes:
        pixels: ``[h, w, 3]`` uint8 BGR as decoded (the full picture when ``scale`` is 1).
        orig_shape: ``(h, w)`` of the full-size picture, EXIF orientation applied (what ``read_image`` gives).
        scale: 1 (full size), 2, 4 or 8: each decoded pixel covers ``scale x scale`` original pixels.
        overhang: ``(x, y)`` original pixels by which the decoded grid starts before the picture (a side whose
            partial block comes first after EXIF orientation), else 0.
        path: the file the picture came from (None for an array given directly); :func:`read_full_size`
            decodes it again at full size.
    """

    pixels: np.ndarray
    orig_shape: tuple[int, int]
    scale: int = 1
    overhang: tuple[int, int] = (0, 0)
    path: Path | None = None

    @classmethod
    def at_full_size(cls, pixels: np.ndarray, path: str | Path | None = None) -> DecodedImage:
        """A picture decoded at full size: ``pixels`` are the original."""
        return cls(pixels, (int(pixels.shape[0]), int(pixels.shape[1])), path=None if path is None else Path(path))

    @property
    def reduced(self) -> bool:
        """True when decoded below full size (``scale`` > 1)."""
        return self.scale > 1

    def boxes_to_original(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map ``[N, 4]`` xyxy boxes from decoded pixels to original pixels: times ``scale``, minus ``overhang``,
        clipped to ``orig_shape``. Returns a new float32 array; the input is not modified."""
        left, top = self.overhang
        height, width = self.orig_shape
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) * self.scale
        boxes -= np.array([left, top, left, top], dtype=np.float64)
        return np.clip(boxes, 0.0, np.array([width, height, width, height], dtype=np.float64)).astype(np.float32)


def read_full_size(path: str | Path, orig_shape: tuple[int, int]) -> np.ndarray:
    """Image file ``path`` decoded at full size (as ``read_image`` decodes it), checked to be ``orig_shape`` (h, w).

    Raises:
        ImageError: the file can no longer be read, or is no longer the picture that was decoded (its size
            changed).
    """
    pixels = read_image(path)
    if pixels.shape[:2] != tuple(orig_shape):
        raise ImageError(
            f"image file {str(path)!r} is now {pixels.shape[0]}x{pixels.shape[1]} pixels but was "
            f"{orig_shape[0]}x{orig_shape[1]} when it was detected on; it changed since: run the detection again"
        )
    return pixels


def decode_scale(orig_shape: tuple[int, int], imgsz: int | tuple[int, int]) -> int:
    """The strongest reduction (8, 4 or 2; 1: none) whose decoded picture of a picture of ``orig_shape`` (h, w)
    still holds, on both sides, the size the letterbox resizes that picture to for a model of ``imgsz``.

    Raises:
        ConfigError: ``imgsz`` is not a valid model input size.
    """
    height, width = int(orig_shape[0]), int(orig_shape[1])
    needed_h, needed_w = letterbox_info((height, width), check_imgsz(imgsz)).resized_shape
    for scale in DECODE_SCALES:
        if -(-height // scale) >= needed_h and -(-width // scale) >= needed_w:
            return scale
    return 1


def read_image_for_model(path: str | Path, imgsz: int | tuple[int, int]) -> DecodedImage:
    """Read image file ``path`` for a model of input ``imgsz``: a JPEG at 1/2, 1/4 or 1/8 scale when
    :func:`decode_scale` allows, anything else as ``read_image`` reads it (see the module docstring).

    The header and the pixel limit are checked before any decode, on the full size the file declares.

    Raises:
        ImageError: as ``read_image``: the file is missing, a folder, empty, not an image, larger than the
            pixel limit, or cannot be decoded.
        ConfigError: ``imgsz`` is not a valid model input size.
    """
    name = str(path)
    data = read_image_bytes(path)
    width, height = check_declared_size(data, name)
    orientation = jpeg_orientation(data) if is_jpeg(data) else None
    if orientation is not None:
        reduced = _decode_reduced(data, name, (height, width), orientation, imgsz)
        if reduced is not None:
            return dataclasses.replace(reduced, path=Path(path))
    return DecodedImage.at_full_size(decode_image(data, name), path)


def _decode_reduced(
    data: bytes, name: str, stored_shape: tuple[int, int], orientation: int, imgsz: int | tuple[int, int]
) -> DecodedImage | None:
    """The reduced decode of JPEG ``data`` (stored ``(h, w)``, EXIF ``orientation``), or None when the picture
    is too small for one or the decoder did not give the size libjpeg's scaling gives."""
    swapped, reversed_x, reversed_y = _ORIENTATION_AXES[orientation]
    orig_shape = (stored_shape[1], stored_shape[0]) if swapped else stored_shape
    scale = decode_scale(orig_shape, imgsz)
    if scale == 1:
        return None
    pixels = decode_with_flags(data, name, _REDUCED_FLAGS[scale])
    expected = (-(-orig_shape[0] // scale), -(-orig_shape[1] // scale))
    if pixels.shape[:2] != expected:
        LOGGER.debug("%s decoded at 1/%d to %s, expected %s: decoding it at full size", name, scale,
                     pixels.shape[:2], expected)  # fmt: skip
        return None
    overhang_x = expected[1] * scale - orig_shape[1] if reversed_x else 0
    overhang_y = expected[0] * scale - orig_shape[0] if reversed_y else 0
    return DecodedImage(pixels, orig_shape, scale, (overhang_x, overhang_y))
