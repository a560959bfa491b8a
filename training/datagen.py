"""Seeded generator of a synthetic detection dataset in COCO 2017 layout.

Writes ``<root>/images/{train,val}/*.jpg`` and ``<root>/annotations/instances_{train,val}.json``. Images show
1-6 shapes and glyphs of varied size (12 % to 60 % of the image's short side, at least 12 px), colour, rotation
and aspect ratio on textured backgrounds with clutter lines as distractors, drawn in order so later objects
occlude earlier ones. A new object is placed where it hides at most ``MAX_HIDDEN_FRACTION`` of any earlier
object and keeps most of itself inside the picture (up to ``PLACEMENT_TRIES`` positions are tried), so
occlusion is present but rarely leaves an object unrecognisable. Each annotation box is the extent of the
object's *visible* pixels; objects with less than 40 % of their pixels visible are not annotated.
The same seed gives the same bytes (numpy ``Generator`` + cv2 drawing only, JPEG at a fixed quality).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.fileio import atomic_path

LOGGER = logging.getLogger("yolov6_sdk.training.datagen")

CLASS_NAMES = (
    "circle", "square", "triangle", "star", "ring", "cross",
    "hexagon", "arrow", "crescent", "letter_A", "letter_G", "letter_K",
)  # fmt: skip
JPEG_QUALITY = 90
MIN_VISIBLE_FRACTION = 0.4  # objects more than 60 % hidden (occluded or cut by the border) get no box
MIN_BOX_SIDE = 4  # px; smaller visible extents get no box
MAX_OBJECTS = 6  # objects drawn per image: 1..MAX_OBJECTS
MAX_HIDDEN_FRACTION = 0.3  # a new object may cover at most this share of an earlier object's visible pixels
MIN_INSIDE_FRACTION = 0.8  # ... and must keep this share of its own pixels inside the picture
PLACEMENT_TRIES = 8  # positions tried per object before the last one is taken as it is
_SPLIT_STREAM = {"train": 0, "val": 1, "calibration": 2}


def _regular(n: int, r_alt: float | None = None) -> np.ndarray:
    """Unit polygon with ``n`` corners (a star when ``r_alt`` gives the inner radius), first corner up."""
    count = 2 * n if r_alt else n
    ang = -math.pi / 2 + np.arange(count) * 2 * math.pi / count
    radius = np.where(np.arange(count) % 2 == 1, r_alt, 1.0) if r_alt else np.ones(count)
    return np.stack([radius * np.cos(ang), radius * np.sin(ang)], axis=1)


def _cross(t: float) -> np.ndarray:
    """Unit plus sign with arms of half-width ``t``: one arm's 3 corners turned by 0, 90, 180 and 270 degrees."""
    arm = np.array([[-t, -1.0], [t, -1.0], [t, -t]])
    quarter = np.array([[0.0, -1.0], [1.0, 0.0]])  # (x, y) -> (-y, x)
    return np.concatenate([arm @ np.linalg.matrix_power(quarter, k).T for k in range(4)])


_POLYGONS = {
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64),
    "triangle": np.array([[0, -1], [1, 1], [-1, 1]], dtype=np.float64),
    "star": _regular(5, 0.45),
    "cross": _cross(0.3),
    "hexagon": _regular(6),
    "arrow": np.array(
        [[-1, -0.3], [0.2, -0.3], [0.2, -0.8], [1, 0], [0.2, 0.8], [0.2, 0.3], [-1, 0.3]], dtype=np.float64
    ),
}
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing


@functools.cache
def _glyph(letter: str) -> np.ndarray:
    """Tight uint8 0/255 mask of a letter drawn with cv2's Hershey simplex font."""
    canvas = np.zeros((120, 120), dtype=np.uint8)
    cv2.putText(canvas, letter, (15, 100), cv2.FONT_HERSHEY_SIMPLEX, 3.0, 255, 9, cv2.LINE_8)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy()


def _local_frame(cx: float, cy: float, half_w: float, half_h: float, angle: float) -> tuple[int, int, int, int]:
    """Integer bounding rectangle ``(x0, y0, width, height)`` of a rotated ``2*half_w x 2*half_h`` box."""
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    ex, ey = half_w * c + half_h * s, half_w * s + half_h * c
    x0, y0 = math.floor(cx - ex) - 1, math.floor(cy - ey) - 1
    return x0, y0, math.ceil(cx + ex) + 2 - x0, math.ceil(cy + ey) + 2 - y0


