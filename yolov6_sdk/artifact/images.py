"""Reading images and normalising arrays to the one layout the SDK works in: HxWx3 uint8 BGR.

Every reader and converter either returns that layout or raises :class:`~yolov6_sdk.errors.ImageError`
naming the file (or array) and the fix. Grayscale becomes 3 channels, an alpha channel is dropped
(no compositing), 16-bit data is scaled to 8 bits by dividing by 257 (65535 -> 255) and floats in 0..1
are scaled by 255.

A file is decoded only after its header (:func:`~yolov6_sdk.artifact.image_header.image_size`) shows at most
:func:`pixel_limit` pixels (:data:`MAX_PIXELS`, or the environment variable ``YOLOV6_MAX_PIXELS``), so the
memory a decode takes is bounded by the limit, not by what a file claims. Only regular files are read (a device
such as ``/dev/zero``, a named pipe or a socket, or a link to one, is refused before it is opened for reading),
and at most :func:`byte_limit` bytes of them.
"""

from __future__ import annotations

import glob
import logging
import os
import stat
from pathlib import Path

import cv2
import numpy as np

from yolov6_sdk.artifact.image_header import image_size
from yolov6_sdk.errors import ConfigError, ImageError
from yolov6_sdk.fileio import IMAGE_SUFFIXES, VIDEO_SUFFIXES, files_under

logger = logging.getLogger(__name__)


MAX_PIXELS = 100_000_000
"""Default pixel limit (width x height) of an image file: 100 MP, about 300 MB once decoded as BGR uint8."""
MAX_PIXELS_ENV = "YOLOV6_MAX_PIXELS"

BYTES_PER_PIXEL = 8
"""Bytes an image file may hold per pixel of the limit: 16-bit RGBA stored uncompressed (TIFF, PNG)."""
METADATA_BYTES = 64 << 20
"""Bytes an image file may hold beside its pixels (EXIF, ICC profiles, XMP, thumbnails)."""

_JPEG_MAGIC = b"\xff\xd8"
_SPECIAL_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
_CHANNEL_COUNTS = (1, 3, 4)
_GLOB_CHARS = frozenset("*?[")


def is_image(path: str | Path) -> bool:
    """True when ``path`` has an image suffix (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: str | Path) -> bool:
    """True when ``path`` has a video suffix (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def pixel_limit() -> int:
    """The most pixels (width x height) an image file may declare: ``YOLOV6_MAX_PIXELS`` when set, else
    :data:`MAX_PIXELS`.

    Raises:
        ConfigError: ``YOLOV6_MAX_PIXELS`` is not a positive integer.
    """
    text = os.environ.get(MAX_PIXELS_ENV)
    if text is None:
        return int(MAX_PIXELS)
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={text!r} must be a positive number of pixels, e.g. 200000000")
    return value


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 BGR array.

    The size declared in the file's header (:func:`image_size`) is checked against :func:`pixel_limit` before
    anything is decoded, so a small file claiming a huge image costs no memory. JPEG files are decoded with
    their EXIF orientation applied (as ``cv2.imread``'s default, and so the official YOLOv6 pipeline, does);
    other formats are decoded unchanged and then converted by :func:`as_bgr_uint8` (grayscale -> 3 channels,
    alpha dropped, 16-bit / 257).

    Raises:
        ImageError: the file is missing, is a folder, is empty, is not PNG/JPEG/BMP/WebP/TIFF, declares more
            pixels than the limit, or cannot be decoded.
    """
    return decode_image(read_image_bytes(path), str(path))


def byte_limit() -> int:
    """The most bytes an image file may hold: :data:`BYTES_PER_PIXEL` per pixel of :func:`pixel_limit`, plus
    :data:`METADATA_BYTES` (864 MiB at the default limit).

    Raises:
        ConfigError: ``YOLOV6_MAX_PIXELS`` is not a positive integer.
    """
    return pixel_limit() * BYTES_PER_PIXEL + METADATA_BYTES


def special_file_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is a device, a named pipe or a socket ("a character
    device"...), else None (a regular file, a folder)."""
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), None)


def refuse_special_file(path: str | Path, mode: int, what: str = "image file") -> None:
    """Raise unless ``mode`` (``path``'s ``st_mode``, links followed) is that of a regular file or a folder.

    Raises:
        ImageError: ``path`` is (or links to) a device, a named pipe or a socket, which can be endless or block.
    """
    kind = special_file_kind(mode)
    if kind is not None:
        target = os.path.realpath(path)
        link = f" (a link to {target!r})" if target != os.path.abspath(path) else ""
        raise ImageError(
            f"{what} {str(path)!r}{link} is {kind}, not a regular file; devices, pipes and sockets are not read "
            "(they can be endless or wait forever): copy the data into a file and pass that"
        )


