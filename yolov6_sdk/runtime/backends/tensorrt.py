"""TensorRT engine backend: name-based TensorRT 10/11 API, device memory owned by torch.

Loading checks the engine's sidecar against the running TensorRT and GPU first (an engine built elsewhere is
refused with a message to rebuild with ``yolov6-build``), then deserialises it. An engine without a sidecar (built
by trtexec or another tool) loads with a warning: its inputs, outputs, batch range and input size are read from
the engine itself (:func:`engine_model_info`), its class names are numbers unless the caller names them
(``Detector(names=...)``), and TensorRT itself refuses it when it was built for another release or GPU. ``infer`` takes the
pre-processed batch ``[B, 3, H, W]`` float32 RGB 0..1 as a CUDA tensor (or a numpy array, staged through a
pinned host buffer) and returns the engine's outputs as CUDA tensors: ``outputs`` [B, A, 5 + nc] float32 for a
raw engine, or the EfficientNMS tensors ``num_dets`` [B, 1] int32, ``det_boxes`` [B, K, 4] float32 xyxy,
``det_scores`` [B, K] float32, ``det_classes`` [B, K] int32 for an end-to-end engine. fp16 outputs are returned
as float32.

Each thread gets its own CUDA stream (TensorRT warns of extra synchronisation on the legacy default stream),
execution context and output buffers (``set_input_shape`` for the batch, checked against the profile;
``set_tensor_address`` for every I/O tensor with torch-owned buffers; ``execute_async_v3`` on that stream, which
first waits for the caller's current stream, and which the caller's stream then waits for), so threads may share
one backend. With ``cuda_graph=True`` each input shape gets an execution context of its own, set to that shape,
and a CUDA graph of its engine call, captured on first use in thread-local mode and replayed (static input and
output buffers); a shape whose capture fails runs without a graph. Per thread the buffers, pinned staging memory,
graphs and contexts of the last :data:`~yolov6_sdk.runtime.backends.cuda_graphs.SHAPE_CACHE_SIZE` input shapes
are kept (least recently used dropped), so rectangular inference's many shapes stay bounded.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.artifact import trt_compat
from yolov6_sdk.artifact.sidecar import Sidecar, check_compatible, read_sidecar, sidecar_path
from yolov6_sdk.artifact.spec import END2END_OUTPUTS, IOSpec
from yolov6_sdk.errors import ArtifactError, YOLOv6Error
from yolov6_sdk.runtime.backends.base import Backend, BackendSpec, ModelInfo
from yolov6_sdk.runtime.backends.cuda_graphs import ShapeCache, capture_graph, ordered_stream

LOGGER = logging.getLogger(__name__)


def preflight(path: str | Path, trt_version: str, gpu_name: str, compute_capability: str) -> Sidecar:
    """Read and check the sidecar of engine ``path`` for the given TensorRT version and GPU.

    Raises:
        ArtifactError: the engine or its sidecar is missing, the sidecar is not an engine's, or the engine was
            built by another TensorRT release or for another GPU (the message says to rebuild with yolov6-build).
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"engine {path} does not exist; build it with yolov6-build")
    sidecar = read_sidecar(path)
    if sidecar.kind != "engine":
        raise ArtifactError(f"{path}: its sidecar describes a {sidecar.kind!r} artifact, not a TensorRT engine")
    check_compatible(sidecar, trt_version, gpu_name, compute_capability)
    return sidecar


def checked_sidecar(path: str | Path, trt_version: str, gpu_name: str, compute_capability: str) -> Sidecar | None:
    """:func:`preflight` for an engine with a sidecar; None, with a warning, for one without (built elsewhere).

    Raises:
        ArtifactError: the engine is missing, or its sidecar refuses it (see :func:`preflight`).
    """
    path = Path(path)
    if path.is_file() and not sidecar_path(path).is_file():
        LOGGER.warning(
            "%s has no sidecar %s (built by trtexec or another tool): its inputs, outputs and input size are read "
            "from the engine, its classes are numbered unless names are given (--names NAMES or a data.yaml), and "
            "the TensorRT release and GPU it was built for cannot be checked beforehand",
            path,
            sidecar_path(path).name,
        )
        return None
    return preflight(path, trt_version, gpu_name, compute_capability)