def _render(kind: str, cx: float, cy: float, w: float, h: float, angle: float) -> tuple[np.ndarray, int, int]:
    """Binary mask (uint8 0/1) of one object in a local window; returns ``(mask, x0, y0)`` in image pixels."""
    x0, y0, lw, lh = _local_frame(cx, cy, w / 2, h / 2, angle)
    mask = np.zeros((lh, lw), dtype=np.uint8)
    lcx, lcy = cx - x0, cy - y0
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    scale = 1 << _SHIFT
    if kind in _POLYGONS:
        pts = (_POLYGONS[kind] * [w / 2, h / 2]) @ rot.T + [lcx, lcy]
        cv2.fillPoly(mask, [np.round(pts * scale).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    elif kind in ("circle", "ring", "crescent"):
        deg = math.degrees(angle)

        def ellipse(ecx: float, ecy: float, ax: float, ay: float, value: int) -> None:
            centre = (round(ecx * scale), round(ecy * scale))
            axes = (max(1, round(ax * scale)), max(1, round(ay * scale)))
            cv2.ellipse(mask, centre, axes, deg, 0, 360, value, -1, cv2.LINE_8, _SHIFT)

        ellipse(lcx, lcy, w / 2, h / 2, 1)
        if kind == "ring":
            ellipse(lcx, lcy, 0.55 * w / 2, 0.55 * h / 2, 0)
        elif kind == "crescent":
            dx, dy = rot @ [0.45 * w / 2, 0.0]
            ellipse(lcx + dx, lcy + dy, 0.85 * w / 2, 0.9 * h / 2, 0)
    else:  # letter_X
        glyph = _glyph(kind.split("_")[1])
        gh, gw = glyph.shape
        lin = rot @ np.diag([w / gw, h / gh])
        offset = np.array([lcx, lcy]) - lin @ [gw / 2, gh / 2]
        warp = np.hstack([lin, offset[:, None]])
        mask = (cv2.warpAffine(glyph, warp, (lw, lh), flags=cv2.INTER_LINEAR) > 127).astype(np.uint8)
    return mask, x0, y0


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Photo-like float32 ``[h, w, 3]`` background: gradient, colour clouds, blurred blobs, stripes, clutter.

    The smooth layers are drawn at quarter resolution and upsampled, which keeps generation fast.
    """
    lh, lw = max(h // 4, 8), max(w // 4, 8)
    xs, ys = np.arange(lw, dtype=np.float32)[None, :], np.arange(lh, dtype=np.float32)[:, None]
    theta = rng.uniform(0, 2 * math.pi)
    t = xs * math.cos(theta) + ys * math.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c1, c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    low = c1 + (c2 - c1) * t[..., None]
    clouds = rng.normal(0, 35, (int(rng.integers(2, 8)), int(rng.integers(2, 8)), 3)).astype(np.float32)
    low += cv2.resize(clouds, (lw, lh), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(3, 10))):  # soft blobs
        centre = (int(rng.integers(0, lw)), int(rng.integers(0, lh)))
        axes = (int(rng.integers(2, max(3, lw // 3))), int(rng.integers(2, max(3, lh // 3))))
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cv2.ellipse(low, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    low = cv2.GaussianBlur(low, (0, 0), float(rng.uniform(0.75, 2.25)))
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.4:
        xs, ys = np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]
        phi, period = rng.uniform(0, math.pi), rng.uniform(6, 40)
        wave = np.sin(np.float32(2 * math.pi / period) * (xs * math.cos(phi) + ys * math.sin(phi)))
        img += (np.float32(rng.uniform(10, 30)) * wave)[..., None]
    for _ in range(int(rng.integers(0, 6))):  # thin clutter lines, never annotated
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p1, p2, tuple(float(v) for v in rng.uniform(0, 255, 3)), int(rng.integers(1, 3)))
    return img


def _object_size(rng: np.random.Generator, short_side: int) -> float:
    """Long side of an object in px, as a fraction of the image's short side: 20 % small (0.12-0.2),
    50 % medium (0.2-0.35), 30 % large (0.35-0.6); never under 12 px."""
    u = rng.random()
    lo, hi = (0.12, 0.2) if u < 0.2 else (0.2, 0.35) if u < 0.7 else (0.35, 0.6)
    return max(12.0, short_side * float(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def _contrasting_colour(rng: np.random.Generator, patch: np.ndarray) -> np.ndarray:
    colour = rng.uniform(0, 255, 3)
    mean = patch.reshape(-1, 3).mean(0) if patch.size else np.full(3, 127.0)
    if np.linalg.norm(colour - mean) < 90:
        colour = (mean + 128) % 256
    return colour.astype(np.float32)


def _clip(mask: np.ndarray, x0: int, y0: int, h: int, w: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The part of a local ``mask`` (placed at ``x0, y0``) inside an ``h x w`` image: its window
    ``(x1, y1, x2, y2)`` in image pixels and the mask's bool pixels in that window."""
    x1, y1 = max(x0, 0), max(y0, 0)
    x2, y2 = min(x0 + mask.shape[1], w), min(y0 + mask.shape[0], h)
    return (x1, y1, x2, y2), mask[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0].astype(bool)


def _place(
    rng: np.random.Generator, kind: str, size: tuple[float, float, float], id_map: np.ndarray, visible: list[int]
) -> tuple[np.ndarray, int, int]:
    """Render ``kind`` (``size`` = width, height px, angle rad) at a random position that hides at most
    ``MAX_HIDDEN_FRACTION`` of each earlier object (``visible[k]``: its visible pixels in ``id_map``) and keeps
    ``MIN_INSIDE_FRACTION`` of itself inside the image; after ``PLACEMENT_TRIES`` the last position is used.

    Returns ``(mask uint8 0/1, x0, y0)`` as :func:`_render` does.
    """
    h, w = id_map.shape
    for _ in range(PLACEMENT_TRIES):
        mask, x0, y0 = _render(kind, rng.uniform(0, w), rng.uniform(0, h), *size)
        (x1, y1, x2, y2), sub = _clip(mask, x0, y0, h, w)
        if sub.sum() < MIN_INSIDE_FRACTION * mask.sum():
            continue
        owners = id_map[y1:y2, x1:x2][sub]
        hidden = np.bincount(owners[owners >= 0], minlength=len(visible))
        if all(hidden[k] <= MAX_HIDDEN_FRACTION * visible[k] for k in range(len(visible))):
            break
    return mask, x0, y0


def _draw_objects(rng: np.random.Generator, img: np.ndarray, num_classes: int) -> list[tuple[int, list[int], int]]:
    """Draw 1-``MAX_OBJECTS`` objects onto float32 ``img [H, W, 3]`` in place, later ones over earlier ones.

    Returns ``(class index, [x1, y1, x2, y2] visible pixel-edge box, visible pixel count)`` per
    annotated object.
    """
    h, w = img.shape[:2]
    id_map = np.full((h, w), -1, dtype=np.int16)  # which object owns each pixel
    drawn: list[tuple[int, int, tuple[int, int, int, int], int]] = []
    visible: list[int] = []  # visible pixels of object k so far
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        cls = int(rng.integers(num_classes))
        kind = CLASS_NAMES[cls]
        size = _object_size(rng, min(h, w))
        aspect = math.exp(rng.uniform(math.log(0.75 if kind.startswith("letter") else 0.6), math.log(1.6)))
        ow, oh = size * min(1.0, aspect), size * min(1.0, 1 / aspect)
        mask, x0, y0 = _place(rng, kind, (ow, oh, rng.uniform(0, 2 * math.pi)), id_map, visible)
        (x1, y1, x2, y2), sub = _clip(mask, x0, y0, h, w)
        if not sub.any():
            continue
        colour = _contrasting_colour(rng, img[y1:y2, x1:x2][sub])
        ramp = np.linspace(1 - rng.uniform(0, 0.3), 1 + rng.uniform(0, 0.3), x2 - x1, dtype=np.float32)
        shaded = np.broadcast_to(colour * ramp[:, None], (y2 - y1, x2 - x1, 3))
        img[y1:y2, x1:x2][sub] = shaded[sub]
        owners = id_map[y1:y2, x1:x2][sub]
        for k, count in enumerate(np.bincount(owners[owners >= 0], minlength=len(visible))):
            visible[k] -= int(count)
        k = len(visible)
        id_map[y1:y2, x1:x2][sub] = k
        visible.append(int(sub.sum()))
        drawn.append((cls, k, (x1, y1, x2, y2), int(mask.sum())))
    return _annotate(id_map, drawn)


def _annotate(
    id_map: np.ndarray, drawn: list[tuple[int, int, tuple[int, int, int, int], int]]
) -> list[tuple[int, list[int], int]]:
    """Visible-extent boxes from the owner map ``id_map [H, W]`` (object id per pixel, -1 background).

    ``drawn``: ``(class, object id, window (x1, y1, x2, y2) in the image, total mask pixels)`` per object.
    Objects with less than ``MIN_VISIBLE_FRACTION`` of their pixels visible, or a visible extent thinner than
    ``MIN_BOX_SIDE``, get no annotation.
    """
    annotations = []
    for cls, k, (x1, y1, x2, y2), total in drawn:
        vis = id_map[y1:y2, x1:x2] == k
        count = int(vis.sum())
        if count == 0 or count < MIN_VISIBLE_FRACTION * total:
            continue
        cols, rows = np.flatnonzero(vis.any(0)), np.flatnonzero(vis.any(1))
        box = [x1 + int(cols[0]), y1 + int(rows[0]), x1 + int(cols[-1]) + 1, y1 + int(rows[-1]) + 1]
        if min(box[2] - box[0], box[3] - box[1]) >= MIN_BOX_SIDE:
            annotations.append((cls, box, count))
    return annotations


def _image_size(rng: np.random.Generator, imgsz: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return imgsz, imgsz
    lo, hi = imgsz
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def make_image(
    rng: np.random.Generator, imgsz: int | tuple[int, int], num_classes: int
) -> tuple[np.ndarray, list[tuple[int, list[int], int]]]:
    """One synthetic image: ``(uint8 [H, W, 3] BGR, [(class index, [x1, y1, x2, y2] px, area px)])``.

    ``imgsz`` is a side length or a ``(min, max)`` range each side is drawn from.
    """
    h, w = _image_size(rng, imgsz)
    img = _background(rng, h, w)
    annotations = _draw_objects(rng, img, num_classes)
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(rng.uniform(2, 8))  # sensor noise
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return np.clip(img, 0, 255).astype(np.uint8), annotations


def _write_jpeg(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"cv2 could not encode {path} as JPEG")
    path.write_bytes(buf.tobytes())


def _check_args(imgsz: int | tuple[int, int], num_classes: int, counts: Sequence[int]) -> None:
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ConfigError(f"num_classes={num_classes}: expected 1..{len(CLASS_NAMES)} ({', '.join(CLASS_NAMES)})")
    sizes = (imgsz,) if isinstance(imgsz, int) else tuple(imgsz)
    if len(sizes) not in (1, 2) or min(sizes) < 64 or sizes[0] > sizes[-1]:
        raise ConfigError(f"imgsz={imgsz!r}: expected a side >= 64 px or a (min, max) range with 64 <= min <= max")
    if min(counts) < 0:
        raise ConfigError(f"image counts {tuple(counts)}: expected numbers >= 0")


def _write_split(root: Path, split: str, count: int, imgsz: int | tuple[int, int], seed: int, nc: int) -> None:
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], i])
        img, objects = make_image(rng, imgsz, nc)
        name = f"{i + 1:012d}.jpg"
        _write_jpeg(image_dir / name, img)
        images.append({"id": i + 1, "file_name": name, "width": img.shape[1], "height": img.shape[0]})
        for cls, (x1, y1, x2, y2), area in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "area": float(area),
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
    coco = {
        "info": {"description": f"yolov6-sdk synthetic shapes, seed {seed}", "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": CLASS_NAMES[c], "supercategory": "shape"} for c in range(nc)],
    }
    with atomic_path(
        root / "annotations" / f"instances_{split}.json"
    ) as tmp:  # written last: its presence means complete
        tmp.write_text(json.dumps(coco, separators=(",", ":")))
    LOGGER.info("wrote %d %s images with %d boxes under %s", count, split, len(annotations), root)


