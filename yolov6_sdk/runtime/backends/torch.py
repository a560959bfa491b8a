"""Torch backend: our ``.pt`` checkpoints and official YOLOv6 release files, run fused, eagerly or as CUDA graphs.

On CUDA it takes and returns tensors on its device (``wants_torch``), so letterboxing and NMS run there too;
on the CPU the numpy pre- and post-processing is faster, and the Detector uses it.

With ``cuda_graph=True`` the forward is captured into a CUDA graph once per thread and input shape
``(B, 3, H, W)``, with a static input and output tensor each; ``infer`` copies the batch into the static input,
replays the graph on the thread's own CUDA stream (which first waits for the caller's current stream, and which
the caller's stream then waits for) and returns a clone of the static output. A first batch of a new shape costs
a few eager warm-up runs and the capture, made in thread-local capture mode so other threads' CUDA work cannot
spoil it; a shape whose capture fails anyway runs eagerly. Later batches of that shape skip Python and kernel
launch overhead. Threads may share one backend; each keeps the graphs of its last
:data:`~yolov6_sdk.runtime.backends.cuda_graphs.SHAPE_CACHE_SIZE` input shapes (least recently used dropped).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.meta import read_meta
from yolov6_sdk.artifact.spec import INPUT_NAME, RAW_OUTPUT_NAME, IOSpec
from yolov6_sdk.errors import ArtifactError, ConfigError, YOLOv6Error
from yolov6_sdk.runtime.backends.base import Backend, BackendSpec, ModelInfo
from yolov6_sdk.runtime.backends.cuda_graphs import ShapeCache, capture_graph, ordered_stream
from yolov6_sdk.runtime.backends.registry import parse_device

LOGGER = logging.getLogger(__name__)

WARMUP_RUNS = 3  # eager runs on a side stream before a capture, so lazy cuDNN/cuBLAS set-up stays out of the graph


@dataclass(frozen=True)
class _CapturedForward:
    """One CUDA graph of the model's forward with its static input [B, 3, H, W] and output [B, A, 5 + nc];
    ``graph`` None when the capture failed (the shape runs eagerly)."""

    graph: Any
    static_input: Any
    static_output: Any


@dataclass(frozen=True)
class _ThreadGraphs:
    """One thread's CUDA stream and the graphs of its recent input shapes."""

    stream: Any
    graphs: ShapeCache[tuple[int, ...], _CapturedForward]


