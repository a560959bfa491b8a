"""Detections of one image: arrays in original-image pixels, drawing, saving and serialisation."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolov6_sdk.errors import ConfigError, ImageError, YOLOv6Error

_FONT_HEIGHT_AT_SCALE_1 = 22.0  # px: cv2.FONT_HERSHEY_SIMPLEX cap height at font scale 1
_LABEL_OPACITY = 0.65  # label bands let the picture show through

# fixed, readable colours per class id (BGR), cycled for ids beyond the palette
_PALETTE_HEX = [
    "FF3838",
    "FF9D97",
    "FF701F",
    "FFB21D",
    "CFD231",
    "48F90A",
    "92CC17",
    "3DDB86",
    "1A9334",
    "00D4BB",
    "2C99A8",
    "00C2FF",
    "344593",
    "6473FF",
    "0018EC",
    "8438FF",
    "520085",
    "CB38FF",
    "FF95C8",
    "FF37C7",
]
PALETTE_BGR = tuple((int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16)) for h in _PALETTE_HEX)


def class_color(class_id: int) -> tuple[int, int, int]:
    """BGR colour of ``class_id`` in the fixed palette."""
    return PALETTE_BGR[int(class_id) % len(PALETTE_BGR)]


def text_color(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background_bgr`` (ITU-R BT.601 luma)."""
    blue, green, red = background_bgr
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


