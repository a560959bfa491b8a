"""The one place where optional heavy dependencies are imported (style rule S13)."""

from __future__ import annotations

import importlib
from types import ModuleType

from yolov6_sdk.errors import MissingDependencyError

# module name -> (pip extra that provides it, what it is needed for)
_EXTRAS = {
    "tensorrt": ("trt", "building and running TensorRT engines"),
    "cuda": ("trt", "TensorRT device memory without torch"),
    "torch": ("train", "the torch backend, export and training"),
    "faster_coco_eval": ("train", "COCO mAP evaluation"),
    "yaml": ("train", "reading YOLO data.yaml files"),
    "pytriton": ("serve", "yolov6-serve (Triton Inference Server)"),
    "tritonclient": ("serve", "the yolov6-serve client"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra, purpose = _EXTRAS.get(module.split(".")[0], ("", "this feature"))
        hint = f"pip install 'yolov6-sdk[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(f"{module} is needed for {purpose} but is not installed: {hint}") from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported (without raising)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