class TorchBackend(Backend):
    """A checkpoint loaded with :func:`yolov6_sdk.weights.load` (fused, eval mode).

    Args:
        path: our ``.pt`` checkpoint or an official release ``.pt``.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        half: run in fp16 (CUDA only).
        cuda_graph: replay one CUDA graph per input shape instead of running eagerly (CUDA only).

    ``infer`` takes a ``[B, 3, H, W]`` float tensor or numpy array (RGB, 0..1) and returns
    ``{"outputs": tensor [B, A, 5 + nc]}`` on :attr:`device` (cx, cy, w, h input pixels, 1.0, class scores),
    float16 with ``half=True``, else float32. Its NMS semantics (:attr:`ModelInfo.multi_label`) are the
    checkpoint's ``meta["multi_label"]`` when it records one, else single-label.

    Raises:
        ConfigError: ``half`` or ``cuda_graph`` on the CPU, or a CUDA device torch cannot see.
    """

    spec = BackendSpec(
        name="torch",
        suffixes=(".pt", ".pth"),
        options=("half", "cuda_graph"),
        modules=("torch",),
        install="pip install torch==2.13.0 && pip install 'yolov6-sdk[train]'",
        devices=("cpu", "cuda"),
        precisions=("fp32", "fp16"),
        torch_tensors=True,
    )

    def __init__(self, path: str | Path, device: str = "auto", half: bool = False, cuda_graph: bool = False) -> None:
        self._torch = require("torch")
        super().__init__(path, self._resolve(device))
        on_cuda = self.device.startswith("cuda")
        if half and not on_cuda:
            raise ConfigError(f"half=True needs a CUDA device, got device {device!r}; use fp32 on the CPU")
        if cuda_graph and not on_cuda:
            raise ConfigError(
                f"cuda_graph=True needs a CUDA device, got device {device!r} (runs on {self.device}); "
                "pass device='cuda' on a machine with a GPU, or drop cuda_graph"
            )
        from yolov6_sdk.weights import load

        loaded = load(self.path, fuse=True, device=self.device)
        self.model = loaded.model.half() if half else loaded.model
        self.cuda_graph = cuda_graph
        self._threads: dict[int, _ThreadGraphs] = {}
        self._lock = threading.Lock()
        self._dtype = self._torch.float16 if half else self._torch.float32
        dtype_name = "float16" if half else "float32"
        num_classes = loaded.model.num_classes
        record = {"model": loaded.name, "names": list(loaded.names), "imgsz": [loaded.imgsz] * 2,
                  "multi_label": loaded.meta.get("multi_label"), "weights_sha256": loaded.sha256}  # fmt: skip
        meta = read_meta(record, str(self.path))
        self._info = ModelInfo(
            names=list(loaded.names),
            imgsz=(loaded.imgsz, loaded.imgsz),
            end2end=False,
            multi_label=meta.multi_label_or(False),
            precision="fp16" if half else "fp32",
            inputs=(IOSpec(INPUT_NAME, (None, 3, None, None), dtype_name),),
            outputs=(IOSpec(RAW_OUTPUT_NAME, (None, None, 5 + num_classes), dtype_name),),
            meta=meta,
            extra={"source": loaded.source, **loaded.meta},
        )
        LOGGER.info("loaded %s (%s, %s) on %s", self.path, loaded.name, loaded.source, self.device)

    def _resolve(self, device: str) -> str:
        kind, index = parse_device(device)
        cuda = self._torch.cuda.is_available()
        if kind == "cuda" and not cuda:
            raise ConfigError(f"device {device!r} asked, but torch {self._torch.__version__} sees no CUDA device")
        if kind == "cuda" or (kind == "auto" and cuda):
            return f"cuda:{index}"
        return "cpu"

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def graph_shapes(self) -> list[tuple[int, int, int]]:
        """The input shapes (B, H, W) with a captured CUDA graph on any thread, sorted (empty without
        ``cuda_graph``)."""
        with self._lock:
            threads = list(self._threads.values())
        return sorted(
            {(s[0], s[2], s[3]) for t in threads for s, captured in t.graphs.items() if captured.graph is not None}
        )

    def infer(self, images: Any) -> dict[str, Any]:
        """Run ``images`` [B, 3, H, W] (tensor or numpy); returns ``{"outputs": tensor}`` on the device.

        Raises:
            ArtifactError: the backend is closed.
            YOLOv6Error: ``images`` is not a [B, 3, H, W] batch.
        """
        torch = self._torch
        if self.model is None:
            raise ArtifactError(f"the model of {self.path} is closed; create a new backend")
        batch = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise YOLOv6Error(f"expected a [B, 3, H, W] batch, got shape {tuple(batch.shape)}")
        batch = batch.to(self.device, self._dtype, non_blocking=True)
        with torch.inference_mode():
            if self.cuda_graph:
                return {RAW_OUTPUT_NAME: self._replay(batch)}
            return {RAW_OUTPUT_NAME: self.model(batch)}

    def _replay(self, batch: Any) -> Any:
        """Copy ``batch`` into the static input of its graph (captured on first use), replay on this thread's
        stream, clone the output (eager on that stream when the shape's capture failed)."""
        torch = self._torch
        state = self._thread_graphs()
        caller = torch.cuda.current_stream(self.device)
        with torch.cuda.device(self.device), ordered_stream(torch, state.stream, caller):
            shape = tuple(batch.shape)
            captured = state.graphs.get_or_make(shape, lambda: self._capture(batch, state.stream))
            if captured.graph is None:
                output = self.model(batch)
                output.record_stream(caller)  # read by the clone below: not reused before the caller is done
            else:
                captured.static_input.copy_(batch)
                captured.graph.replay()
                output = captured.static_output
        return output.clone()

    def _thread_graphs(self) -> _ThreadGraphs:
        key = threading.get_ident()
        with self._lock:
            state = self._threads.get(key)
            if state is None:
                stream = self._torch.cuda.Stream(self.device)
                graphs = ShapeCache(release=lambda _captured: stream.synchronize())  # queued replays finish first
                state = self._threads[key] = _ThreadGraphs(stream, graphs)
        return state

    def _capture(self, batch: Any, stream: Any) -> _CapturedForward:
        """Warm up on ``stream`` (the current stream), then capture the forward of a static copy of ``batch``."""
        static_input = batch.clone()
        for _ in range(WARMUP_RUNS):
            self.model(static_input)
        outputs: list[Any] = []
        what = f"input {tuple(batch.shape)} of {self.path.name}"
        graph = capture_graph(self._torch, stream, lambda: outputs.append(self.model(static_input)), what)
        if graph is None:
            return _CapturedForward(None, None, None)
        LOGGER.debug("captured a CUDA graph for %s", what)
        return _CapturedForward(graph, static_input, outputs[0])

    def close(self) -> None:
        """Wait for queued work, then drop the CUDA graphs, their buffers and the model."""
        if self._threads:
            self._torch.cuda.synchronize(self.device)
            self._threads.clear()
        self.model = None