def engine_model_info(
    path: str | Path,
    image_input: IOSpec,
    outputs: tuple[IOSpec, ...],
    batch_range: tuple[int, int],
    profile_hw: tuple[int, int] | None,
) -> ModelInfo:
    """What an engine without a sidecar is, read from its tensors.

    ``image_input``: the ``[B, 3, H, W]`` input; ``profile_hw``: the (H, W) of the optimisation profile's opt
    shape, used when H and W are dynamic. Outputs named ``num_dets, det_boxes, det_scores, det_classes`` make an
    end-to-end engine (its NMS ran over every class: multi-label); otherwise the first output must be raw
    ``[B, A, 5 + nc]`` and the classes are named "0".."nc-1". fp16 input: precision "fp16", else "fp32" (an
    int8 engine cannot be told from its tensors).

    Raises:
        ArtifactError: an input that is not ``[B, 3, H, W]`` with a known or profiled size, or outputs of neither
            YOLOv6 form.
    """
    shape = image_input.shape
    hw = tuple(shape[2:]) if len(shape) == 4 and None not in shape[2:] else profile_hw
    if len(shape) != 4 or shape[1] not in (3, None) or hw is None:
        raise ArtifactError(f"{path}: expected one image input [B, 3, H, W] with a known size, got {shape}")
    end2end = {spec.name for spec in outputs} >= set(END2END_OUTPUTS)
    raw_columns = outputs[0].shape[-1] if outputs and len(outputs[0].shape) == 3 else None
    if not end2end and raw_columns is None:
        raise ArtifactError(
            f"{path} is not a YOLOv6 engine: expected output [B, anchors, 5 + classes] or the "
            f"{', '.join(END2END_OUTPUTS)} outputs, got {[(s.name, s.shape) for s in outputs]}"
        )
    return ModelInfo(
        names=[] if end2end else [str(i) for i in range(int(raw_columns) - 5)],
        imgsz=(int(hw[0]), int(hw[1])),
        end2end=end2end,
        multi_label=end2end,
        precision="fp16" if image_input.dtype == "float16" else "fp32",
        max_batch=batch_range[1],
        min_batch=batch_range[0],
        inputs=(image_input,),
        outputs=outputs,
        extra={"sidecar": False},
    )


