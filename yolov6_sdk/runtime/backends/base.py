"""The small protocol every inference backend implements (style rule S12).

A backend loads one artifact, tells what it expects (:class:`ModelInfo`), runs a pre-processed batch and
returns the artifact's named outputs. Pre- and post-processing live outside the backends, shared by all.
Each backend class declares what it reads and takes in a :class:`BackendSpec`; the registry, the Detector and
the benchmark read those declarations, so a new backend is one module plus one registry line.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from yolov6_sdk.artifact.model_info import ModelInfo
from yolov6_sdk.artifact.spec import Precision
from yolov6_sdk.errors import ArtifactError


@dataclass(frozen=True)
class BackendSpec:
    """What one backend reads, takes and can do, declared on its class as ``spec``.

    Attributes:
        name: the name users pass as ``backend=`` (e.g. "openvino").
        suffixes: artifact suffixes it reads (keys of :data:`~yolov6_sdk.artifact.spec.ARTIFACT_SUFFIXES`);
            several backends may read one suffix.
        options: keyword options its constructor takes besides ``path`` and ``device``; the Detector passes it
            only these and refuses the others with one clear error.
        modules: Python modules it imports (checked installed before the class is chosen).
        install: the command that installs them.
        devices: device types it runs on ("cpu", "cuda").
        precisions: precisions it runs.
        torch_tensors: ``infer`` may take torch tensors on its device (GPU pre- and post-processing).
    """

    name: str
    suffixes: tuple[str, ...]
    options: tuple[str, ...]
    modules: tuple[str, ...]
    install: str
    devices: tuple[str, ...]
    precisions: tuple[Precision, ...]
    torch_tensors: bool = False


__all__ = ["Backend", "BackendSpec", "ModelInfo"]


class Backend(abc.ABC):
    """One loaded artifact on one device.

    ``infer(images)`` takes the pre-processed batch [B, 3, H, W] float32 RGB 0..1 (a numpy array, or a torch
    tensor already on :attr:`device` for GPU backends) and returns ``{output name: array or tensor}``. GPU
    backends return tensors on their device so post-processing can stay there.
    """

    spec: ClassVar[BackendSpec]

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
        """True when :meth:`infer` takes torch tensors on :attr:`device` (so pre-processing runs there): a backend
        declaring ``torch_tensors`` on a CUDA device."""
        return self.spec.torch_tensors and self.device.startswith("cuda")

    def check_batch_served(self, count: int) -> int:
        """``count`` (images in one batch) when it lies in the artifact's batch range; returns it.

        Raises:
            ArtifactError: a batch the artifact was not exported for; the message says how to run it.
        """
        low, high = self.info.min_batch, self.info.max_batch
        if count < low or (high is not None and count > high):
            served = f"{low}" if low == high else f"{low}..{high}"
            raise ArtifactError(
                f"{self.path} was exported for batch {served}, got {count} images; use Detector (it splits and "
                f"pads batches) or export with dynamic_batch=True"
            )
        return count

    @property
    def kind(self) -> str:
        """The backend's name (:attr:`BackendSpec.name`), e.g. "onnxruntime"."""
        return self.spec.name

    def close(self) -> None:  # noqa: B027  (optional hook, nothing to release by default)
        """Release sessions, contexts and device memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
