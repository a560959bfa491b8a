"""yolov6-sdk: YOLOv6 from training to the fastest engine a machine can run.

``import yolov6_sdk`` stays light: torch, TensorRT and the runtime are imported on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Detector": ("yolov6_sdk.runtime.detector", "Detector"),
    "Results": ("yolov6_sdk.runtime.results", "Results"),
    "detect": ("yolov6_sdk.runtime.detect", "detect"),
    "build_model": ("yolov6_sdk.models", "build_model"),
    "fuse": ("yolov6_sdk.models", "fuse"),
    "load": ("yolov6_sdk.weights", "load"),
    "build": ("yolov6_sdk.export.build", "build"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'yolov6_sdk' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