def refuse_special_path(path: str | Path, what: str) -> None:
    """:func:`refuse_special_file` for a path that may not exist (nothing is raised then)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    refuse_special_file(path, mode, what)


def read_image_bytes(path: str | Path) -> bytes:
    """The encoded bytes of image file ``path`` (a regular file of at most :func:`byte_limit` bytes), undecoded.

    Raises:
        ImageError: the file is missing, is a folder, is not a regular file (a device, pipe or socket, or a link
            to one), is larger than the limit, or cannot be read.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageError(f"image file {str(path)!r} does not exist; check the path (cwd is {Path.cwd()})") from None
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read image file {str(path)!r}: {exc}; check the path and its permissions") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{str(path)!r} is a folder, expected an image file; pass a file, or use list_images()")
    refuse_special_file(path, mode)
    try:  # non-blocking: should the path have become a pipe since the check, opening it does not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ImageError(f"cannot read image file {str(path)!r}: {exc}; check its permissions") from exc
    with open(fd, "rb", closefd=True) as stream:
        info = os.fstat(stream.fileno())
        refuse_special_file(path, info.st_mode)
        limit = byte_limit()
        if info.st_size > limit:
            raise ImageError(
                f"image file {str(path)!r} holds {info.st_size} bytes, more than the {limit} an image of the pixel "
                f"limit needs; pass a smaller file, or raise {MAX_PIXELS_ENV}"
            )
        try:
            data = stream.read(info.st_size + 1)  # one byte more tells a file that grows while it is read
        except OSError as exc:
            raise ImageError(f"cannot read image file {str(path)!r}: {exc}; copy it again") from exc
    if len(data) > info.st_size:
        raise ImageError(f"image file {str(path)!r} grew while it was read; pass it again once it is complete")
    return data


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode encoded image bytes (``name``: the file, for messages) as :func:`read_image` does."""
    check_declared_size(data, name)
    return decode_with_flags(data, name, cv2.IMREAD_COLOR if is_jpeg(data) else cv2.IMREAD_UNCHANGED)


def is_jpeg(data: bytes) -> bool:
    """True when encoded image ``data`` starts with the JPEG start-of-image marker."""
    return data.startswith(_JPEG_MAGIC)


def check_declared_size(data: bytes, name: str) -> tuple[int, int]:
    """``(width, height)`` that the header of encoded image ``data`` declares, checked against :func:`pixel_limit`.

    Raises:
        ImageError: ``data`` is empty, its header is not that of a PNG, JPEG, BMP, WebP or TIFF image, or it
            declares more pixels than the limit.
    """
    if not data:
        raise ImageError(f"image file {name!r} is empty (0 bytes); re-copy or re-download it")
    size = image_size(data)
    if size is None:
        raise ImageError(
            f"cannot decode image file {name!r} ({len(data)} bytes): its header is not that of a PNG, JPEG, BMP, "
            f"WebP or TIFF image, or is corrupt; re-export or convert it to one of these formats"
        )
    width, height = size
    limit = pixel_limit()
    if width * height > limit:
        raise ImageError(
            f"image file {name!r} declares {width} x {height} pixels ({width * height / 1e6:.1f} MP), more than "
            f"the limit of {limit / 1e6:.1f} MP; downscale it, or raise the limit with the environment variable "
            f"{MAX_PIXELS_ENV}={width * height} (or yolov6_sdk.artifact.images.MAX_PIXELS)"
        )
    return width, height


def decode_with_flags(data: bytes, name: str, flags: int) -> np.ndarray:
    """``cv2.imdecode(data, flags)`` converted by :func:`as_bgr_uint8`; call :func:`check_declared_size` first.

    Raises:
        ImageError: OpenCV cannot decode ``data``.
    """
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(f"cannot decode image file {name!r}: OpenCV refused it ({_first_line(exc)})") from exc
    if image is None:
        raise ImageError(
            f"cannot decode image file {name!r} ({len(data)} bytes): it is corrupt or not an image "
            f"format OpenCV reads ({', '.join(sorted(IMAGE_SUFFIXES))}); re-export or convert it"
        )
    return _as_bgr_uint8(image, name, layout_known=True).view(DecodedPixels)


class DecodedPixels(np.ndarray):
    """An HxWx3 uint8 BGR picture decoded from a file: its layout is known, so :func:`as_bgr_uint8` takes it as
    it is, however small (a 1x1 or 2x2 PNG is no channels-first array), and returns it as a plain array."""


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def as_bgr_uint8(array: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert an image array to a C-contiguous HxWx3 uint8 BGR array (the input is never modified).

    Accepted shapes: HxW, HxWx1 (grayscale), HxWx3 (BGR), HxWx4 (BGRA, alpha dropped). A 3-D array whose
    first axis is 1, 3 or 4 long could also be channels-first (CxHxW): it is read as HxWxC when its height and
    width both exceed its channel count C, refused as ambiguous otherwise (a (3, 4, 4) array is not a 3x4
    BGRA image), and refused as channels-first when its last axis is longer than 4. Accepted dtypes: uint8, uint16
    (divided by 257 and rounded) and floating point in 0..1 (times 255, rounded). ``name`` is used in error
    messages (a file path or a description of the array).

    Raises:
        ImageError: not an array, an empty image, a channels-first (CHW) or ambiguous array, an unsupported
            shape or dtype, or floats outside 0..1.
    """
    if isinstance(array, DecodedPixels) and array.ndim == 3 and array.flags.c_contiguous:
        return array.view(np.ndarray)  # a decoder's own output (a transposed or sliced view is checked again)
    return _as_bgr_uint8(array, name, layout_known=False)


