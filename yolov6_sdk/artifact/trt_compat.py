"""TensorRT 10-vs-11 differences, answered by feature probes (style rule S14).

This is the one module that asks what the installed TensorRT can do; nothing else in the SDK compares
TensorRT versions. Every probe looks at the attributes of the imported ``tensorrt`` module (or of any object
shaped like it), never at its version number:

* TensorRT 10.x builds weakly typed networks (``BuilderFlag.FP16``/``INT8``) or, opt-in, strongly typed ones
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``); its implicit INT8 calibrators
  (``IBuilderConfig.int8_calibrator``) are deprecated since 10.1.
* TensorRT 11.x removed the weak-typing flags, the calibrators and ``set_calibration_profile``: every network is
  strongly typed, FP16 must be in the ONNX and INT8 must be explicit Q/DQ.
* Both use the name-based I/O API (``num_io_tensors``, ``set_tensor_address``, ``execute_async_v3``), memory pools
  (``set_memory_pool_limit``), timing caches and hardware-compatibility levels.

The module also owns the lazy ``tensorrt`` import (through :func:`yolov6_sdk._optional.require`), the logger that
routes TensorRT's messages into ``logging.getLogger("yolov6_sdk.tensorrt")`` and the mapping of TensorRT data types
to numpy dtype names.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.spec import IOSpec
from yolov6_sdk.errors import BuildError, MissingDependencyError

LOGGER = logging.getLogger(__name__)
TRT_LOG = logging.getLogger("yolov6_sdk.tensorrt")

# Releases that other YOLO deployment stacks refuse (ultralytics PR #14240 excludes 10.2.0).
KNOWN_BAD_VERSIONS = {"10.2.0": "engines built by TensorRT 10.2.0 gave wrong detections in YOLO deployments"}

# TensorRT DataType member name -> numpy dtype name
DTYPE_NAMES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}

# hardware-compatibility level (our spelling) -> HardwareCompatibilityLevel member name
HARDWARE_LEVELS = {"ampere_plus": "AMPERE_PLUS", "same_compute_capability": "SAME_COMPUTE_CAPABILITY"}

_LOCK = threading.Lock()
_LOGGERS: dict[int, Any] = {}


@dataclass(frozen=True)
class TrtFeatures:
    """What one TensorRT installation offers.

    Attributes:
        version: ``tensorrt.__version__``.
        name_based_io: the TensorRT 10+ engine API (``ICudaEngine.num_io_tensors``); required by the SDK.
        strongly_typed_flag: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists.
        weak_typing: precision builder flags exist (``BuilderFlag.FP16``); False means strong typing is mandatory.
        fp16_flag, int8_flag: ``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` exist.
        implicit_calibrator: ``IBuilderConfig.int8_calibrator`` exists (deprecated in 10.1, removed in 11).
        timing_cache: ``IBuilderConfig.create_timing_cache`` exists.
        memory_pool_limit: ``IBuilderConfig.set_memory_pool_limit`` exists.
        hardware_levels: our names of the hardware-compatibility levels offered ("ampere_plus", ...).
        device_memory_v2: ``ICudaEngine.device_memory_size_v2`` exists (``device_memory_size`` is gone in 11).
        tf32_flag: ``BuilderFlag.TF32`` exists (set by default: fp32 layers may run in TF32).
    """

    version: str
    name_based_io: bool
    strongly_typed_flag: bool
    weak_typing: bool
    fp16_flag: bool
    int8_flag: bool
    implicit_calibrator: bool
    timing_cache: bool
    memory_pool_limit: bool
    hardware_levels: tuple[str, ...]
    device_memory_v2: bool
    tf32_flag: bool = False

    @property
    def strongly_typed_only(self) -> bool:
        """Every network is strongly typed (TensorRT 11): no precision flags to fall back on."""
        return not self.weak_typing


def probe(trt: Any) -> TrtFeatures:
    """Probe the features of ``trt`` (the imported ``tensorrt`` module, or a stand-in with the same attributes)."""
    builder_flag = getattr(trt, "BuilderFlag", None)
    config_cls = getattr(trt, "IBuilderConfig", None)
    engine_cls = getattr(trt, "ICudaEngine", None)
    levels = getattr(trt, "HardwareCompatibilityLevel", None)
    fp16 = hasattr(builder_flag, "FP16")
    return TrtFeatures(
        version=str(getattr(trt, "__version__", "")),
        name_based_io=hasattr(engine_cls, "num_io_tensors"),
        strongly_typed_flag=hasattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED"),
        weak_typing=fp16,
        fp16_flag=fp16,
        int8_flag=hasattr(builder_flag, "INT8"),
        implicit_calibrator=hasattr(config_cls, "int8_calibrator"),
        timing_cache=hasattr(config_cls, "create_timing_cache"),
        memory_pool_limit=hasattr(config_cls, "set_memory_pool_limit"),
        hardware_levels=tuple(ours for ours, theirs in HARDWARE_LEVELS.items() if hasattr(levels, theirs)),
        device_memory_v2=hasattr(engine_cls, "device_memory_size_v2"),
        tf32_flag=hasattr(builder_flag, "TF32"),
    )


def load_tensorrt() -> ModuleType:
    """Import ``tensorrt`` (lazily, through the optional-dependency helper) and check it has the 10+ API.

    Raises:
        MissingDependencyError: TensorRT is not installed, or is older than 10 (no name-based I/O API).
    """
    trt = require("tensorrt")
    features = probe(trt)
    if not features.name_based_io:
        raise MissingDependencyError(
            f"TensorRT {features.version or '(unknown version)'} lacks the name-based engine API of TensorRT 10+; "
            "install TensorRT 10 or 11: pip install 'yolov6-sdk[trt]'"
        )
    problem = KNOWN_BAD_VERSIONS.get(".".join(features.version.split(".")[:3]))
    if problem:
        LOGGER.warning("TensorRT %s: %s; use another release", features.version, problem)
    return trt


def trt_logger(trt: Any) -> Any:
    """The process-wide TensorRT logger for ``trt``, routing messages into ``yolov6_sdk.tensorrt``.

    Created once per ``tensorrt`` module (TensorRT treats its logger as a singleton that must outlive every
    builder, runtime and engine). The first call also registers TensorRT's bundled plugins
    (``init_libnvinfer_plugins``), which parsing or deserialising ``EfficientNMS_TRT`` needs.
    Severities map as INTERNAL_ERROR -> CRITICAL, ERROR -> ERROR, WARNING -> WARNING, INFO -> DEBUG and
    VERBOSE -> level 5 (TensorRT's INFO is build chatter).
    """
    with _LOCK:
        logger = _LOGGERS.get(id(trt))
        if logger is None:
            logger = _make_logger(trt)
            trt.init_libnvinfer_plugins(logger, "")
            _LOGGERS[id(trt)] = logger
    return logger


def _make_logger(trt: Any) -> Any:
    severity = trt.ILogger.Severity
    levels = {
        severity.INTERNAL_ERROR: logging.CRITICAL,
        severity.ERROR: logging.ERROR,
        severity.WARNING: logging.WARNING,
        severity.INFO: logging.DEBUG,
        severity.VERBOSE: 5,
    }

    class _RoutedLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev: Any, msg: str) -> None:
            level = levels.get(sev, logging.INFO)
            if TRT_LOG.isEnabledFor(level):
                TRT_LOG.log(level, "%s", msg)

    return _RoutedLogger()


def network_flags(trt: Any, features: TrtFeatures, strongly_typed: bool) -> int:
    """Flags for ``builder.create_network``: ``1 << STRONGLY_TYPED`` or 0 (explicit batch is implicit since 10).

    Raises:
        BuildError: a weakly typed network was asked of a TensorRT that has only strong typing, or a strongly
            typed one of a TensorRT without the flag.
    """
    if strongly_typed:
        if not features.strongly_typed_flag:
            raise BuildError(
                f"TensorRT {features.version} cannot build strongly typed networks; use TensorRT 10 or newer"
            )
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if features.strongly_typed_only:
        raise BuildError(
            f"TensorRT {features.version} builds strongly typed networks only (weak typing was removed in 11); "
            "drop strongly_typed=False"
        )
    return 0


def set_workspace(trt: Any, config: Any, features: TrtFeatures, nbytes: int) -> None:
    """Limit the builder's workspace memory pool to ``nbytes`` bytes."""
    if not features.memory_pool_limit:
        raise BuildError(f"TensorRT {features.version} has no memory-pool API; use TensorRT 10 or newer")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))


def set_precision_flags(trt: Any, config: Any, features: TrtFeatures, flags: tuple[str, ...]) -> None:
    """Set weak-typing precision flags by name ("FP16", "INT8") on a builder config.

    Raises:
        BuildError: the installed TensorRT lacks one of the flags (TensorRT 11 has none of them).
    """
    for name in flags:
        if not hasattr(trt.BuilderFlag, name):
            raise BuildError(
                f"TensorRT {features.version} has no BuilderFlag.{name} (removed in TensorRT 11); "
                "build from an fp16 or Q/DQ ONNX as a strongly typed network instead"
            )
        config.set_flag(getattr(trt.BuilderFlag, name))


def clear_tf32(trt: Any, config: Any, features: TrtFeatures) -> None:
    """Clear ``BuilderFlag.TF32`` (on by default) so fp32 layers compute in fp32, not TF32's 10-bit mantissas."""
    if features.tf32_flag:
        config.clear_flag(trt.BuilderFlag.TF32)


def set_hardware_compatibility(trt: Any, config: Any, features: TrtFeatures, level: str) -> None:
    """Set ``config.hardware_compatibility_level`` to ``level`` ("none", "ampere_plus", "same_compute_capability")."""
    if level == "none":
        return
    if level not in features.hardware_levels:
        offered = ", ".join(features.hardware_levels) or "none"
        raise BuildError(
            f"TensorRT {features.version} offers no hardware-compatibility level {level!r} (offered: {offered})"
        )
    config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HARDWARE_LEVELS[level])


def dtype_name(trt_dtype: Any) -> str:
    """numpy dtype name of a TensorRT ``DataType`` member ("float32", "float16", "int32", ...)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    return DTYPE_NAMES.get(name, name.lower())


def engine_device_memory(engine: Any, features: TrtFeatures) -> int:
    """Bytes of activation memory an execution context of ``engine`` needs."""
    return int(engine.device_memory_size_v2 if features.device_memory_v2 else engine.device_memory_size)


def engine_io(trt: Any, engine: Any) -> tuple[tuple[IOSpec, ...], tuple[IOSpec, ...]]:
    """Inputs and outputs of a deserialised engine, by the name-based API; dynamic axes (-1) become None."""
    inputs, outputs = [], []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        shape = tuple(None if int(d) < 0 else int(d) for d in engine.get_tensor_shape(name))
        spec = IOSpec(name, shape, dtype_name(engine.get_tensor_dtype(name)))
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
    return tuple(inputs), tuple(outputs)