def profile_range(engine: Any, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(min, max) shapes of input ``name`` in optimisation profile 0."""
    low, _, high = engine.get_tensor_profile_shape(name, 0)
    return tuple(int(d) for d in low), tuple(int(d) for d in high)


def set_input_shape(context: Any, engine: Any, name: str, shape: tuple[int, ...], path: Path) -> None:
    """``context.set_input_shape`` checked: a shape outside the engine's profile is one clear error.

    Raises:
        YOLOv6Error: TensorRT refused ``shape`` (the message gives the profile's range and how to widen it).
    """
    if not context.set_input_shape(name, shape):
        low, high = profile_range(engine, name)
        raise YOLOv6Error(
            f"{path.name}: input {name} of shape {list(shape)} lies outside the engine's profile {list(low)} .. "
            f"{list(high)}; resize to fit, or rebuild with yolov6-build (wider --bs, or a larger --imgsz for a "
            "dynamic height/width)"
        )


def bind_addresses(context: Any, addresses: dict[str, int]) -> None:
    """Set the device address of every I/O tensor (``{name: pointer}``), as ``execute_async_v3`` needs."""
    for name, pointer in addresses.items():
        context.set_tensor_address(name, pointer)


def execute(context: Any, stream_handle: int, path: Path) -> None:
    """Queue the engine on the CUDA stream ``stream_handle`` (never the legacy default stream 0).

    Raises:
        YOLOv6Error: TensorRT refused to run (its reason is in the ``yolov6_sdk.tensorrt`` log).
    """
    if not context.execute_async_v3(stream_handle):
        raise YOLOv6Error(f"{path.name}: TensorRT execution failed; see the yolov6_sdk.tensorrt log")


@dataclass
class _ShapeState:
    """What one input shape [B, 3, H, W] needs on one thread: output buffers and, with CUDA graphs, a graph with
    its own execution context and static input (a graph replays the context state it was captured with, so it
    cannot share a context with another shape's graph). ``graph`` None after a failed capture: run eagerly."""

    outputs: dict[str, Any]
    context: Any = None
    static_input: Any = None
    graph: Any = None
    captured: bool = False


@dataclass
class _ThreadState:
    """One thread's CUDA stream (never the legacy default), eager execution context and per-shape caches."""

    stream: Any
    context: Any
    shapes: ShapeCache[tuple[int, ...], _ShapeState] = field(default_factory=ShapeCache)
    pinned: ShapeCache[tuple[int, ...], Any] = field(default_factory=ShapeCache)
    staged: Any = None  # CUDA event: the last pinned -> device copy has been read


class TensorRTBackend(Backend):
    """A serialised TensorRT engine on one CUDA device (see the module docstring)."""

    spec = BackendSpec(
        name="tensorrt",
        suffixes=(".engine", ".plan"),
        options=("cuda_graph",),
        modules=("tensorrt", "torch"),
        install="pip install 'yolov6-sdk[trt]' (TensorRT from NVIDIA's index, see the README)",
        devices=("cuda",),
        precisions=("fp32", "fp16", "int8"),
        torch_tensors=True,
    )

    def __init__(self, path: str | Path, device: str = "cuda", cuda_graph: bool = False) -> None:
        torch = require("torch")
        if not torch.cuda.is_available():
            raise ArtifactError(f"{path}: TensorRT engines run on a CUDA GPU, and torch sees none")
        dev = torch.device("cuda" if device in ("auto", "cuda") else device)
        if dev.type != "cuda":
            raise ArtifactError(f"{path}: TensorRT engines run on a CUDA device, got device {device!r}")
        dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
        super().__init__(path, str(dev))
        self._torch, self._dev, self.cuda_graph = torch, dev, cuda_graph
        self._trt = trt_compat.load_tensorrt()
        major, minor = torch.cuda.get_device_capability(dev)
        self.sidecar = checked_sidecar(path, self._trt.__version__, torch.cuda.get_device_name(dev), f"{major}.{minor}")
        self._runtime = self._trt.Runtime(trt_compat.trt_logger(self._trt))
        with torch.cuda.device(dev):
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ArtifactError(
                f"{path}: TensorRT could not deserialise the engine (corrupt, or built by another TensorRT release or "
                "for another GPU; see the yolov6_sdk.tensorrt log); rebuild it with yolov6-build"
            )
        inputs, outputs = trt_compat.engine_io(self._trt, self._engine)
        if len(inputs) != 1:
            raise ArtifactError(f"{path}: expected one input tensor, found {[s.name for s in inputs]}")
        self._input, self._outputs = inputs[0], outputs
        self._min_batch, self._max_batch = self._batch_range()
        self._threads: dict[int, _ThreadState] = {}
        self._lock = threading.Lock()
        self._info = self._make_info() if self.sidecar is not None else self._engine_info()

    # ------------------------------------------------------------------------------------------- description

    def _batch_range(self) -> tuple[int, int]:
        batch = self._input.shape[0]
        if batch is not None:
            return batch, batch
        low, _, high = self._engine.get_tensor_profile_shape(self._input.name, 0)
        return int(low[0]), int(high[0])

    def _engine_info(self) -> ModelInfo:
        """:func:`engine_model_info` of this engine (no sidecar)."""
        profile_hw = None
        if None in self._input.shape[2:]:
            _, opt, _ = self._engine.get_tensor_profile_shape(self._input.name, 0)
            profile_hw = (int(opt[2]), int(opt[3]))
        info = engine_model_info(self.path, self._input, self._outputs, (self._min_batch, self._max_batch), profile_hw)
        features = trt_compat.probe(self._trt)
        info.extra["device_memory_bytes"] = trt_compat.engine_device_memory(self._engine, features)
        return info

    def _make_info(self) -> ModelInfo:
        car = self.sidecar
        features = trt_compat.probe(self._trt)
        extra = {"device_memory_bytes": trt_compat.engine_device_memory(self._engine, features)}
        return ModelInfo(
            names=list(car.names),
            imgsz=car.imgsz,
            end2end=bool(car.end2end),
            multi_label=car.multi_label,
            precision=car.precision,
            max_batch=self._max_batch,
            min_batch=self._min_batch,
            inputs=(self._input,),
            outputs=self._outputs,
            meta=car.meta,
            extra=extra,
        )

    @property
    def info(self) -> ModelInfo:
        """Sidecar fields plus the engine's own I/O (names, shapes, dtypes) and batch range."""
        return self._info

    # ----------------------------------------------------------------------------------------------- running

    def infer(self, images: Any) -> dict[str, Any]:
        """Run one batch; see the module docstring for inputs and outputs.

        The engine runs on this thread's own stream, after the work queued on the caller's current stream; the
        returned tensors are ready in the caller's stream order.
        """
        torch = self._torch
        state = self._thread_state()
        caller = torch.cuda.current_stream(self._dev)
        with torch.cuda.device(self._dev), ordered_stream(torch, state.stream, caller):
            batch = self._upload(images, state)
            size = int(batch.shape[0])
            if not self._min_batch <= size <= self._max_batch:
                raise YOLOv6Error(
                    f"{self.path.name} serves batches of {self._min_batch}..{self._max_batch}, got {size}; "
                    "rebuild with a wider --batch profile or split the batch"
                )
            shape = tuple(int(d) for d in batch.shape)
            entry = state.shapes.get_or_make(shape, lambda: self._new_shape(state, shape))
            outputs = self._run(state, entry, batch)
        return {name: t.float() if t.dtype == torch.float16 else t.clone() for name, t in outputs.items()}

    def _thread_state(self) -> _ThreadState:
        key = threading.get_ident()
        with self._lock:
            state = self._threads.get(key)
        if state is None:
            with self._torch.cuda.device(self._dev):
                stream = self._torch.cuda.Stream(self._dev)
                # a dropped shape's context and buffers may still be in use by queued work: wait for it first
                state = _ThreadState(
                    stream, self._new_context(), ShapeCache(release=lambda _entry: stream.synchronize())
                )
            with self._lock:
                state = self._threads.setdefault(key, state)
        return state

    def _new_context(self) -> Any:
        context = self._engine.create_execution_context()
        if context is None:
            raise YOLOv6Error(f"{self.path.name}: TensorRT could not create an execution context (GPU memory?)")
        return context

    def _upload(self, images: Any, state: _ThreadState) -> Any:
        """The batch as a contiguous tensor on the device in the engine's input dtype (copied on this thread's
        stream; numpy through a pinned buffer per shape)."""
        torch = self._torch
        dtype = getattr(torch, self._input.dtype)
        if isinstance(images, np.ndarray):
            shape = tuple(images.shape)
            host = state.pinned.get_or_make(shape, lambda: torch.empty(shape, dtype=torch.float32, pin_memory=True))
            if state.staged is not None:
                state.staged.synchronize()  # the previous copy out of a pinned buffer has finished
            host.numpy()[...] = images
            images = host.to(self._dev, non_blocking=True)
            state.staged = torch.cuda.Event()
            state.staged.record(state.stream)
        if images.ndim != 4 or images.shape[1] != 3:
            raise YOLOv6Error(f"expected a [B, 3, H, W] batch, got shape {tuple(images.shape)}")
        return images.to(self._dev, dtype).contiguous()

    def _new_shape(self, state: _ThreadState, shape: tuple[int, ...]) -> _ShapeState:
        """Output buffers for input ``shape`` (and, with CUDA graphs, a context of its own set to that shape)."""
        context = self._new_context() if self.cuda_graph else state.context
        set_input_shape(context, self._engine, self._input.name, shape, self.path)
        outputs = {}
        for spec in self._outputs:
            size = tuple(int(d) for d in context.get_tensor_shape(spec.name))
            if any(d < 0 for d in size):
                raise ArtifactError(
                    f"{self.path.name}: output {spec.name} has a data-dependent shape {size}; build from the raw "
                    "or the EfficientNMS (nms='trt') ONNX export"
                )
            outputs[spec.name] = self._torch.empty(size, dtype=getattr(self._torch, spec.dtype), device=self._dev)
        return _ShapeState(outputs, context if self.cuda_graph else None)

    def _run(self, state: _ThreadState, entry: _ShapeState, batch: Any) -> dict[str, Any]:
        """Run ``batch`` eagerly, or replay its shape's graph (captured on first use; eager if capture failed)."""
        stream = state.stream
        if not self.cuda_graph or (entry.captured and entry.graph is None):
            context = entry.context or state.context
            set_input_shape(context, self._engine, self._input.name, tuple(batch.shape), self.path)
            bind_addresses(context, self._addresses(batch, entry.outputs))
            execute(context, stream.cuda_stream, self.path)
            return entry.outputs
        if entry.static_input is None:
            entry.static_input = self._torch.empty_like(batch)
            bind_addresses(entry.context, self._addresses(entry.static_input, entry.outputs))
        entry.static_input.copy_(batch)
        if not entry.captured:
            execute(entry.context, stream.cuda_stream, self.path)  # warm-up: TensorRT's lazy set-up stays outside
            what = f"input {list(batch.shape)} of {self.path.name}"
            entry.graph = capture_graph(self._torch, stream, lambda: self._enqueue(entry.context, stream), what)
            entry.captured = True
            if entry.graph is None:
                return self._run(state, entry, batch)
        entry.graph.replay()
        return entry.outputs

    def _enqueue(self, context: Any, stream: Any) -> None:
        execute(context, stream.cuda_stream, self.path)

    def _addresses(self, batch: Any, outputs: dict[str, Any]) -> dict[str, int]:
        return {self._input.name: batch.data_ptr(), **{name: t.data_ptr() for name, t in outputs.items()}}

    def close(self) -> None:
        """Wait for queued work, then drop graphs, contexts, buffers and the engine."""
        if getattr(self, "_threads", None):
            self._torch.cuda.synchronize(self._dev)
            self._threads.clear()
        self._engine = None
        self._runtime = None
