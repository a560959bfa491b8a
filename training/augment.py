"""Training-time image augmentation on numpy arrays (the official YOLOv6 recipe).

Conventions for every function here: images are ``uint8`` HWC BGR arrays as ``cv2.imread`` returns them;
boxes are ``float32 [N, 4]`` ``x1, y1, x2, y2`` in pixels of the image they belong to, with pixel-edge
coordinates (a box covering columns 0..9 is ``x1 = 0, x2 = 10``). Inputs are never modified: every function
returns new arrays. Randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from yolov6_sdk.artifact.preprocess import PAD_VALUE, LetterboxInfo, letterbox_info
from yolov6_sdk.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation hyper-parameters; defaults are the official ones for YOLOv6-N/S.

    Gains are fractions (``hsv_v=0.4`` means brightness x U(0.6, 1.4)); ``degrees`` and ``shear`` are in
    degrees; ``translate`` is a fraction of the output size; ``scale`` gives a zoom in ``[1-scale, 1+scale]``;
    ``flipud``, ``fliplr``, ``mosaic`` and ``mixup`` are probabilities.
    """

    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    mixup: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"AugmentConfig.{f.name}={value!r}: expected a finite number >= 0")
        for name in ("flipud", "fliplr", "mosaic", "mixup", "translate", "scale"):
            if getattr(self, name) > 1:
                raise ConfigError(
                    f"AugmentConfig.{name}={getattr(self, name)!r}: expected a value in [0, 1]; "
                    "probabilities and fractions cannot exceed 1"
                )


def _hw(shape: int | tuple[int, int]) -> tuple[int, int]:
    return (shape, shape) if isinstance(shape, int) else (int(shape[0]), int(shape[1]))


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