def generate_dataset(
    root: str | Path,
    num_train: int = 200,
    num_val: int = 50,
    imgsz: int | tuple[int, int] = (320, 640),
    seed: int = 0,
    num_classes: int = 8,
) -> Path:
    """Write a synthetic COCO-layout detection set under ``root`` and return ``root`` as a Path.

    ``imgsz``: a side length, or a ``(min, max)`` range from which each image's height and width are drawn.
    Categories have ids ``1..num_classes`` named from :data:`CLASS_NAMES`; boxes are COCO ``[x, y, w, h]``
    in pixels. Same arguments, same bytes.
    """
    _check_args(imgsz, num_classes, (num_train, num_val))
    root = Path(root)
    _write_split(root, "train", num_train, imgsz, seed, num_classes)
    _write_split(root, "val", num_val, imgsz, seed, num_classes)
    return root


def write_calibration_images(
    folder: str | Path,
    count: int,
    seed: int = 0,
    imgsz: int | tuple[int, int] = (320, 640),
    num_classes: int = 8,
) -> list[Path]:
    """Write ``count`` unannotated synthetic JPEGs (a random stream apart from the train/val images)."""
    _check_args(imgsz, num_classes, (count,))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img, _ = make_image(np.random.default_rng([seed, _SPLIT_STREAM["calibration"], i]), imgsz, num_classes)
        paths.append(folder / f"calib_{i:05d}.jpg")
        _write_jpeg(paths[-1], img)
    return paths
