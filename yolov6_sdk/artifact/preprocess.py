"""Letterbox pre-processing into the model input, and the inverse mapping of boxes.

Model input (DESIGN contract): float32 ``[B, 3, H, W]``, RGB, 0..1, each image resized with one ratio to
fit the ``H x W`` canvas (H, W multiples of 32) and padded with gray 114, padding centred and split as the
official YOLOv6 letterbox splits it: ``top = round(dh/2 - 0.1)``, ``bottom = round(dh/2 + 0.1)`` (same for
left/right), so an odd pixel goes to the bottom/right.

Two forms give the same :class:`LetterboxInfo` and pixel values within one gray level (1/255 after
scaling): :func:`preprocess_batch` (numpy + ``cv2.resize`` INTER_LINEAR, on the CPU) and
:func:`preprocess_batch_torch` (torch ops on the given device; bilinear, ``align_corners=False``, no
antialias, rounded to integer levels). torch is imported only by the torch form.

Rectangular inference: the canvas may be smaller than the model's input size. :func:`rect_shape` gives the
smallest stride-multiple ``(h, w)`` holding every image of a batch resized at the model's scale (the ratio of
the square letterbox), so a 480x640 picture fills a 480x640 canvas instead of 640x640 and maps back to the same
original pixels. :class:`InputBuffer` keeps the float input and the resize scratch between calls, so the numpy
form allocates nothing per call once the largest batch has been seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.errors import ConfigError, ImageError

if TYPE_CHECKING:
    import torch

STRIDE = 32
PAD_VALUE = 114
MIN_SIDE = STRIDE  # smallest canvas height / width a dynamic-shape artifact serves
MAX_SIDE = 4096  # largest input height / width, 3.2x the largest official size (1280): one 4096x4096 image is 201 MB


@dataclass(frozen=True)
class LetterboxInfo:
    """How one image was placed on the model canvas.

    Attributes:
        ratio: resize factor applied to both axes (input pixels per original pixel).
        pad: ``(left, top)`` padding in input pixels.
        orig_shape: ``(h, w)`` of the original image.
        input_shape: ``(h, w)`` of the model canvas.
    """

    ratio: float
    pad: tuple[int, int]
    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]

    @property
    def resized_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the resized image inside the canvas (before padding)."""
        return _resized_shape(self.orig_shape, self.ratio)


def _resized_shape(orig_shape: tuple[int, int], ratio: float) -> tuple[int, int]:
    # rounded as the official letterbox rounds; at least one pixel for extreme aspect ratios
    return max(1, int(round(orig_shape[0] * ratio))), max(1, int(round(orig_shape[1] * ratio)))


def check_imgsz(imgsz: int | Sequence[int], stride: int = STRIDE) -> tuple[int, int]:
    """Normalise a model input size to ``(h, w)``; an int means a square canvas. The one image-size rule for
    sizes given by the user and sizes read from files (metadata, sidecars, checkpoints) alike.

    Raises:
        ConfigError: not one or two positive integers that are multiples of ``stride`` and at most
            :data:`MAX_SIDE`.
    """
    if isinstance(imgsz, (int, np.integer)):
        size: tuple[Any, ...] = (imgsz, imgsz)
    else:
        size = tuple(imgsz) if isinstance(imgsz, Sequence) else ()
    valid = len(size) == 2 and all(isinstance(v, (int, np.integer)) and v > 0 for v in size)
    if not valid:
        raise ConfigError(
            f"imgsz must be an int or (height, width) of positive ints, multiples of {stride}, got {imgsz!r}"
        )
    if any(v > MAX_SIDE for v in size):
        raise ConfigError(f"imgsz {tuple(size)} is larger than {MAX_SIDE} pixels on a side; use a smaller size")
    if any(v % stride for v in size):
        fixed = tuple(int(math.ceil(v / stride) * stride) for v in size)
        raise ConfigError(f"imgsz {tuple(size)} must be multiples of {stride}; use {fixed}")
    return int(size[0]), int(size[1])