class Results:
    """Detections of one image.

    Attributes:
        boxes: ``(N, 4)`` float32 xyxy in original-image pixels.
        scores: ``(N,)`` float32.
        class_ids: ``(N,)`` int64.
        names: class names, a list (index = class id) or a dict ``{id: name}``.
        orig_shape: ``(h, w)`` of the original image.
        path: source file of the image, or None.
        orig_img: the original HxWx3 uint8 BGR image, or None.
        speed: timings in milliseconds, e.g. ``{"preprocess": .., "inference": .., "postprocess": ..}``.
    """

    def __init__(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        names: Sequence[str] | Mapping[int, str],
        orig_shape: tuple[int, int],
        path: str | None = None,
        orig_img: np.ndarray | None = None,
        speed: Mapping[str, float] | None = None,
    ) -> None:
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        if not len(self.boxes) == len(self.scores) == len(self.class_ids):
            raise YOLOv6Error(
                f"Results needs one score and class id per box; got {len(self.boxes)} boxes, "
                f"{len(self.scores)} scores, {len(self.class_ids)} class ids"
            )
        self.names = names
        self.orig_shape = (int(orig_shape[0]), int(orig_shape[1]))
        self.path = None if path is None else str(path)
        self.orig_img = orig_img
        self.speed = dict(speed or {})

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int] | Sequence[bool]) -> Results:
        """Select detections by int, slice, boolean mask or index array; returns a new Results."""
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"detection index {index} out of range for {len(self)} detections")
            index = [int(index) % len(self)]
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.size == 0:
                index = index.astype(np.int64)
            elif index.dtype == bool and index.shape != (len(self),):
                raise IndexError(f"boolean mask of shape {index.shape} for {len(self)} detections")
        return self._select(index)

    def _select(self, index: Any) -> Results:
        return Results(
            self.boxes[index],
            self.scores[index],
            self.class_ids[index],
            self.names,
            self.orig_shape,
            self.path,
            self.orig_img,
            self.speed,
        )

    def name(self, class_id: int) -> str:
        """Class name of ``class_id`` (its number as text when ``names`` has no entry)."""
        class_id = int(class_id)
        if isinstance(self.names, Mapping):
            return str(self.names.get(class_id, class_id))
        return str(self.names[class_id]) if 0 <= class_id < len(self.names) else str(class_id)

    def filter(self, conf: float | None = None, classes: Sequence[int | str] | None = None) -> Results:
        """Detections with score >= ``conf`` and class in ``classes`` (ids or names); a new Results.

        Raises:
            ConfigError: a class name that is not in ``names``.
        """
        keep = np.ones(len(self), dtype=bool)
        if conf is not None:
            keep &= self.scores >= conf
        if classes is not None:
            keep &= np.isin(self.class_ids, self._class_ids_of(classes))
        return self._select(keep)

    def _class_ids_of(self, classes: Sequence[int | str]) -> np.ndarray:
        pairs = self.names.items() if isinstance(self.names, Mapping) else enumerate(self.names)
        by_name = {str(name): int(i) for i, name in pairs}
        ids = []
        for item in classes:
            if isinstance(item, str):
                if item not in by_name:
                    raise ConfigError(f"unknown class name {item!r}; valid names: {sorted(by_name)}")
                ids.append(by_name[item])
            else:
                ids.append(int(item))
        return np.asarray(ids, dtype=np.int64)

    def draw(self, image: np.ndarray | None = None, line_width: int | None = None, labels: bool = True) -> np.ndarray:
        """Draw labelled boxes on a copy of ``image`` (default: ``orig_img``); returns HxWx3 uint8 BGR.

        Sizes follow the picture so labels stay legible without hiding what they name: the line is about
        0.5 % of the short side (at least 1 px), the text about 3.5 % of it (at least 8 px tall). Each label
        sits on a translucent band of its class colour just above its box, or inside the box's top edge when
        the box touches the top of the picture, and is kept within the picture's width.

        Raises:
            ImageError: no image is given or stored, or its size differs from ``orig_shape``.
        """
        canvas = self._image_for_drawing(image).copy()
        short_side = min(self.orig_shape)
        width = line_width or max(round(short_side * 0.005), 1)
        font_scale = max(8.0, 0.035 * short_side) / _FONT_HEIGHT_AT_SCALE_1
        font_thickness = max(round(font_scale * 1.6), 1)
        for box, class_id in zip(self.boxes, self.class_ids, strict=True):
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), class_color(class_id), width, cv2.LINE_8)
        if labels:
            for box, score, class_id in zip(self.boxes, self.scores, self.class_ids, strict=True):
                self._draw_label(canvas, box, f"{self.name(class_id)} {score:.2f}", class_color(class_id),
                                 font_scale, font_thickness)  # fmt: skip
        return canvas

    @staticmethod
    def _draw_label(canvas: np.ndarray, box: np.ndarray, label: str, color: tuple[int, int, int], font_scale: float,
                    thickness: int) -> None:  # fmt: skip
        """Write ``label`` on a translucent ``color`` band above ``box`` (inside it at the top edge), in place."""
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        band_h = text_h + baseline + 2
        height, width_px = canvas.shape[:2]
        x1, y1 = int(round(float(box[0]))), int(round(float(box[1])))
        left = min(max(x1, 0), max(width_px - text_w - 2, 0))
        top = y1 - band_h if y1 - band_h >= 0 else max(min(y1, height - band_h), 0)
        region = canvas[top : top + band_h, left : left + text_w + 2]
        band = np.empty_like(region)
        band[:] = color
        cv2.addWeighted(band, _LABEL_OPACITY, region, 1.0 - _LABEL_OPACITY, 0.0, dst=region)
        cv2.putText(canvas, label, (left + 1, top + 1 + text_h), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    text_color(color), thickness, cv2.LINE_AA)  # fmt: skip

    def _image_for_drawing(self, image: np.ndarray | None) -> np.ndarray:
        image = self.orig_img if image is None else image
        if image is None:
            raise ImageError(
                f"no image to draw on for {self.path or 'these results'}: pass draw(image=...) or keep the "
                f"original image in Results.orig_img"
            )
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ImageError(f"draw expects an HxWx3 uint8 BGR image, got {got}")
        if image.shape[:2] != self.orig_shape:
            raise ImageError(
                f"image of size {image.shape[:2]} does not match the detections' image size {self.orig_shape}; "
                f"pass the original image (boxes are in its pixels)"
            )
        return image

    def save(self, path: str | Path, image: np.ndarray | None = None) -> Path:
        """Write the drawn image to ``path`` atomically (temp file in the same folder, then rename).

        The format follows the suffix (.jpg, .png, ...). Returns the path written.

        Raises:
            ImageError: no image to draw on, or OpenCV cannot encode the suffix.
        """
        path = Path(path)
        try:
            ok, encoded = cv2.imencode(path.suffix, self.draw(image))
        except cv2.error:
            ok = False
        if not ok:
            raise ImageError(f"cannot encode an image for {str(path)!r}; use a suffix such as .jpg or .png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(encoded.tobytes())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return path

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form: path, shape ``[h, w]``, speed and a list of detections.

        Each detection is ``{"box": [x1, y1, x2, y2], "score": s, "class_id": c, "name": n}`` in original
        image pixels.
        """
        detections = [
            {
                "box": [float(v) for v in box],
                "score": float(score),
                "class_id": int(class_id),
                "name": self.name(class_id),
            }
            for box, score, class_id in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]
        return {"path": self.path, "shape": list(self.orig_shape), "speed": self.speed, "detections": detections}

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        counts = Counter(self.name(c) for c in self.class_ids)
        summary = ", ".join(f"{n} {name}" for name, n in counts.most_common(5))
        more = ", ..." if len(counts) > 5 else ""
        body = f": {summary}{more}" if counts else ""
        return f"Results(path={self.path!r}, shape={self.orig_shape}, {len(self)} detections{body})"
