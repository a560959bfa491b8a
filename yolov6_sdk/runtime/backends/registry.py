"""Backend selection from the backends' own declarations (style rule S12).

:data:`BACKEND_CLASSES` is the one list of backends, as "module:Class" strings; each class declares what it
reads and takes in its :class:`~yolov6_sdk.runtime.backends.base.BackendSpec`. Backend modules import their
runtime (onnxruntime aside, a core dependency) only when a backend is constructed, so reading the
declarations imports no openvino, torch or tensorrt.

``backend="auto"`` takes, among the backends that read the file's suffix, run on the device asked and are
installed, the first in :data:`BACKEND_CLASSES`; for an ONNX file on a CPU with both ONNX Runtime and OpenVINO
installed it takes the one measured faster on this CPU (:mod:`yolov6_sdk.runtime.cpu_choice`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.spec import ARTIFACT_SUFFIXES
from yolov6_sdk.errors import ArtifactError, ConfigError, MissingDependencyError
from yolov6_sdk.runtime.backends.base import Backend, BackendSpec

# every backend, in the order "auto" prefers them
BACKEND_CLASSES: tuple[str, ...] = (
    "yolov6_sdk.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "yolov6_sdk.runtime.backends.openvino:OpenVINOBackend",
    "yolov6_sdk.runtime.backends.tensorrt:TensorRTBackend",
    "yolov6_sdk.runtime.backends.torch:TorchBackend",
)

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


@functools.cache
def backend_classes() -> dict[str, type[Backend]]:
    """Every registered backend class by its :attr:`BackendSpec.name`, in :data:`BACKEND_CLASSES` order."""
    classes: dict[str, type[Backend]] = {}
    for entry in BACKEND_CLASSES:
        module_name, class_name = entry.split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        unknown = [suffix for suffix in cls.spec.suffixes if suffix not in ARTIFACT_SUFFIXES]
        if unknown:
            raise TypeError(f"backend {cls.spec.name!r} declares suffixes {unknown} outside ARTIFACT_SUFFIXES")
        classes[cls.spec.name] = cls
    return classes


def backend_specs() -> tuple[BackendSpec, ...]:
    """The declarations of every registered backend, in preference order."""
    return tuple(cls.spec for cls in backend_classes().values())


def installed(spec: BackendSpec) -> bool:
    """True when every module ``spec`` needs can be found (without importing it)."""
    return all(importlib.util.find_spec(module) is not None for module in spec.modules)


def _supported() -> str:
    return "; ".join(f"{spec.name}: {', '.join(spec.suffixes)}" for spec in backend_specs())


def _named(path: Path, backend: str) -> BackendSpec:
    classes = backend_classes()
    if backend not in classes:
        raise ConfigError(f"backend must be 'auto' or one of {', '.join(classes)}, got {backend!r}")
    spec = classes[backend].spec
    if path.suffix.lower() not in spec.suffixes:
        raise ArtifactError(
            f"the {backend} backend does not read {path.suffix or 'suffix-less'} files ({str(path)!r}); "
            f"use backend='auto' or a file it reads ({_supported()})"
        )
    return spec


def _automatic(path: Path, device: str) -> BackendSpec:
    suffix = path.suffix.lower()
    readers = [spec for spec in backend_specs() if suffix in spec.suffixes]
    if not readers:
        known = ", ".join(ARTIFACT_SUFFIXES)
        raise ArtifactError(
            f"cannot tell what kind of model {str(path)!r} is from its suffix {path.suffix or '(none)'!r}; "
            f"supported: {known} ({_supported()})"
        )
    device_type = parse_device(device)[0]
    runnable = [spec for spec in readers if device_type == "auto" or device_type in spec.devices]
    ready = [spec for spec in runnable if installed(spec)] or runnable or readers
    if len(ready) > 1 and device_type in ("cpu", "auto"):
        from yolov6_sdk.runtime.cpu_choice import preferred_cpu_backend

        choice = preferred_cpu_backend(path, device, [spec.name for spec in ready])
        if choice is not None:
            return next(spec for spec in ready if spec.name == choice)
    return ready[0]


def choose_backend(path: str | Path, backend: str = "auto", device: str = "auto") -> BackendSpec:
    """The declaration of the backend that runs ``path`` on ``device``: ``backend`` checked, or the automatic
    choice (see the module docstring).

    Raises:
        ArtifactError: an unknown suffix, or a suffix the named backend does not read.
        ConfigError: an unknown backend name or device.
    """
    path = Path(path)
    return _automatic(path, device) if backend == "auto" else _named(path, backend)


def backend_kind(path: str | Path, backend: str = "auto", device: str = "auto") -> str:
    """The name of the backend :func:`choose_backend` picks."""
    return choose_backend(path, backend, device).name


def backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name``, its runtime checked installed.

    Raises:
        ConfigError: an unknown name.
        MissingDependencyError: its runtime is not installed; the message gives the install command.
    """
    classes = backend_classes()
    if name not in classes:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(classes)}")
    spec = classes[name].spec
    missing = [module for module in spec.modules if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingDependencyError(f"the {name} backend needs {', '.join(missing)}, not installed: {spec.install}")
    return classes[name]


def backend_options(spec: BackendSpec, path: Path, options: Mapping[str, Any], hints: Mapping[str, Any]) -> dict:
    """The constructor options for ``spec``: every entry of ``options`` (refused when the backend takes no such
    option) and the entries of ``hints`` it takes that are not None (others are dropped: the caller handles them).

    Raises:
        ConfigError: an option of ``options`` that ``spec`` does not take; the message names who takes it.
    """
    for option in options:
        if option not in spec.options:
            takers = [other for other in backend_specs() if option in other.options]
            files = ", ".join(f"{other.name} ({'/'.join(other.suffixes)})" for other in takers) or "no backend"
            raise ConfigError(
                f"{option} applies to {files}, not the {spec.name} backend that runs {path}; drop {option} or pass "
                f"an artifact (or backend=) that takes it"
            )
    taken = {key: value for key, value in hints.items() if key in spec.options and value is not None}
    return {**taken, **options}


def open_backend(
    path: str | Path,
    backend: str = "auto",
    device: str = "auto",
    options: Mapping[str, Any] | None = None,
    hints: Mapping[str, Any] | None = None,
) -> Backend:
    """Load ``path`` with the backend :func:`choose_backend` picks on ``device`` (see :func:`canonical_device`);
    ``options`` go to its constructor (each one it does not take is refused), ``hints`` only where taken.

    Raises:
        ArtifactError: a missing file, a folder, an unknown suffix, or an artifact the backend cannot load.
        ConfigError: an option the chosen backend does not take.
    """
    path = Path(path)
    device = canonical_device(device)
    spec = choose_backend(path, backend, device)
    kwargs = backend_options(spec, path, options or {}, hints or {})
    if not path.exists():
        raise ArtifactError(f"model file {str(path)!r} does not exist; check the path (cwd is {Path.cwd()})")
    if not path.is_file():
        raise ArtifactError(f"model path {str(path)!r} is not a file; pass the .onnx, .xml, .engine or .pt file itself")
    if path.stat().st_size == 0:
        raise ArtifactError(f"model file {str(path)!r} is empty (0 bytes); re-export or re-download it")
    return backend_class(spec.name)(path, device=device, **kwargs)