def letterbox_info(
    orig_shape: tuple[int, int],
    new_shape: tuple[int, int],
    scaleup: bool = True,
    scale_shape: tuple[int, int] | None = None,
) -> LetterboxInfo:
    """Ratio and padding that fit an image of ``orig_shape`` (h, w) into a canvas of ``new_shape`` (h, w).

    The ratio fits the image into ``scale_shape`` (default: the canvas itself); a rectangular canvas passes the
    model's input size here so the image is resized exactly as on the square canvas.

    Raises:
        ConfigError: the image resized at that ratio does not fit the canvas.
    """
    h, w = int(orig_shape[0]), int(orig_shape[1])
    new_h, new_w = int(new_shape[0]), int(new_shape[1])
    scale_h, scale_w = (new_h, new_w) if scale_shape is None else (int(scale_shape[0]), int(scale_shape[1]))
    ratio = min(scale_h / h, scale_w / w)
    if not scaleup:
        ratio = min(ratio, 1.0)
    resized_h, resized_w = _resized_shape((h, w), ratio)
    if resized_h > new_h or resized_w > new_w:
        raise ConfigError(
            f"an image of {h}x{w} resized to {resized_h}x{resized_w} does not fit a {new_h}x{new_w} canvas; "
            f"use rect_shape() to size the canvas"
        )
    dh, dw = (new_h - resized_h) / 2, (new_w - resized_w) / 2
    # official split: the extra pixel of an odd padding goes to bottom/right
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    return LetterboxInfo(ratio=ratio, pad=(left, top), orig_shape=(h, w), input_shape=(new_h, new_w))