def augment_hsv(img: np.ndarray, hgain: float, sgain: float, vgain: float, rng: np.random.Generator) -> np.ndarray:
    """Random hue/saturation/value gains in ``[1-g, 1+g]`` applied through look-up tables (hue wraps mod 180).

    ``img``: uint8 ``[H, W, 3]`` BGR. Returns a new image of the same shape and dtype.
    """
    if not (hgain or sgain or vgain):
        return img.copy()
    gains = rng.uniform(-1.0, 1.0, 3) * np.array([hgain, sgain, vgain]) + 1.0
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def fliplr(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right. Returns ``(image [H, W, C], boxes [N, 4] xyxy)``."""
    w = img.shape[1]
    out = boxes.astype(np.float32, copy=True)
    out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(img[:, ::-1]), out


def flipud(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror top-bottom. Returns ``(image [H, W, C], boxes [N, 4] xyxy)``."""
    h = img.shape[0]
    out = boxes.astype(np.float32, copy=True)
    out[:, 1], out[:, 3] = h - boxes[:, 3], h - boxes[:, 1]
    return np.ascontiguousarray(img[::-1]), out


def letterbox(
    img: np.ndarray,
    new_shape: int | tuple[int, int],
    *,
    scaleup: bool = True,
    color: int = PAD_VALUE,
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping the aspect ratio and pad centred to ``new_shape`` (an int or ``(H, W)``).

    The geometry is inference's (:func:`yolov6_sdk.artifact.preprocess.letterbox_info`, the official rule
    ``top = round(dh/2 - 0.1)``); only the interpolation may differ. Returns ``(image [H, W, C], info)``; a
    point ``p`` of the original lands at ``p * info.ratio + info.pad``.
    """
    info = letterbox_info(img.shape[:2], _hw(new_shape), scaleup)
    (new_h, new_w), (left, top) = info.resized_shape, info.pad
    if (new_h, new_w) != img.shape[:2]:
        img = cv2.resize(img, (new_w, new_h), interpolation=interpolation)
    bottom, right = info.input_shape[0] - new_h - top, info.input_shape[1] - new_w - left
    out = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(color,) * 3)
    return out, info


def letterbox_train(
    img: np.ndarray, boxes: np.ndarray, new_shape: int | tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox (scale-up allowed, gray 114) and move ``boxes [N, 4]`` xyxy with the image."""
    out, info = letterbox(img, new_shape, scaleup=True)
    left, top = info.pad
    moved = boxes.astype(np.float32) * np.float32(info.ratio) + np.array([left, top, left, top], dtype=np.float32)
    return out, moved


def _affine_matrix(
    src_hw: tuple[int, int],
    dst_hw: tuple[int, int],
    degrees: float,
    translate: float,
    scale: float,
    shear: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """``M = T @ S @ R @ C`` (3x3) as the official: centre, rotate+scale, shear, translate. Returns (M, s)."""
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -src_hw[1] / 2, -src_hw[0] / 2
    angle = rng.uniform(-degrees, degrees)
    s = rng.uniform(1 - scale, 1 + scale)
    rot = np.eye(3)
    rot[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    sh = np.eye(3)
    sh[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    sh[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    tr = np.eye(3)
    tr[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * dst_hw[1]
    tr[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * dst_hw[0]
    return tr @ sh @ rot @ centre, s


def box_candidates(
    before: np.ndarray, after: np.ndarray, wh_thr: float = 2.0, ar_thr: float = 20.0, area_thr: float = 0.1
) -> np.ndarray:
    """Boxes worth keeping after a geometric transform (official thresholds).

    ``before``: ``[N, 4]`` boxes already multiplied by the transform's scale; ``after``: ``[N, 4]``
    transformed, clipped boxes. Keep when both sides > ``wh_thr`` px, area ratio > ``area_thr`` and
    aspect < ``ar_thr``. Returns a bool mask ``[N]``.
    """
    eps = 1e-16
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < ar_thr)


def random_affine(
    img: np.ndarray,
    boxes: np.ndarray,
    degrees: float,
    translate: float,
    scale: float,
    shear: float,
    new_shape: int | tuple[int, int],
    rng: np.random.Generator,
    border_value: int = PAD_VALUE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random rotation/scale/shear/translation of ``img`` into an output of ``new_shape`` (int or ``(H, W)``).

    A box becomes the min/max of its 4 transformed corners, clipped to the output; boxes failing
    :func:`box_candidates` are dropped. Returns ``(image [H, W, C], boxes [K, 4] float32 xyxy,
    kept int64 [K])`` where ``kept`` indexes the input boxes.
    """
    height, width = _hw(new_shape)
    m, s = _affine_matrix(img.shape[:2], (height, width), degrees, translate, scale, shear, rng)
    if img.shape[:2] != (height, width) or not np.array_equal(m, np.eye(3)):
        bv = (border_value,) * 3
        img = cv2.warpAffine(img, m[:2], dsize=(width, height), flags=cv2.INTER_LINEAR, borderValue=bv)
    else:
        img = img.copy()
    n = len(boxes)
    if n == 0:
        return img, _empty_boxes(), np.zeros(0, dtype=np.int64)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
    xy = (corners @ m.T)[:, :2].reshape(n, 8)
    xs, ys = xy[:, 0::2], xy[:, 1::2]
    new = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
    keep = np.flatnonzero(box_candidates(boxes.astype(np.float64) * s, new))
    return img, new[keep].astype(np.float32), keep.astype(np.int64)


def _resize_long_side(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize so the long side is ``size``; returns the image and the per-axis box scale ``[sx, sy, sx, sy]``."""
    h0, w0 = img.shape[:2]
    r = size / max(h0, w0)
    new_w, new_h = max(1, int(w0 * r)), max(1, int(h0 * r))
    if (new_w, new_h) != (w0, h0):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return img, np.array([new_w / w0, new_h / h0] * 2, dtype=np.float32)


def _tile_slices(
    i: int, xc: int, yc: int, h: int, w: int, size: int
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Canvas and tile rectangles ``(x1, y1, x2, y2)`` of tile ``i`` (0 top-left, 1 top-right, 2, 3 below)."""
    edge = 2 * size
    if i == 0:
        a = (max(xc - w, 0), max(yc - h, 0), xc, yc)
        b = (w - (a[2] - a[0]), h - (a[3] - a[1]), w, h)
    elif i == 1:
        a = (xc, max(yc - h, 0), min(xc + w, edge), yc)
        b = (0, h - (a[3] - a[1]), min(w, a[2] - a[0]), h)
    elif i == 2:
        a = (max(xc - w, 0), yc, xc, min(edge, yc + h))
        b = (w - (a[2] - a[0]), 0, w, min(a[3] - a[1], h))
    else:
        a = (xc, yc, min(xc + w, edge), min(edge, yc + h))
        b = (0, 0, min(w, a[2] - a[0]), min(a[3] - a[1], h))
    return a, b


def mosaic4(
    images: list[np.ndarray],
    boxes_list: list[np.ndarray],
    classes_list: list[np.ndarray],
    size: int,
    rng: np.random.Generator,
    config: AugmentConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four images around a random centre of a ``2S x 2S`` gray canvas, then :func:`random_affine` to S x S.

    Each image (any size, with its ``boxes [N_i, 4]`` xyxy and ``classes [N_i]``) is first resized so its
    long side is ``size``. The centre is uniform in ``[0.5, 1.5] * size``; the affine uses ``config``'s
    degrees/translate/scale/shear.
    Returns ``(image [S, S, 3] uint8, boxes [K, 4] float32 xyxy, classes [K] int64)``.
    """
    if len(images) != 4 or len(boxes_list) != 4 or len(classes_list) != 4:
        raise ValueError(f"mosaic4 takes exactly 4 images, boxes and classes; got {len(images)}")
    cfg = config or AugmentConfig()
    canvas = np.full((2 * size, 2 * size, images[0].shape[2]), PAD_VALUE, dtype=np.uint8)
    yc, xc = (int(rng.uniform(size // 2, 3 * size // 2)) for _ in range(2))
    all_boxes, all_classes = [], []
    for i, (img, boxes, classes) in enumerate(zip(images, boxes_list, classes_list, strict=True)):
        img, scale_xy = _resize_long_side(img, size)
        h, w = img.shape[:2]
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = _tile_slices(i, xc, yc, h, w, size)
        canvas[ay1:ay2, ax1:ax2] = img[by1:by2, bx1:bx2]
        offset = np.array([ax1 - bx1, ay1 - by1] * 2, dtype=np.float32)
        all_boxes.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale_xy + offset)
        all_classes.append(np.asarray(classes, dtype=np.int64))
    boxes = np.concatenate(all_boxes).clip(0, 2 * size)
    classes = np.concatenate(all_classes)
    out, new_boxes, kept = random_affine(
        canvas, boxes, cfg.degrees, cfg.translate, cfg.scale, cfg.shear, (size, size), rng
    )
    return out, new_boxes, classes[kept]


def mixup(img_a: np.ndarray, img_b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend two equal-shape uint8 images: ``a*r + b*(1-r)``, ``r ~ Beta(32, 32)``; labels are the union."""
    r = rng.beta(32.0, 32.0)
    return (img_a * r + img_b * (1 - r)).astype(np.uint8)
