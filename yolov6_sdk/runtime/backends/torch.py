"""Torch backend: our ``.pt`` checkpoints and official YOLOv6 release files, run fused, eagerly or as CUDA graphs.

On CUDA it takes and returns tensors on its device (``wants_torch``), so letterboxing and NMS run there too;
on the CPU the numpy pre- and post-processing is faster, and the Detector uses it.

With ``cuda_graph=True`` the forward is captured into a CUDA graph once per CUDA stream and input shape
``(B, 3, H, W)``, with a static input and output tensor each; ``infer`` copies the batch into the static input,
replays the graph and returns a clone of the static output. A first batch of a new shape costs a few eager
warm-up runs and the capture; later batches of that shape skip Python and kernel launch overhead. Threads that
each use their own torch stream may share one backend (each stream has its own graphs and buffers).
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
from yolov6_sdk.runtime.backends.registry import parse_device

LOGGER = logging.getLogger(__name__)

WARMUP_RUNS = 3  # eager runs on a side stream before a capture, so lazy cuDNN/cuBLAS set-up stays out of the graph


@dataclass(frozen=True)
class _CapturedForward:
    """One CUDA graph of the model's forward with its static input [B, 3, H, W] and output [B, A, 5 + nc]."""

    graph: Any
    static_input: Any
    static_output: Any


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
        self._graphs: dict[tuple[int, tuple[int, ...]], _CapturedForward] = {}
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
        """The input shapes (B, H, W) with a captured CUDA graph, sorted (empty without ``cuda_graph``)."""
        with self._lock:
            return sorted({(shape[0], shape[2], shape[3]) for _, shape in self._graphs})

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
        """Copy ``batch`` into the static input of its graph (captured on first use), replay, clone the output."""
        torch = self._torch
        stream = torch.cuda.current_stream(self.device)
        key = (int(stream.cuda_stream), tuple(batch.shape))
        with torch.cuda.device(self.device):
            with self._lock:
                captured = self._graphs.get(key)
                if captured is None:
                    captured = self._graphs[key] = self._capture(batch, stream)
            captured.static_input.copy_(batch)
            captured.graph.replay()
            return captured.static_output.clone()

    def _capture(self, batch: Any, stream: Any) -> _CapturedForward:
        """Warm up on a side stream, then capture the forward of a static copy of ``batch`` into a CUDA graph."""
        torch = self._torch
        static_input = batch.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(stream)
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.model(static_input)
        stream.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.model(static_input)
        LOGGER.debug("captured a CUDA graph for input %s of %s", tuple(batch.shape), self.path.name)
        return _CapturedForward(graph, static_input, static_output)

    def close(self) -> None:
        """Wait for queued work, then drop the CUDA graphs, their buffers and the model."""
        if self._graphs:
            self._torch.cuda.synchronize(self.device)
            self._graphs.clear()
        self.model = None
