"""The small protocol every inference backend implements (style rule S12).

A backend loads one artifact, tells what it expects (:class:`ModelInfo`), runs a pre-processed batch and
returns the artifact's named outputs. Pre- and post-processing live outside the backends, shared by all.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.spec import IOSpec, Precision


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about an artifact.

    Attributes:
        names: class names, index = class id.
        imgsz: (H, W) the artifact was exported for.
        end2end: the artifact emits the EfficientNMS outputs (NMS inside) instead of ``outputs`` [B, A, 5+nc].
        multi_label: the NMS semantics the artifact records (a box once per class above conf, or only its
            best class); see :func:`~yolov6_sdk.artifact.sidecar.recorded_multi_label`.
        precision: "fp32", "fp16" or "int8".
        max_batch: largest batch the artifact serves (None: unbounded).
        min_batch: smallest batch it serves.
        inputs, outputs: tensor specs (:class:`~yolov6_sdk.artifact.spec.IOSpec`).
        extra: anything else the artifact recorded (metadata_props, sidecar fields).
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
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """One loaded artifact on one device.

    ``infer(images)`` takes the pre-processed batch [B, 3, H, W] float32 RGB 0..1 (a numpy array, or a torch
    tensor already on :attr:`device` for GPU backends) and returns ``{output name: array or tensor}``. GPU
    backends return tensors on their device so post-processing can stay there.
    """

    kind: str = ""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        self.path = Path(path)
        self.device = device

    @property
    @abc.abstractmethod
    def info(self) -> ModelInfo:
        """What the loaded artifact expects and emits."""

    @abc.abstractmethod
    def infer(self, images: Any) -> dict[str, Any]:
        """Run one batch; see the class docstring for the contract."""

    @property
    def wants_torch(self) -> bool:
        """True when :meth:`infer` takes torch tensors on :attr:`device` (so pre-processing runs there)."""
        return False

    def close(self) -> None:  # noqa: B027  (optional hook, nothing to release by default)
        """Release sessions, contexts and device memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
