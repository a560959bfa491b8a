"""OpenVINO backend: the SDK's ``.onnx`` exports (fp32, int8 Q/DQ, raw and end-to-end) and OpenVINO IR
(``.xml`` with its ``.bin``) on the CPU.

Precision is explicit. OpenVINO computes fp32 graphs in bf16 by default on CPUs with AVX512-BF16 or AMX; this
backend asks for fp32 (``INFERENCE_PRECISION_HINT`` f32) unless the artifact records bf16 (built with
``yolov6-build --backend openvino --precision bf16``) or the caller passes ``precision="bf16"``, and
:attr:`ModelInfo.precision` reports what runs ("bf16" for an fp32 graph run in bf16; int8 graphs report
"int8", their float parts computed in the precision asked).

The artifact's metadata comes from the model's ``rt_info`` (:mod:`yolov6_sdk.artifact.ir_metadata`) and is read by the same
:func:`~yolov6_sdk.artifact.model_info.graph_model_info` as ONNX Runtime's. Compiled models are cached in
``<artifact stem>.ov-cache/`` beside the artifact (OpenVINO's ``CACHE_DIR``), so a second process skips the
compilation; a read-only folder just goes without the cache.

``threads`` sets OpenVINO's inference threads (None: every core). ``mode="latency"`` (default) runs each batch
as one request; ``mode="throughput"`` compiles for several CPU streams and runs a batch as one request per
image, concurrently (:meth:`OpenVINOBackend.infer`): for folders and videos on machines where that pays.
Each calling thread gets its own infer requests, so threads may share one backend.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.ir_metadata import read_ir_metadata
from yolov6_sdk.artifact.model_info import graph_model_info
from yolov6_sdk.artifact.spec import END2END_OUTPUTS, INPUT_NAME, RAW_OUTPUT_NAME, IOSpec
from yolov6_sdk.errors import ArtifactError, ConfigError
from yolov6_sdk.runtime.backends.base import Backend, BackendSpec, ModelInfo
from yolov6_sdk.runtime.backends.registry import parse_device

LOGGER = logging.getLogger(__name__)

_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
MODES = ("latency", "throughput")


def cache_dir(artifact: str | Path) -> Path:
    """Where compiled forms of ``artifact`` are cached: ``<stem>.ov-cache/`` beside it."""
    artifact = Path(artifact)
    return artifact.with_name(f"{artifact.stem}.ov-cache")


@functools.cache
def _shared_core() -> Any:
    """One ``openvino.Core`` per process, shared by every backend (OpenVINO's recommended use)."""
    return require("openvino").Core()


def bf16_supported(core: Any) -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), as OpenVINO reports it."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _port_spec(port: Any, wanted: tuple[str, ...]) -> IOSpec:
    """The :class:`IOSpec` of a model port, named by the contract name among its tensor names if it has one."""
    names = sorted(port.get_names())
    name = next((n for n in names if n in wanted), names[0] if names else port.get_any_name())
    shape = tuple(dim.get_length() if dim.is_static else None for dim in port.get_partial_shape())
    return IOSpec(name, shape, np.dtype(port.get_element_type().to_dtype()).name)


