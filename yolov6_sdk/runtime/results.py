"""Detections of one image: arrays in original-image pixels, drawing, saving and serialisation."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.errors import ConfigError, ImageError, OutputError, YOLOv6Error
from yolov6_sdk.fileio import check_output_folder, write_output
from yolov6_sdk.runtime.boxes import Boxes
from yolov6_sdk.runtime.results_idioms import ResultsIdioms, default_save_name
from yolov6_sdk.runtime.safe_names import display_name, path_component

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


CSV_COLUMNS = ("source", "frame", "class_id", "name", "conf", "x1", "y1", "x2", "y2")
MAX_CSV_NAME_CHARS = 256  # a class name in a CSV cell: control characters escaped, longer names cut
MAX_CSV_SOURCE_CHARS = 4096  # the source column (a path or URL), escaped the same way


def _write_image(path: Path, image: np.ndarray, what: str) -> Path:
    if path.is_dir():
        raise OutputError(f"{what} {str(path)!r} is a folder; pass a file path such as {str(path / 'out.jpg')!r}")
    try:
        ok, encoded = cv2.imencode(path.suffix, image)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError(f"cannot encode an image for {str(path)!r}; use a suffix such as .jpg or .png")
    return write_output(path, encoded.tobytes(), what)


class Results(ResultsIdioms):
    """Detections of one image (``summary``, ``to_df``, ``show``, ``cpu``, ``numpy``: :class:`ResultsIdioms`).

    Attributes:
        boxes: a :class:`~yolov6_sdk.runtime.boxes.Boxes`: the ``(N, 4)`` float32 xyxy array in original-image
            pixels, with the views ``xyxy``, ``xywh``, ``xyxyn``, ``xywhn``, ``conf`` and ``cls``.
        scores: ``(N,)`` float32, the same array as ``boxes.conf``.
        class_ids: ``(N,)`` int64, the same array as ``boxes.cls``.
        names: class names, a list (index = class id) or a dict ``{id: name}``.
        orig_shape: ``(h, w)`` of the original image.
        path: source of the image (a file, a video or a stream), or None.
        frame: index of the frame within a video or stream (from 0), None for a still image.
        orig_img: the original HxWx3 uint8 BGR image at full size, or None. Detections made on a picture decoded
            below full size (``Detector(..., reduced_decode=True)``) get it from ``orig_img_loader`` on first use
            (it decodes the file again), so it is never the small picture the model saw.
        speed: timings in milliseconds, e.g. ``{"preprocess": .., "inference": .., "postprocess": ..}``.
        error: why this input gave no detections because it could not be read or run (``Detector(...,
            errors="skip")``), or None for an input that ran.
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
        frame: int | None = None,
        error: str | None = None,
        orig_img_loader: Callable[[], np.ndarray] | None = None,
    ) -> None:
        self.boxes = Boxes(boxes, scores, class_ids, orig_shape)
        if not len(self.boxes) == len(self.scores) == len(self.class_ids):
            raise YOLOv6Error(
                f"Results needs one score and class id per box; got {len(self.boxes)} boxes, "
                f"{len(self.scores)} scores, {len(self.class_ids)} class ids"
            )
        self.names = names
        self.orig_shape = (int(orig_shape[0]), int(orig_shape[1]))
        self.path = None if path is None else str(path)
        self.frame = None if frame is None else int(frame)
        self._orig_img = orig_img
        self._orig_img_loader = None if orig_img is not None else orig_img_loader
        self.speed = dict(speed or {})
        self.error = error

    @property
    def orig_img(self) -> np.ndarray | None:
        """The original HxWx3 uint8 BGR image (loaded by ``orig_img_loader`` on first use), or None."""
        if self._orig_img is None and self._orig_img_loader is not None:
            self._orig_img, self._orig_img_loader = self._orig_img_loader(), None
        return self._orig_img

    @orig_img.setter
    def orig_img(self, image: np.ndarray | None) -> None:
        self._orig_img, self._orig_img_loader = image, None

    @classmethod
    def failed(cls, path: str | None, error: str, names: Sequence[str] | Mapping[int, str]) -> Results:
        """The Results of an input that could not be read or run: no detections, ``error`` set."""
        empty = np.zeros((0, 4), dtype=np.float32)
        return cls(empty, empty[:, 0], np.zeros(0, dtype=np.int64), names, (0, 0), path=path, error=error)

    @property
    def ok(self) -> bool:
        """True when the input ran (``error`` is None)."""
        return self.error is None

    @property
    def scores(self) -> np.ndarray:
        """``(N,)`` float32 scores (``boxes.conf``)."""
        return self.boxes.conf

    @property
    def class_ids(self) -> np.ndarray:
        """``(N,)`` int64 class ids (``boxes.cls``)."""
        return self.boxes.cls

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
            self._orig_img,
            self.speed,
            self.frame,
            self.error,
            self._orig_img_loader,
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

    def plot(
        self, image: np.ndarray | None = None, line_width: int | None = None, labels: bool = True, conf: bool = True
    ) -> np.ndarray:
        """Draw labelled boxes on a copy of ``image`` (default: ``orig_img``); returns HxWx3 uint8 BGR.

        ``labels=False`` draws the boxes only; ``conf=False`` leaves the score out of each label;
        ``line_width`` in px (None: the size rule below).

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
                name = display_name(self.name(class_id))
                label = f"{name} {score:.2f}" if conf else name
                self._draw_label(canvas, box, label, class_color(class_id), font_scale, font_thickness)
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
                f"no image to draw on for {self.path or 'these results'}: pass plot(image=...) or keep the "
                f"original image in Results.orig_img"
            )
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ImageError(f"plot expects an HxWx3 uint8 BGR image, got {got}")
        if image.shape[:2] != self.orig_shape:
            raise ImageError(
                f"image of size {image.shape[:2]} does not match the detections' image size {self.orig_shape}; "
                f"pass the original image (boxes are in its pixels)"
            )
        return image

    def save(self, path: str | Path | None = None, image: np.ndarray | None = None, **plot_options: Any) -> Path:
        """Write the drawn image to ``path`` atomically (temp file in the same folder, then rename).

        The format follows the suffix (.jpg, .png, ...); ``path`` None: ``results_<source name>`` in the current
        folder (:func:`~yolov6_sdk.runtime.results_idioms.default_save_name`). ``plot_options``: ``line_width``,
        ``labels``, ``conf`` as in :meth:`plot`. Returns the path written.

        Raises:
            ImageError: no image to draw on, or OpenCV cannot encode the suffix.
            OutputError: ``path`` cannot be written (a file in the way, a folder there, no permission).
        """
        target = default_save_name(self.path, self.frame) if path is None else Path(path)
        return _write_image(target, self.plot(image, **plot_options), "save")

    draw = plot  # the earlier name of plot()

    def save_txt(self, path: str | Path, save_conf: bool = False) -> Path:
        """Write the detections as a YOLO label file (atomically); returns the path written.

        One line per detection: ``class cx cy w h`` with the box centre and size divided by the image width
        and height (0..1, six decimals), plus `` conf`` when ``save_conf``. No detections: an empty file (a
        YOLO label file of an image without objects).

        Raises:
            OutputError: ``path`` cannot be written (a file in the way, a folder there, no permission).
        """
        rows = np.concatenate((self.boxes.xywhn, self.scores[:, None]), axis=1)
        lines = [
            f"{class_id} " + " ".join(f"{v:.6f}" for v in (row if save_conf else row[:4]))
            for class_id, row in zip(self.class_ids.tolist(), rows, strict=True)
        ]
        return write_output(path, "".join(line + "\n" for line in lines).encode(), "save_txt")

    def save_crop(self, folder: str | Path, suffix: str = ".jpg") -> list[Path]:
        """Save each detection's region of ``orig_img`` as ``<folder>/<class>/<stem>[_f<frame>]_<i>.<suffix>``.

        ``class`` is the class name made one safe file-name component
        (:func:`~yolov6_sdk.runtime.safe_names.path_component`: no separators, ``..``, control characters or
        hidden names; the class id when nothing is left), so every crop lands inside ``folder`` whatever the
        model file names its classes. ``stem`` is the source's file stem ("image" without a source) and ``i``
        the detection's index; a box is widened to whole pixels (floor of x1, y1, ceiling of x2, y2) and kept at
        least 1 px. Returns the paths written, in detection order.

        Raises:
            ImageError: no original image is stored, or OpenCV cannot encode ``suffix``.
            ConfigError: ``suffix`` is not a file suffix such as ``.jpg``.
            OutputError: ``folder`` cannot be written (a file in the way, no permission).
        """
        if not (isinstance(suffix, str) and suffix[:1] == "." and path_component(suffix[1:], "") == suffix[1:]):
            raise ConfigError(f"save_crop suffix must be a file suffix such as '.jpg' or '.png', got {suffix!r}")
        image = self._image_for_drawing(None)
        if len(self):
            check_output_folder(folder, "save_crop folder", OutputError)
        height, width = self.orig_shape
        stem = path_component(Path(self.path).stem, "image") if self.path else "image"
        if self.frame is not None:
            stem = f"{stem}_f{self.frame}"
        written = []
        for i, (box, class_id) in enumerate(zip(self.boxes, self.class_ids, strict=True)):
            x1 = min(max(int(np.floor(box[0])), 0), width - 1)
            y1 = min(max(int(np.floor(box[1])), 0), height - 1)
            x2 = min(max(int(np.ceil(box[2])), x1 + 1), width)
            y2 = min(max(int(np.ceil(box[3])), y1 + 1), height)
            target = Path(folder) / path_component(self.name(class_id), str(int(class_id))) / f"{stem}_{i}{suffix}"
            written.append(_write_image(target, image[y1:y2, x1:x2], "save_crop"))
        return written

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form: source, frame, shape ``[h, w]``, speed and a list of detections.

        ``path`` and ``source`` both name the image's source (``path`` is the earlier key); ``frame`` is the
        video frame index (from 0) or None; ``error`` is present only for an input that failed. Each detection
        is ``{"box": [x1, y1, x2, y2], "score": s,
        "class_id": c, "name": n}`` in original image pixels.
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
        return {
            "source": self.path,
            "path": self.path,
            "frame": self.frame,
            "shape": list(self.orig_shape),
            "speed": self.speed,
            "detections": detections,
            **({"error": self.error} if self.error is not None else {}),
        }

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self, header: bool = True) -> str:
        """The detections as CSV text, one row each: ``source, frame, class_id, name, conf, x1, y1, x2, y2``.

        Boxes in original-image pixels; ``frame`` empty for a still image. ``header`` adds the column names, so
        rows of many images or frames can be joined under one header. Control characters in a name or source are
        escaped (a carriage return becomes the two characters ``\\r``), so every row is one line that
        ``csv.reader`` reads back; a name longer than :data:`MAX_CSV_NAME_CHARS` is cut.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if header:
            writer.writerow(CSV_COLUMNS)
        frame = "" if self.frame is None else self.frame
        for box, score, class_id in zip(self.boxes, self.scores, self.class_ids, strict=True):
            coords = [f"{float(v):.2f}" for v in box]
            name = display_name(self.name(class_id), MAX_CSV_NAME_CHARS)
            writer.writerow([display_name(self.path or "", MAX_CSV_SOURCE_CHARS), frame, int(class_id), name,
                             f"{score:.5f}", *coords])  # fmt: skip
        return buffer.getvalue()

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` of these detections (``xyxy``, ``confidence``, ``class_id`` and the
        ``class_name`` data field).

        Raises:
            MissingDependencyError: supervision is not installed (``pip install supervision``).
        """
        sv = require("supervision")
        class_names = np.array([self.name(c) for c in self.class_ids], dtype=object)  # no copy padded to the longest
        return sv.Detections(
            xyxy=self.boxes.xyxy,
            confidence=self.scores.copy(),
            class_id=self.class_ids.copy(),
            data={"class_name": class_names},
        )

    def __repr__(self) -> str:
        counts = Counter(display_name(self.name(c)) for c in self.class_ids)
        summary = ", ".join(f"{n} {name}" for name, n in counts.most_common(5))
        more = ", ..." if len(counts) > 5 else ""
        body = f": {summary}{more}" if counts else ""
        return f"Results(path={self.path!r}, shape={self.orig_shape}, {len(self)} detections{body})"