def _as_bgr_uint8(array: np.ndarray, name: str, layout_known: bool) -> np.ndarray:
    """:func:`as_bgr_uint8`; ``layout_known``: a decoder's output, HxWxC for sure (no ambiguity check)."""
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array (HxWx3 BGR uint8), got {type(array).__name__}")
    if not layout_known:
        _refuse_channels_first(array, name)
    image = _to_hwc3(array, name)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"{name}: image is empty (shape {array.shape}); expected a height and width >= 1")
    return np.ascontiguousarray(_to_uint8(image, name))


def _refuse_channels_first(array: np.ndarray, name: str) -> None:
    if array.ndim != 3 or array.shape[0] not in _CHANNEL_COUNTS:
        return
    height, width, channels = array.shape
    if channels in _CHANNEL_COUNTS:
        if min(height, width) <= channels:
            raise ImageError(
                f"{name}: shape {array.shape} is ambiguous: it reads as HxWxC ({height}x{width} pixels, {channels} "
                f"channels) and as CxHxW; an HxWxC array needs a height and width above its channel count: pad "
                f"it, or convert a channels-first array with array.transpose(1, 2, 0)"
            )
        return
    if channels > max(_CHANNEL_COUNTS):
        raise ImageError(
            f"{name}: got shape {array.shape}, which looks channels-first (CxHxW); expected HxWxC; "
            f"convert it with array.transpose(1, 2, 0)"
        )


def _to_hwc3(array: np.ndarray, name: str) -> np.ndarray:
    """Shape handling of :func:`as_bgr_uint8`: return an HxWx3 view or copy, any dtype."""
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3:
        channels = array.shape[2]
        if channels == 1:
            return np.repeat(array, 3, axis=2)
        if channels == 3:
            return array
        if channels == 4:
            return array[:, :, :3]
    raise ImageError(f"{name}: unsupported image shape {array.shape}; expected HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA)")


def _to_uint8(image: np.ndarray, name: str) -> np.ndarray:
    """Dtype handling of :func:`as_bgr_uint8`."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # round(v / 257): 65535 -> 255, 257 -> 1, 128 -> 0; element by element, no wide temporary
        return cv2.convertScaleAbs(np.ascontiguousarray(image), alpha=1 / 257)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ImageError(f"{name}: float image contains NaN or infinity; expected values in 0..1")
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(
                f"{name}: float image has values in {low:.4g}..{high:.4g}, expected 0..1; for 0..255 "
                f"data pass array.astype(np.uint8), for other ranges rescale to 0..1 first"
            )
        return np.rint(image.astype(np.float64) * 255.0).astype(np.uint8)
    raise ImageError(
        f"{name}: unsupported dtype {image.dtype}; expected uint8, uint16 or float in 0..1 "
        f"(convert with array.astype(np.uint8) if the values are 0..255)"
    )


def list_images(source: str | Path) -> list[Path]:
    """Image files named by ``source``: a file, a folder (searched recursively) or a glob pattern.

    Folder and glob results keep only image suffixes (:data:`IMAGE_SUFFIXES`, case-insensitive) and are
    sorted by path. A single file is returned as given, whatever its suffix (decoding decides).

    Raises:
        ImageError: the path does not exist, or the folder / pattern holds no image file.
    """
    text = str(source)
    if any(char in _GLOB_CHARS for char in text) and not Path(text).exists():
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        images = [p for p in matches if p.is_file() and is_image(p)]
        if not images:
            raise ImageError(f"glob pattern {text!r} matches no image file ({_suffix_list()})")
        return images
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = files_under(path, IMAGE_SUFFIXES)
        if not images:
            raise ImageError(f"folder {text!r} holds no image file ({_suffix_list()}); check the folder")
        logger.debug("found %d images under %s", len(images), path)
        return images
    refuse_special_path(path, "image source")
    raise ImageError(f"image source {text!r} does not exist; pass an image file, a folder or a glob pattern")


def _suffix_list() -> str:
    return "suffixes " + " ".join(sorted(IMAGE_SUFFIXES))
