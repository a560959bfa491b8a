"""Vocabularies and tables of the artifact contract, defined once for export, runtime, bench and the CLIs.

* :class:`IOSpec`: one model input or output (name, shape, numpy dtype name).
* Precisions, backend kinds and end-to-end NMS modes: a ``typing.Literal`` alias each, plus the tuple of its
  allowed values to check user input against.
* :data:`ARTIFACT_SUFFIXES`: artifact file suffix -> the format it holds (each backend declares which of these
  formats it reads, several backends may read one).
* Tensor names of the ONNX contract: input ``images`` float32 ``[B, 3, H, W]``; raw output ``outputs``
  ``[B, A, 5 + nc]``; or the end-to-end outputs of the EfficientNMS convention (:data:`END2END_OUTPUTS`):
  ``num_dets`` [B, 1] int32, ``det_boxes`` [B, K, 4] float32 xyxy, ``det_scores`` [B, K], ``det_classes`` [B, K]
  int32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class IOSpec:
    """One input or output: name, shape (None for a dynamic axis) and numpy dtype name ("float32", "int32", ...)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


Precision = Literal["fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16", "int8")

BackendKind = Literal["torch", "onnxruntime", "openvino", "tensorrt"]
BACKENDS: tuple[BackendKind, ...] = ("torch", "onnxruntime", "openvino", "tensorrt")
BUILD_BACKENDS: tuple[BackendKind, ...] = ("onnxruntime", "openvino", "tensorrt")  # what yolov6-build targets
BUILD_SUFFIXES: dict[BackendKind, str] = {"onnxruntime": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}

NmsMode = Literal["ort", "trt"]
"""End-to-end NMS inside the graph: "ort" (ONNX ``NonMaxSuppression``, ONNX Runtime) or "trt" (the
``EfficientNMS_TRT`` plugin, TensorRT). An artifact without NMS records ""."""
NMS_MODES: tuple[NmsMode, ...] = ("ort", "trt")

# file suffix (lower case) -> the artifact format it holds
ARTIFACT_SUFFIXES: dict[str, str] = {
    ".pt": "checkpoint",
    ".pth": "checkpoint",
    ".onnx": "onnx",
    ".xml": "openvino-ir",  # with its weights in the .bin beside it
    ".engine": "tensorrt-engine",
    ".plan": "tensorrt-engine",
}

INPUT_NAME = "images"
RAW_OUTPUT_NAME = "outputs"
END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")

__all__ = [
    "ARTIFACT_SUFFIXES",
    "BACKENDS",
    "BUILD_BACKENDS",
    "BUILD_SUFFIXES",
    "END2END_OUTPUTS",
    "INPUT_NAME",
    "NMS_MODES",
    "PRECISIONS",
    "RAW_OUTPUT_NAME",
    "BackendKind",
    "IOSpec",
    "NmsMode",
    "Precision",
]