def rect_shape(
    orig_shapes: Sequence[tuple[int, int]], imgsz: tuple[int, int], scaleup: bool = True, stride: int = STRIDE
) -> tuple[int, int]:
    """Smallest ``(h, w)`` canvas, multiples of ``stride``, holding every image resized at the scale of ``imgsz``.

    Each image gets the ratio it would get on the ``imgsz`` canvas; the answer is never larger than ``imgsz``
    (a multiple of ``stride``). For a batch, the canvas holds its largest member on each axis.
    """
    height, width = 0, 0
    for orig_shape in orig_shapes:
        ratio = min(imgsz[0] / orig_shape[0], imgsz[1] / orig_shape[1])
        resized_h, resized_w = _resized_shape(orig_shape, ratio if scaleup else min(ratio, 1.0))
        height, width = max(height, resized_h), max(width, resized_w)
    return min(-(-height // stride) * stride, imgsz[0]), min(-(-width // stride) * stride, imgsz[1])


def letterbox(
    image_bgr: np.ndarray,
    new_shape: int | tuple[int, int] = (640, 640),
    color: int = PAD_VALUE,
    scaleup: bool = True,
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``image_bgr`` (HxWxC uint8) with one ratio (cv2 INTER_LINEAR) and pad it to ``new_shape``.

    Returns the padded ``new_h x new_w x C`` uint8 image (same channel order as the input) and its
    :class:`LetterboxInfo`. ``scaleup=False`` never enlarges the image. The input is not modified.
    """
    shape = (new_shape, new_shape) if isinstance(new_shape, int) else new_shape
    if image_bgr.ndim != 3 or image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
        raise ImageError(f"letterbox expects an HxWxC image, got shape {image_bgr.shape}")
    info = letterbox_info(image_bgr.shape[:2], shape, scaleup)
    resized_h, resized_w = info.resized_shape
    resized = image_bgr
    if (resized_h, resized_w) != image_bgr.shape[:2]:
        resized = cv2.resize(image_bgr, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
        resized = resized.reshape(resized_h, resized_w, -1)  # cv2 drops a single channel axis
    canvas = np.full((info.input_shape[0], info.input_shape[1], image_bgr.shape[2]), color, dtype=np.uint8)
    left, top = info.pad
    canvas[top : top + resized_h, left : left + resized_w] = resized
    return canvas, info


class InputBuffer:
    """Grow-only storage the numpy pre-processing writes into, reused from call to call.

    ``batch(count, shape)`` is a C-contiguous float32 ``[count, 3, h, w]`` view of one flat array (the same
    memory every call once it has grown to the largest batch); ``scratch(h, w)`` gives contiguous uint8 views
    for the resized image (``[h, w, 3]``) and its three channel planes (``[h, w]`` each). Not thread-safe: one
    buffer per pre-processing thread.
    """

    def __init__(self) -> None:
        self.storage = np.empty(0, dtype=np.float32)
        self._scratch = np.empty(0, dtype=np.uint8)

    def batch(self, count: int, shape: tuple[int, int]) -> np.ndarray:
        """A float32 ``[count, 3, h, w]`` view of :attr:`storage` (grown when too small)."""
        size = count * 3 * shape[0] * shape[1]
        if self.storage.size < size:
            self.storage = np.empty(size, dtype=np.float32)
        return self.storage[:size].reshape(count, 3, *shape)

    def scratch(self, height: int, width: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """uint8 views of the scratch (grown when too small): the resized image ``[h, w, 3]`` and three planes."""
        plane = height * width
        if self._scratch.size < 6 * plane:
            self._scratch = np.empty(6 * plane, dtype=np.uint8)
        planes = [self._scratch[(3 + c) * plane : (4 + c) * plane].reshape(height, width) for c in range(3)]
        return self._scratch[: 3 * plane].reshape(height, width, 3), planes


_PAD_LEVEL = np.float32(PAD_VALUE) / np.float32(255)  # gray 114 after the 0..1 scaling


def letterbox_into(
    image_bgr: np.ndarray, out: np.ndarray, info: LetterboxInfo, buffer: InputBuffer | None = None
) -> None:
    """Write ``image_bgr`` (HxWx3 uint8) letterboxed as ``info`` says into ``out`` (float32 ``[3, h, w]``, RGB 0..1).

    cv2 resizes into the scratch of ``buffer`` (None: fresh arrays) and splits the channels into its planes;
    each plane is divided by 255 straight into its RGB channel of ``out``, and only the padding strips are
    filled with gray. Values equal :func:`letterbox` followed by the float conversion.
    """
    resized_h, resized_w = info.resized_shape
    resized, planes = (buffer or InputBuffer()).scratch(resized_h, resized_w)
    if (resized_h, resized_w) != image_bgr.shape[:2]:
        cv2.resize(image_bgr, (resized_w, resized_h), dst=resized, interpolation=cv2.INTER_LINEAR)
    else:
        resized = image_bgr
    left, top = info.pad
    bottom, right = top + resized_h, left + resized_w
    out[:, :top] = _PAD_LEVEL
    out[:, bottom:] = _PAD_LEVEL
    out[:, top:bottom, :left] = _PAD_LEVEL
    out[:, top:bottom, right:] = _PAD_LEVEL
    # HWC BGR uint8 -> contiguous planes -> CHW RGB float32 0..1 (a true division, as the official one divides)
    cv2.split(resized, planes)
    for channel, plane in enumerate(reversed(planes)):
        np.divide(plane, np.float32(255), out=out[channel, top:bottom, left:right])


def preprocess_batch(
    images: Sequence[np.ndarray],
    imgsz: int | tuple[int, int] = (640, 640),
    scaleup: bool = True,
    canvas: tuple[int, int] | None = None,
    buffer: InputBuffer | None = None,
) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Letterbox HxWx3 uint8 BGR images of any sizes into one float32 ``[B, 3, h, w]`` RGB 0..1 batch.

    Images are resized at the scale of ``imgsz`` (the model's input size) and padded to ``canvas`` (default
    ``imgsz``; a rectangle from :func:`rect_shape` for rectangular inference). With ``buffer`` the batch is a
    view of its storage and nothing is allocated once it has grown; without, a new array is returned.
    Returns the batch and one :class:`LetterboxInfo` per image.

    Raises:
        ConfigError: ``imgsz`` or ``canvas`` is not a multiple of 32, or an image does not fit ``canvas``.
        ImageError: an empty list or an image that is not HxWx3 uint8.
    """
    scale_shape = check_imgsz(imgsz)
    shape = scale_shape if canvas is None else check_imgsz(canvas)
    _check_images(images)
    return letterbox_batch(images, scale_shape, shape, buffer if buffer is not None else InputBuffer(), scaleup)


def letterbox_batch(
    images: Sequence[np.ndarray],
    scale_shape: tuple[int, int],
    canvas: tuple[int, int],
    buffer: InputBuffer,
    scaleup: bool = True,
) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """The kernel of :func:`preprocess_batch`, for callers that checked its inputs: a non-empty list of HxWx3
    uint8 images, ``scale_shape`` and ``canvas`` (h, w) from :func:`check_imgsz`."""
    shape = canvas
    batch = buffer.batch(len(images), shape)
    infos = []
    for i, image in enumerate(images):
        info = letterbox_info(image.shape[:2], shape, scaleup, scale_shape)
        letterbox_into(image, batch[i], info, buffer)
        infos.append(info)
    return batch, infos


def preprocess_batch_torch(
    images: Sequence[np.ndarray],
    imgsz: int | tuple[int, int] = (640, 640),
    device: str | torch.device = "cpu",
    scaleup: bool = True,
    canvas: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, list[LetterboxInfo]]:
    """Torch form of :func:`preprocess_batch`: the uint8 images go to ``device`` and are letterboxed there.

    ``canvas`` as in :func:`preprocess_batch` (default: ``imgsz``).

    Returns a float32 ``[B, 3, H, W]`` RGB 0..1 tensor on ``device`` and the same :class:`LetterboxInfo`
    values as :func:`preprocess_batch`; pixels agree with it within 1/255 (bilinear resize rounded to
    integer levels, as cv2 rounds).
    """
    scale_shape = check_imgsz(imgsz)
    shape = scale_shape if canvas is None else check_imgsz(canvas)
    _check_images(images)
    return letterbox_batch_torch(images, scale_shape, shape, device, scaleup)


def letterbox_batch_torch(
    images: Sequence[np.ndarray],
    scale_shape: tuple[int, int],
    canvas: tuple[int, int],
    device: str | torch.device,
    scaleup: bool = True,
) -> tuple[torch.Tensor, list[LetterboxInfo]]:
    """The kernel of :func:`preprocess_batch_torch`, for callers that checked its inputs (as for
    :func:`letterbox_batch`)."""
    torch = require("torch")
    functional = require("torch.nn.functional")
    height, width = canvas
    batch = torch.full((len(images), 3, height, width), PAD_VALUE, dtype=torch.float32, device=device)
    infos = []
    for i, image in enumerate(images):
        info = letterbox_info(image.shape[:2], (height, width), scaleup, scale_shape)
        # HWC BGR uint8 -> 1x3xHxW RGB float on the device (channel flip after the upload)
        pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True)
        pixels = pixels.permute(2, 0, 1).flip(0).unsqueeze(0).float()
        resized_h, resized_w = info.resized_shape
        if (resized_h, resized_w) != image.shape[:2]:
            pixels = functional.interpolate(
                pixels, size=(resized_h, resized_w), mode="bilinear", align_corners=False, antialias=False
            )
            pixels = pixels.round_().clamp_(0, 255)
        left, top = info.pad
        batch[i, :, top : top + resized_h, left : left + resized_w] = pixels[0]
        infos.append(info)
    return batch.div_(255), infos


def _check_images(images: Sequence[np.ndarray]) -> None:
    if len(images) == 0:
        raise ImageError("got an empty list of images; pass at least one HxWx3 uint8 BGR image")
    for i, image in enumerate(images):
        ok = isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
        if not ok or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ImageError(
                f"image {i}: expected an HxWx3 uint8 BGR array, got {got}; "
                f"convert it with yolov6_sdk.artifact.images.as_bgr_uint8"
            )


def scale_boxes_to_original(boxes_xyxy: Any, info: LetterboxInfo, inplace: bool = False) -> Any:
    """Map ``[N, 4]`` xyxy boxes from model-input pixels to original-image pixels.

    Subtracts the padding, divides by the ratio and clips to the original image (x in 0..w, y in 0..h).
    Works on numpy arrays (computed in float64, returned as the input's float dtype, float32 for
    integer input) and on torch tensors (same device and float dtype). The input is not modified, unless
    ``inplace=True`` on a float numpy array: then the boxes are rescaled in their own memory (in their
    dtype, no temporary arrays) and that array is returned.
    """
    left, top = info.pad
    h, w = info.orig_shape
    if isinstance(boxes_xyxy, np.ndarray):
        if inplace and np.issubdtype(boxes_xyxy.dtype, np.floating):
            boxes_xyxy -= np.array([left, top, left, top], dtype=boxes_xyxy.dtype)
            boxes_xyxy /= boxes_xyxy.dtype.type(info.ratio)
            return np.clip(boxes_xyxy, 0, np.array([w, h, w, h], dtype=boxes_xyxy.dtype), out=boxes_xyxy)
        dtype = boxes_xyxy.dtype if np.issubdtype(boxes_xyxy.dtype, np.floating) else np.float32
        out = (boxes_xyxy.astype(np.float64) - np.array([left, top, left, top])) / info.ratio
        limit = np.array([w, h, w, h], dtype=np.float64)
        return np.clip(out, 0.0, limit).astype(dtype)
    torch = require("torch")
    boxes = boxes_xyxy if boxes_xyxy.is_floating_point() else boxes_xyxy.float()
    offset = torch.tensor([left, top, left, top], dtype=torch.float64, device=boxes.device)
    limit = torch.tensor([w, h, w, h], dtype=torch.float64, device=boxes.device)
    out = (boxes.double() - offset) / info.ratio
    return torch.minimum(out.clamp(min=0.0), limit).to(boxes.dtype)


def pad_batch(batch: Any, size: int) -> Any:
    """Append zero images so ``batch`` holds at least ``size`` (for artifacts with a fixed or minimum batch)."""
    missing = size - len(batch)
    if missing <= 0:
        return batch
    if isinstance(batch, np.ndarray):
        return np.concatenate((batch, np.zeros((missing, *batch.shape[1:]), dtype=batch.dtype)))
    return require("torch").cat((batch, batch.new_zeros((missing, *batch.shape[1:]))))
