"""A client of ``yolov6-serve``: pictures in, the same :class:`~yolov6_sdk.runtime.results.Results` a local
Detector returns, over HTTP or gRPC (``tritonclient``).

``Client("http://localhost:8000")`` or ``Client("grpc://localhost:8001")``; a URL without a scheme is HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.images import read_image_bytes
from yolov6_sdk.errors import ConfigError, ImageError, YOLOv6Error
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.serve.protocol import IMAGE_INPUT, MODEL_NAME, OUTPUTS, PIXELS_INPUT, RequestOptions


class ServeError(YOLOv6Error):
    """The server could not be reached, or refused a request for a reason that is not the picture's."""


class Client:
    """Send pictures to a ``yolov6-serve`` server and get :class:`Results` back.

    Args:
        url: ``http://HOST:PORT`` (default port 8000), ``grpc://HOST:PORT`` (8001), or ``HOST:PORT`` (HTTP).
        model: the served model's name.
        timeout_s: per-request network timeout in seconds.
    """

    def __init__(self, url: str, model: str = MODEL_NAME, timeout_s: float = 60.0) -> None:
        scheme, _, address = url.rpartition("://")
        scheme = scheme or "http"
        if scheme not in ("http", "grpc") or not address:
            raise ConfigError(f"url must be http://HOST:PORT or grpc://HOST:PORT, got {url!r}")
        self.protocol, self.model, self.timeout_s = scheme, model, timeout_s
        self._lib = require(f"tritonclient.{scheme}")
        kwargs = {"network_timeout": timeout_s, "connection_timeout": timeout_s} if scheme == "http" else {}
        try:
            self._client = self._lib.InferenceServerClient(address, **kwargs)
        except Exception as exc:  # tritonclient raises its own and socket errors for a bad address
            raise ServeError(f"cannot reach a server at {url!r}: {exc}") from exc
        self.url = url

    def is_ready(self) -> bool:
        """True when the server answers and the model is ready to serve."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception:  # an unreachable server is "not ready", whatever the transport raised
            return False

    def __call__(
        self,
        image: str | Path | bytes | np.ndarray,
        conf: float | None = None,
        iou: float | None = None,
        classes: Sequence[int] | None = None,
    ) -> Results:
        """Detect objects in one picture: a file path or encoded bytes (JPEG, PNG, ...), or a uint8 HxWx3
        BGR array. ``conf``, ``iou``, ``classes``: this request's options (None: the server's defaults).

        Returns the picture's :class:`Results` (boxes in original-picture pixels, as a local Detector's).

        Raises:
            ImageError: the server refused the picture (corrupt, too large, wrong shape), or a file is missing.
            ConfigError: an option out of range.
            ServeError: the server is unreachable or refused the request for another reason.
        """
        path = str(image) if isinstance(image, (str, Path)) else None
        inputs = [self._input(image)]
        options = RequestOptions(conf, iou, None if classes is None else tuple(int(c) for c in classes))
        outputs = [self._lib.InferRequestedOutput(name) for name in OUTPUTS]
        try:
            reply = self._client.infer(self.model, inputs, outputs=outputs, parameters=options.as_parameters())
        except Exception as exc:  # tritonclient's InferenceServerException, socket and timeout errors
            raise ServeError(f"{self.url}: the request failed: {_message(exc)}") from exc
        return _results(reply, path)

    def _input(self, image: str | Path | bytes | np.ndarray) -> Any:
        if isinstance(image, (str, Path)):
            image = read_image_bytes(image)
        if isinstance(image, (bytes, bytearray)):
            tensor = self._lib.InferInput(IMAGE_INPUT, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[bytes(image)]], dtype=np.object_))
            return tensor
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
            tensor = self._lib.InferInput(PIXELS_INPUT, [1, *image.shape], "UINT8")
            tensor.set_data_from_numpy(np.ascontiguousarray(image)[None])
            return tensor
        raise ImageError(
            f"expected a file path, encoded image bytes or a uint8 HxWx3 BGR array, got {type(image).__name__}"
            + (f" {image.dtype} {image.shape}" if isinstance(image, np.ndarray) else "")
        )

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _message(exc: Exception) -> str:
    message = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    return " ".join(str(message).split())[:2000]


def _results(reply: Any, path: str | None) -> Results:
    """A :class:`Results` from one response's outputs; raises the server's ``error`` as an SDK error.

    ``Results.names`` maps the class ids found in this picture to their names (the response carries those).
    """
    error = bytes(reply.as_numpy("error").reshape(-1)[0]).decode(errors="replace")
    if error:
        raise (ConfigError if error.startswith(("unknown option", "option ")) else ImageError)(error)
    count = int(reply.as_numpy("num_dets").reshape(-1)[0])
    boxes = reply.as_numpy("boxes").reshape(-1, 4)[:count].astype(np.float32)
    names_out = [bytes(n).decode() for n in reply.as_numpy("names").reshape(-1)[:count]]
    class_ids = reply.as_numpy("class_ids").reshape(-1)[:count].astype(np.int64)
    scores = reply.as_numpy("scores").reshape(-1)[:count].astype(np.float32)
    height, width = (int(v) for v in reply.as_numpy("orig_shape").reshape(-1))
    names: dict[int, str] = dict(zip(class_ids.tolist(), names_out, strict=True))
    return Results(boxes, scores, class_ids, names, (height, width), path=path)
