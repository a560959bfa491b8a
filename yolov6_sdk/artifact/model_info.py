"""What the runtime needs to know about an artifact (:class:`ModelInfo`), read from its inputs, outputs and
recorded metadata the same way for every backend that reads ONNX graphs (ONNX Runtime, OpenVINO).

An SDK export records class names, input size, precision and NMS semantics in its metadata (ONNX
``metadata_props``, OpenVINO IR ``rt_info``); a graph from elsewhere is accepted when its shapes are a YOLOv6
model's: one float input ``[B, 3, H, W]`` and either the raw output ``[B, anchors, 5 + classes]`` or the
end-to-end outputs of :data:`~yolov6_sdk.artifact.spec.END2END_OUTPUTS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from yolov6_sdk.artifact.meta import ArtifactMeta
from yolov6_sdk.artifact.preprocess import MIN_SIDE, check_imgsz
from yolov6_sdk.artifact.spec import END2END_OUTPUTS, IOSpec, Precision
from yolov6_sdk.errors import ArtifactError, ConfigError

LOGGER = logging.getLogger(__name__)

STRIDE_SETS = ((8, 16, 32), (8, 16, 32, 64))  # output strides of YOLOv6 P5 and P6 models


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about an artifact.

    Attributes:
        names: class names, index = class id.
        imgsz: (H, W) the artifact was exported for.
        end2end: the artifact emits the EfficientNMS outputs (NMS inside) instead of ``outputs`` [B, A, 5+nc].
        multi_label: the NMS semantics the artifact records (a box once per class above conf, or only its
            best class); see :meth:`~yolov6_sdk.artifact.meta.ArtifactMeta.multi_label_or`.
        precision: "fp32", "fp16", "bf16" or "int8": what runs (a backend may run an artifact in another
            precision than it records, e.g. OpenVINO's bf16 on an fp32 graph).
        max_batch: largest batch the artifact serves (None: unbounded).
        min_batch: smallest batch it serves.
        inputs, outputs: tensor specs (:class:`~yolov6_sdk.artifact.spec.IOSpec`).
        meta: what the artifact records (:class:`~yolov6_sdk.artifact.meta.ArtifactMeta`; empty for a graph
            from elsewhere).
        extra: what the backend adds (the compiled precision, device memory, ...).
    """

    names: list[str]
    imgsz: tuple[int, int]
    end2end: bool
    multi_label: bool = False
    precision: Precision = "fp32"
    max_batch: int | None = None
    min_batch: int = 1
    inputs: tuple[IOSpec, ...] = ()
    outputs: tuple[IOSpec, ...] = ()
    meta: ArtifactMeta = field(default_factory=ArtifactMeta)
    extra: dict[str, Any] = field(default_factory=dict)


RawOutputProbe = Callable[[tuple[int, int]], tuple[int, int]]
"""Runs one gray image of (H, W) and returns the raw output's (anchors, columns); for graphs whose output
shape is symbolic."""


def graph_model_info(
    where: str,
    meta: ArtifactMeta,
    inputs: Sequence[IOSpec],
    outputs: Sequence[IOSpec],
    imgsz: int | tuple[int, int] | None,
    probe: RawOutputProbe,
) -> ModelInfo:
    """The :class:`ModelInfo` of a graph with ``inputs`` / ``outputs`` and recorded metadata ``meta``.

    Args:
        where: the artifact's path, for messages.
        meta: what the graph records (:func:`~yolov6_sdk.artifact.meta.read_meta`); empty for a foreign graph.
        imgsz: the (H, W) the caller asks for; needed when the graph's input size is dynamic and unrecorded.
        probe: see :data:`RawOutputProbe`; called only for an unrecorded graph with a symbolic raw output.

    Raises:
        ArtifactError: the graph is not a YOLOv6 export.
        ConfigError: ``imgsz`` disagrees with a fixed input, or is needed and missing.
    """
    end2end = {spec.name for spec in outputs} >= set(END2END_OUTPUTS)
    if not end2end and (not outputs or len(outputs[0].shape) != 3):
        raise ArtifactError(
            f"{where} is not a YOLOv6 export: expected output [B, anchors, 5 + classes] or the "
            f"{', '.join(END2END_OUTPUTS)} outputs, got {[(s.name, s.shape) for s in outputs]}"
        )
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, None):
        raise ArtifactError(f"{where}: expected one input [B, 3, H, W], got {[s.shape for s in inputs]}")
    if inputs[0].dtype not in ("float32", "float16"):
        raise ArtifactError(f"{where}: expected a float32 or float16 input, got {inputs[0].dtype}")
    batch = inputs[0].shape[0]
    precision = meta.precision or ("fp16" if inputs[0].dtype == "float16" else "fp32")
    size = _imgsz(where, meta, inputs[0], imgsz)
    return ModelInfo(
        names=_names(where, meta, outputs, size, end2end, probe),
        imgsz=size,
        end2end=end2end,
        multi_label=meta.multi_label_or(end2end),
        precision=precision,
        max_batch=batch,
        min_batch=batch or 1,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        meta=meta,
    )


