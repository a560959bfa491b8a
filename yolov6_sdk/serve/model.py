"""The served model: a batch of Triton requests in, one response per request, one Detector run per batch.

:class:`DetectorModel` is the inference callable bound to Triton (pytriton hands it every request of a
dynamic batch). Each request's picture is decoded and checked alone; the good ones run together through one
:meth:`~yolov6_sdk.runtime.detector.Detector.predict_batch` call, which letterboxes each picture at its own
scale into one input batch, so pictures of different sizes share one model call. A request that fails its
checks is answered through its ``error`` output, and the others of its batch run (see :mod:`.protocol`).

Per-request options: the batch runs at the lowest ``conf`` any of its requests asks for and without a class
filter, then each request keeps its own ``conf`` and ``classes``; this equals running each request alone
(NMS keeps or drops a box by the higher-scoring boxes only, per class). Requests asking for different ``iou``
run as one model call per ``iou`` value.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from yolov6_sdk.artifact.images import as_bgr_uint8, decode_image
from yolov6_sdk.errors import YOLOv6Error
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.serve.protocol import IMAGE_INPUT, PIXELS_INPUT, RequestOptions, parse_options

LOGGER = logging.getLogger(__name__)


class DetectorModel:
    """Runs Triton request batches on one :class:`Detector` (one model instance; calls are serialised).

    Attributes:
        batch_sizes: how many batches of each size this instance has run (for the load test and logs).
    """

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.batch_sizes: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """One response dict (output name -> array with a leading batch axis of 1) per request, in order."""
        with self._lock:
            self.batch_sizes[len(requests)] += 1
            responses: list[dict[str, np.ndarray] | None] = [None] * len(requests)
            pending: dict[float, list[tuple[int, np.ndarray, RequestOptions]]] = {}
            for index, request in enumerate(requests):
                try:
                    image, options = self._read(request, index)
                except YOLOv6Error as exc:
                    responses[index] = error_response(str(exc))
                    continue
                iou = self.detector.iou if options.iou is None else options.iou
                pending.setdefault(iou, []).append((index, image, options))
            for iou, group in pending.items():
                for (index, _, _), result in zip(group, self._run(iou, group), strict=True):
                    responses[index] = result_response(result)
            return [response or error_response("no response was made") for response in responses]

    def _read(self, request: Any, index: int) -> tuple[np.ndarray, RequestOptions]:
        """The BGR picture and options of one request (see :mod:`.protocol`)."""
        options = parse_options(getattr(request, "parameters", None), len(self.detector.names))
        data = dict(request.items())
        if (IMAGE_INPUT in data) == (PIXELS_INPUT in data):
            raise YOLOv6Error(f"send exactly one of the inputs {IMAGE_INPUT!r} (encoded bytes) or {PIXELS_INPUT!r}")
        if IMAGE_INPUT in data:
            encoded = np.asarray(data[IMAGE_INPUT]).reshape(-1)
            if encoded.size != 1:
                raise YOLOv6Error(f"input {IMAGE_INPUT!r} takes one encoded picture per request, got {encoded.size}")
            return decode_image(bytes(encoded[0]), f"request {index} ({IMAGE_INPUT})"), options
        pixels = np.asarray(data[PIXELS_INPUT])
        if pixels.ndim != 4 or pixels.shape[0] != 1 or 0 in pixels.shape:
            raise YOLOv6Error(f"input {PIXELS_INPUT!r} must be one non-empty HxWx3 picture, got shape {pixels.shape}")
        return as_bgr_uint8(pixels[0], f"request {index} ({PIXELS_INPUT})"), options

    def _run(self, iou: float, group: list[tuple[int, np.ndarray, RequestOptions]]) -> list[Results]:
        """One Detector call over ``group`` at ``iou``, then each request's own conf and classes."""
        detector = self.detector
        confs = [detector.conf if options.conf is None else options.conf for _, _, options in group]
        every_class = list(range(len(detector.names)))  # the per-request classes are applied below
        results = detector.predict_batch([image for _, image, _ in group], conf=min(confs), iou=iou,
                                         classes=every_class)  # fmt: skip
        kept = []
        for result, conf, (_, _, options) in zip(results, confs, group, strict=True):
            classes = options.classes if options.classes is not None else detector.classes
            keep = result.scores > conf
            if classes is not None:
                keep &= np.isin(result.class_ids, classes)
            kept.append(result[keep])
        return kept


def result_response(result: Results) -> dict[str, np.ndarray]:
    """The outputs of one request's Results (see :mod:`.protocol`), each with a batch axis of 1.

    The detection outputs hold ``max(N, 1)`` rows (a zero row when there are none) and ``num_dets`` says how
    many are real: the transport between Triton and this process cannot carry zero-size tensors.
    """
    count = len(result)
    rows = max(count, 1)
    boxes = np.zeros((1, rows, 4), dtype=np.float32)
    scores = np.zeros((1, rows), dtype=np.float32)
    class_ids = np.zeros((1, rows), dtype=np.int32)
    names = np.full((1, rows), b"", dtype=object)
    boxes[0, :count] = result.boxes.xyxy
    scores[0, :count] = result.scores
    class_ids[0, :count] = result.class_ids
    names[0, :count] = [str(result.names[int(c)]).encode() for c in result.class_ids]
    return {
        "num_dets": np.array([[count]], dtype=np.int32),
        "boxes": boxes,
        "scores": scores,
        "class_ids": class_ids,
        "names": names.astype(np.bytes_),
        "orig_shape": np.asarray([result.orig_shape], dtype=np.int32),
        "error": np.array([[b""]], dtype=np.bytes_),
    }


def error_response(message: str) -> dict[str, np.ndarray]:
    """The outputs of a request that did not run: no detections, ``error`` says why."""
    LOGGER.info("refused a request: %s", message)
    empty = Results.failed(None, message, [])
    response = result_response(empty)
    response["error"] = np.array([[message.encode()]], dtype=np.bytes_)
    return response