class OpenVINOBackend(Backend):
    """An ``.onnx`` or OpenVINO IR ``.xml`` compiled for the CPU (see the module docstring).

    Args:
        path: the ``.onnx`` file, or the ``.xml`` of an IR (its ``.bin`` beside it).
        device: "auto" or "cpu".
        threads: inference threads (None: OpenVINO's default, every core).
        imgsz: input (H, W) for a graph whose input size is dynamic and unrecorded.
        precision: "fp32" or "bf16" for the float computation; None: bf16 when the artifact records bf16,
            else fp32.
        mode: "latency" or "throughput" (see the module docstring).
        cache: keep the compiled model in ``<stem>.ov-cache/`` beside the artifact (False: write nothing there).

    ``infer`` takes a numpy ``[B, 3, H, W]`` float32 array and returns ``{output name: numpy array}``.

    Raises:
        ArtifactError: a missing ``.bin``, a truncated or corrupt file, or a graph that is not a YOLOv6 export.
        ConfigError: a GPU device, an unknown precision or mode, or bf16 on a CPU without it.
    """

    spec = BackendSpec(
        name="openvino",
        suffixes=(".onnx", ".xml"),
        options=("threads", "imgsz", "precision", "mode", "cache"),
        modules=("openvino",),
        install="pip install openvino",
        devices=("cpu",),
        precisions=("fp32", "bf16", "int8"),
    )

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        threads: int | None = None,
        imgsz: int | tuple[int, int] | None = None,
        precision: str | None = None,
        mode: str = "latency",
        cache: bool = True,
    ) -> None:
        if parse_device(device)[0] == "cuda":
            raise ConfigError(f"the openvino backend runs on the CPU, got device {device!r}; use device='cpu'")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive int or None (OpenVINO's default), got {threads!r}")
        if precision is not None and precision not in _PRECISION_HINTS:
            raise ConfigError(f"precision must be 'fp32', 'bf16' or None (the artifact's), got {precision!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        super().__init__(path, "cpu")
        self._ov = require("openvino")
        self._core = _shared_core()
        model = self._read()
        meta = read_ir_metadata(model, str(self.path))
        if not meta.recorded:
            LOGGER.warning("%s records no SDK metadata; its contract is read from the graph's shapes", self.path)
        compute = self._compute_precision(precision, meta.precision or "fp32")
        self.mode = mode
        self._compiled = self._compile(model, compute, threads, cache)
        self._inputs = tuple(_port_spec(port, (INPUT_NAME,)) for port in self._compiled.inputs)
        self._outputs = tuple(_port_spec(port, (*END2END_OUTPUTS, RAW_OUTPUT_NAME)) for port in self._compiled.outputs)
        self._local = threading.local()
        info = graph_model_info(str(self.path), meta, self._inputs, self._outputs, imgsz, self._probe)
        computes = self.inference_precision  # what the compiled model reports, not what was asked
        runs = "bf16" if computes == "bf16" and info.precision == "fp32" else info.precision
        self._info = dataclasses.replace(info, precision=runs, extra={**info.extra, "compute": computes})
        LOGGER.info("loaded %s in OpenVINO %s (%s, %s mode)", self.path, self._ov.__version__, runs, mode)

    def _read(self) -> Any:
        if self.path.suffix.lower() == ".xml":
            weights = self.path.with_suffix(".bin")
            if not weights.is_file():
                raise ArtifactError(
                    f"{self.path} is an OpenVINO IR without its weights file {weights.name} beside it; copy the .bin "
                    "with the .xml, or rebuild with yolov6-build --backend openvino"
                )
        try:
            return self._core.read_model(str(self.path))
        except RuntimeError as exc:  # OpenVINO raises RuntimeError for unreadable files
            raise ArtifactError(
                f"OpenVINO cannot read {str(self.path)!r} ({str(exc).strip().splitlines()[0]}); the file (or its .bin) "
                "is truncated, corrupt or not a model: re-export it with yolov6-build"
            ) from exc

    def _compute_precision(self, asked: str | None, recorded: str) -> str:
        wanted = asked or ("bf16" if recorded == "bf16" else "fp32")
        if wanted == "bf16" and not bf16_supported(self._core):
            if asked == "bf16":
                raise ConfigError(
                    f"precision='bf16' needs a CPU with AVX512-BF16 or AMX, and this one has neither ({self.path}); "
                    "use precision='fp32'"
                )
            LOGGER.warning("%s records bf16, but this CPU has no bf16 instructions; it runs in fp32", self.path)
            return "fp32"
        return wanted

    def _compile(self, model: Any, compute: str, threads: int | None, cache: bool) -> Any:
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[compute],
            "PERFORMANCE_HINT": self.mode.upper(),
        }
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        folder = cache_dir(self.path)
        try:
            if cache:
                folder.mkdir(exist_ok=True)
                config["CACHE_DIR"] = str(folder)
        except OSError:
            LOGGER.debug("no compiled-model cache for %s: %s is not writable", self.path, folder)
        try:
            return self._core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise ArtifactError(
                f"OpenVINO cannot compile {str(self.path)!r} for the CPU ({str(exc).strip().splitlines()[0]}); "
                "an operator it does not support? run it with backend='onnxruntime'"
            ) from exc

    @property
    def inference_precision(self) -> str:
        """The float precision the compiled model computes in, as OpenVINO reports it: "fp32" or "bf16"."""
        reported = self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        return {"f32": "fp32", "bf16": "bf16"}.get(reported, reported)

    def _probe(self, size: tuple[int, int]) -> tuple[int, int]:
        batch = self._inputs[0].shape[0] or 1
        output = self._compiled(np.full((batch, 3, *size), 114 / 255, np.float32))[self._compiled.outputs[0]]
        return int(output.shape[1]), int(output.shape[2])

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _requests(self, count: int) -> list[Any]:
        """This thread's infer requests, at least ``count`` of them."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = []
        while len(requests) < count:
            requests.append(self._compiled.create_infer_request())
        return requests

    def infer(self, images: Any) -> dict[str, Any]:
        """Run ``images`` [B, 3, H, W] float32 (numpy); returns ``{output name: numpy array}``.

        In throughput mode a batch of several images on a graph with a dynamic batch axis runs as one request
        per image, started together, and the outputs are stacked back into batch order.
        """
        info = self._info
        count = self.check_batch_served(len(images))
        if self._compiled is None:
            raise ArtifactError(f"the OpenVINO model of {self.path} is closed; create a new backend")
        feed = np.ascontiguousarray(images, dtype=np.float32)
        if self.mode == "throughput" and count > 1 and info.max_batch is None:
            return self._infer_split(feed)
        request = self._requests(1)[0]
        request.infer({0: feed})
        return {spec.name: request.get_output_tensor(i).data.copy() for i, spec in enumerate(self._outputs)}

    def _infer_split(self, feed: np.ndarray) -> dict[str, Any]:
        requests = self._requests(len(feed))[: len(feed)]
        for request, image in zip(requests, feed, strict=True):
            request.start_async({0: image[None]})
        for request in requests:
            request.wait()
        return {
            spec.name: np.concatenate([request.get_output_tensor(i).data for request in requests])
            for i, spec in enumerate(self._outputs)
        }

    def close(self) -> None:
        self._local = threading.local()
        self._compiled = None