def _names(
    where: str,
    meta: ArtifactMeta,
    outputs: Sequence[IOSpec],
    imgsz: tuple[int, int],
    end2end: bool,
    probe: RawOutputProbe,
) -> list[str]:
    """Recorded class names, else "0".."nc-1" with nc from the raw output's last axis (whose shape must then
    be a YOLOv6 model's, see :func:`check_unrecorded_raw_output`)."""
    if meta.names:
        return list(meta.names)
    if end2end:
        LOGGER.warning("%s records no class names; classes are shown by number", where)
        return []
    anchors, columns = outputs[0].shape[1:]
    if anchors is None or columns is None:  # symbolic in the graph: run one gray image to learn them
        anchors, columns = probe(imgsz)
    check_unrecorded_raw_output(where, anchors, columns, imgsz)
    return [str(i) for i in range(columns - 5)]


def _imgsz(where: str, meta: ArtifactMeta, spec: IOSpec, asked: int | tuple[int, int] | None) -> tuple[int, int]:
    fixed = spec.shape[2:]
    known = meta.imgsz
    if known is None and None not in fixed:
        known = check_imgsz((int(fixed[0]), int(fixed[1])), stride=1)  # type: ignore[arg-type]  # bounded as a file's
    if asked is None:
        if known is None:
            raise ConfigError(
                f"{where} has a dynamic input size and records no imgsz; pass imgsz=(H, W), multiples of 32"
            )
        return known
    size = check_imgsz(asked)
    if None not in fixed and size != tuple(fixed):
        raise ConfigError(f"{where} takes input {tuple(fixed)} only, got imgsz={asked!r}; drop imgsz")
    return size


def check_unrecorded_raw_output(where: str, anchors: int, columns: int, imgsz: tuple[int, int]) -> None:
    """Refuse a raw ``[B, anchors, columns]`` output that no YOLOv6 model gives at input ``imgsz`` (H, W):
    one row per anchor point of the strides 8, 16, 32 (P5 models) or 8..64 (P6), and 5 + classes columns.

    Raises:
        ArtifactError: another shape; the model is not a YOLOv6 export.
    """
    height, width = imgsz
    expected = sorted({sum((height // s) * (width // s) for s in strides) for strides in STRIDE_SETS})
    if anchors not in expected or columns < 6:
        raise ArtifactError(
            f"{where} is not a YOLOv6 export: its output is [B, {anchors}, {columns}], but a YOLOv6 model at input "
            f"{height}x{width} gives [B, {' or '.join(map(str, expected))}, 5 + classes]; export the model with "
            "yolov6-build (it records the class names), or pass the imgsz it was exported at"
        )


InputRange = tuple[tuple[int, int], tuple[int, int] | None]
"""``(smallest, largest)`` (h, w) inputs of a dynamic-shape artifact; largest None: unbounded."""


def served_input_range(info: ModelInfo, imgsz: tuple[int, int], where: str) -> InputRange | None:
    """The :data:`InputRange` of the artifact ``where`` described by ``info``, None when its input size is fixed,
    checked against the model input size ``imgsz`` (h, w) a caller asks for.

    The range comes from what the artifact records (``imgsz_min`` / ``imgsz_max``: the ONNX metadata, or the
    engine's sidecar from its optimisation profile; bounded when read).

    Raises:
        ConfigError: ``imgsz`` differs from a fixed input size, or lies outside the recorded range.
    """
    dims = info.inputs[0].shape[2:] if info.inputs else (None, None)
    if None not in dims:
        if len(dims) == 2 and tuple(dims) != imgsz:
            raise ConfigError(f"{where} takes input {tuple(dims)} only, got imgsz={imgsz}; drop imgsz")
        return None
    low, high = info.meta.imgsz_min or (MIN_SIDE, MIN_SIDE), info.meta.imgsz_max
    (height, width), largest = imgsz, high or imgsz
    if height < low[0] or width < low[1] or height > largest[0] or width > largest[1]:
        raise ConfigError(
            f"{where} serves inputs from {low[0]}x{low[1]} to {largest[0]}x{largest[1]} (its dynamic-shape profile), "
            f"got imgsz={imgsz}; pass an imgsz in that range, or re-export (yolov6-build) at the size you need"
        )
    return low, high
