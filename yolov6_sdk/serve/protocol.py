"""The tensors and request options of the served model, shared by the server and the client.

One request carries one picture, in exactly one of two inputs (the leading axis of each is Triton's batch axis,
1 per request):

- ``image``: BYTES ``[1, 1]``: an encoded JPEG / PNG / BMP / WebP / TIFF file, decoded in the server with the
  SDK's header checks and pixel limit. Requests of any picture size are batched together by Triton.
- ``pixels``: UINT8 ``[1, H, W, 3]``: a decoded BGR picture (OpenCV's order). Triton batches only requests
  whose ``H`` and ``W`` are equal.

Per-request options are Triton request parameters: ``conf`` (score threshold, 0..1), ``iou`` (NMS IoU, 0..1),
``classes`` (class ids to keep: an int or a comma-separated string such as ``"0,2"``).

One response per request (after the batch axis; ``N`` detections, the rows padded to ``max(N, 1)`` as in
the EfficientNMS convention, because the transport inside pytriton cannot carry zero-size tensors):

- ``num_dets`` INT32 ``[1]``: ``N``;
- ``boxes`` FP32 ``[max(N, 1), 4]``: x1, y1, x2, y2 in original-picture pixels (rows past ``N`` are padding);
- ``scores`` FP32 ``[max(N, 1)]``; ``class_ids`` INT32 ``[max(N, 1)]``; ``names`` BYTES ``[max(N, 1)]``: each
  detection's class name;
- ``orig_shape`` INT32 ``[2]``: the picture's height and width;
- ``error`` BYTES ``[1]``: empty when the picture ran, else why it did not (a corrupt or oversized picture, a
  bad option). A bad request is answered through ``error`` because Triton fails every request of a batch
  together when the model raises; its other outputs are then empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yolov6_sdk.errors import ConfigError

MODEL_NAME = "yolov6"
IMAGE_INPUT = "image"
PIXELS_INPUT = "pixels"
OUTPUTS = ("num_dets", "boxes", "scores", "class_ids", "names", "orig_shape", "error")
OPTION_NAMES = ("conf", "iou", "classes")


@dataclass(frozen=True)
class RequestOptions:
    """Thresholds of one request; None: the server's default (its Detector's ``conf``, ``iou``, ``classes``)."""

    conf: float | None = None
    iou: float | None = None
    classes: tuple[int, ...] | None = None

    def as_parameters(self) -> dict[str, Any]:
        """The Triton request parameters that carry these options (unset ones left out)."""
        parameters: dict[str, Any] = {}
        if self.conf is not None:
            parameters["conf"] = str(self.conf)
        if self.iou is not None:
            parameters["iou"] = str(self.iou)
        if self.classes is not None:
            parameters["classes"] = ",".join(str(c) for c in self.classes)
        return parameters


def parse_options(parameters: Mapping[str, Any] | None, num_classes: int) -> RequestOptions:
    """Check a request's parameters: known names, thresholds in 0..1, class ids in ``0..num_classes-1``.

    Thresholds may arrive as numbers or strings (curl users write ``"conf": 0.5``, tritonclient sends strings).

    Raises:
        ConfigError: an unknown option, or a value out of range, naming the option and what it takes.
    """
    parameters = dict(parameters or {})
    unknown = sorted(set(parameters) - set(OPTION_NAMES))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; this model takes {list(OPTION_NAMES)}")
    conf = _threshold(parameters, "conf")
    iou = _threshold(parameters, "iou")
    classes = _class_ids(parameters["classes"], num_classes) if "classes" in parameters else None
    return RequestOptions(conf, iou, classes)


def _threshold(parameters: Mapping[str, Any], name: str) -> float | None:
    if name not in parameters:
        return None
    raw = parameters[name]
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"option {name} must be a number in 0..1, got {raw!r}")
    return value


def _class_ids(raw: Any, num_classes: int) -> tuple[int, ...]:
    items = [raw] if isinstance(raw, int) and not isinstance(raw, bool) else str(raw).split(",")
    try:
        ids = tuple(int(str(item).strip()) for item in items)
    except ValueError:
        ids = ()
    if not ids or any(not 0 <= c < max(num_classes, 1) for c in ids):
        raise ConfigError(
            f"option classes must be class ids in 0..{max(num_classes - 1, 0)} as an int or a comma-separated "
            f'string such as "0,2", got {raw!r}'
        )
    return ids
