"""Torch backend: our ``.pt`` checkpoints and official YOLOv6 release files, run eagerly and fused.

On CUDA it takes and returns tensors on its device (``wants_torch``), so letterboxing and NMS run there too;
on the CPU the numpy pre- and post-processing is faster, and the Detector uses it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.errors import ArtifactError, ConfigError
from yolov6_sdk.runtime.backends.base import Backend, ModelInfo, TensorSpec
from yolov6_sdk.runtime.backends.registry import parse_device

LOGGER = logging.getLogger(__name__)


class TorchBackend(Backend):
    """A checkpoint loaded with :func:`yolov6_sdk.weights.load` (fused, eval mode).

    Args:
        path: our ``.pt`` checkpoint or an official release ``.pt``.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        half: run in fp16 (CUDA only).

    ``infer`` takes a ``[B, 3, H, W]`` float tensor or numpy array (RGB, 0..1) and returns
    ``{"outputs": tensor [B, A, 5 + nc]}`` on :attr:`device` (cx, cy, w, h input pixels, 1.0, class scores).
    """

    kind = "torch"

    def __init__(self, path: str | Path, device: str = "auto", half: bool = False) -> None:
        self._torch = require("torch")
        super().__init__(path, self._resolve(device))
        if half and not self.device.startswith("cuda"):
            raise ConfigError(f"half=True needs a CUDA device, got device {device!r}; use fp32 on the CPU")
        from yolov6_sdk.weights import load

        loaded = load(self.path, fuse=True, device=self.device)
        self.model = loaded.model.half() if half else loaded.model
        self._dtype = self._torch.float16 if half else self._torch.float32
        dtype_name = "float16" if half else "float32"
        num_classes = loaded.model.num_classes
        self._info = ModelInfo(
            names=list(loaded.names),
            imgsz=(loaded.imgsz, loaded.imgsz),
            end2end=False,
            precision="fp16" if half else "fp32",
            inputs=(TensorSpec("images", (None, 3, None, None), dtype_name),),
            outputs=(TensorSpec("outputs", (None, None, 5 + num_classes), dtype_name),),
            extra={"model": loaded.name, "source": loaded.source, "sha256": loaded.sha256, **loaded.meta},
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
    def wants_torch(self) -> bool:
        return self.device.startswith("cuda")

    def infer(self, images: Any) -> dict[str, Any]:
        """Run ``images`` [B, 3, H, W] (tensor or numpy); returns ``{"outputs": tensor}`` on the device."""
        torch = self._torch
        if self.model is None:
            raise ArtifactError(f"the model of {self.path} is closed; create a new backend")
        batch = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        batch = batch.to(self.device, self._dtype, non_blocking=True)
        with torch.inference_mode():
            return {"outputs": self.model(batch)}

    def close(self) -> None:
        self.model = None
