"""Backend selection: a dict from artifact kind to backend class (style rule S12).

Classes are named by module path and imported only when chosen, so importing this module never imports
onnxruntime, torch or tensorrt.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.spec import BACKENDS, SUFFIX_BACKENDS, BackendKind
from yolov6_sdk.errors import ArtifactError, ConfigError, MissingDependencyError
from yolov6_sdk.runtime.backends.base import Backend

# backend kind -> "module:Class"
BACKEND_CLASSES: dict[BackendKind, str] = {
    "onnxruntime": "yolov6_sdk.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "yolov6_sdk.runtime.backends.tensorrt:TensorRTBackend",
    "torch": "yolov6_sdk.runtime.backends.torch:TorchBackend",
}

_DEVICE = re.compile(r"^(?:(auto|cpu|cuda)(?::(\d+))?|(\d+))$")


def parse_device(device: str | int) -> tuple[str, int]:
    """Split a device into ``(type, index)``: "auto", "cpu", "cuda", "cuda:N" or "N" (= "cuda:N"); index 0 by
    default.

    Raises:
        ConfigError: any other value, e.g. "gpu" or "cuda:x".
    """
    match = _DEVICE.match(str(device).strip().lower())
    if match is not None and match.group(3) is not None:
        return "cuda", int(match.group(3))
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a GPU index N, got {device!r}")
    return match.group(1), int(match.group(2) or 0)


def canonical_device(device: str | int) -> str:
    """``device`` as the backends take it: "auto", "cpu", "cuda" or "cuda:N" (a bare index N -> "cuda:N").

    Raises:
        ConfigError: as :func:`parse_device`.
    """
    kind, index = parse_device(device)
    text = str(device).strip().lower()
    return kind if kind != "cuda" or text == "cuda" else f"cuda:{index}"


def _supported() -> str:
    by_backend = sorted(SUFFIX_BACKENDS.items(), key=lambda item: item[1])  # backends in alphabetical order
    return ", ".join(f"{suffix} ({kind})" for suffix, kind in by_backend)


def backend_kind(path: str | Path, backend: str = "auto") -> BackendKind:
    """The backend kind for ``path``: from its suffix when ``backend`` is "auto", else ``backend`` checked.

    Raises:
        ArtifactError: an unknown suffix, or a suffix the named backend does not read.
        ConfigError: an unknown backend name.
    """
    path = Path(path)
    suffix_kind = SUFFIX_BACKENDS.get(path.suffix.lower())
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"backend must be 'auto' or one of {', '.join(sorted(BACKENDS))}, got {backend!r}")
    if suffix_kind is None:
        raise ArtifactError(
            f"cannot tell what kind of model {str(path)!r} is from its suffix {path.suffix or '(none)'!r}; "
            f"supported: {_supported()}"
        )
    if backend not in ("auto", suffix_kind):
        raise ArtifactError(
            f"the {backend} backend does not read {path.suffix} files ({str(path)!r}); "
            f"use backend='auto' or a file it reads: {_supported()}"
        )
    return suffix_kind


def backend_class(kind: str) -> type[Backend]:
    """Import and return the backend class registered for ``kind``.

    Raises:
        ConfigError: an unknown kind.
        MissingDependencyError: the backend's runtime is not installed (raised by its module).
    """
    if kind not in BACKEND_CLASSES:
        raise ConfigError(f"unknown backend {kind!r}; known: {', '.join(BACKEND_CLASSES)}")
    module_name, class_name = BACKEND_CLASSES[kind].split(":")
    try:
        module = importlib.import_module(module_name)
    except MissingDependencyError:
        raise
    except ImportError as exc:
        extra = {"tensorrt": "trt", "torch": "train"}.get(kind)
        hint = f"pip install 'yolov6-sdk[{extra}]'" if extra else "pip install onnxruntime"
        raise MissingDependencyError(f"the {kind} backend cannot be imported ({exc}): {hint}") from exc
    return getattr(module, class_name)


def open_backend(
    path: str | Path,
    backend: str = "auto",
    device: str = "auto",
    options: Mapping[str, Any] | None = None,
) -> Backend:
    """Load ``path`` with the backend chosen by :func:`backend_kind` on ``device`` (see :func:`canonical_device`);
    ``options`` go to its constructor.

    Raises:
        ArtifactError: a missing file, a folder, an unknown suffix, or an artifact the backend cannot load.
    """
    path = Path(path)
    kind = backend_kind(path, backend)
    device = canonical_device(device)
    if not path.exists():
        raise ArtifactError(f"model file {str(path)!r} does not exist; check the path (cwd is {Path.cwd()})")
    if not path.is_file():
        raise ArtifactError(f"model path {str(path)!r} is not a file; pass the .onnx, .engine or .pt file itself")
    if path.stat().st_size == 0:
        raise ArtifactError(f"model file {str(path)!r} is empty (0 bytes); re-export or re-download it")
    return backend_class(kind)(path, device=device, **dict(options or {}))
