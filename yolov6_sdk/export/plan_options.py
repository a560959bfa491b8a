"""Checks of ``yolov6-build``'s options against the source and the machine, one function per concern.

A single option's value is checked by :class:`~yolov6_sdk.export.options.BuildOptions` itself; these take the
checked options with what planning has read of the source (an ONNX file's contract) or resolved (the backend),
refuse what cannot be built with one clear error, and return the value the
:class:`~yolov6_sdk.export.plan.BuildPlan` records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolov6_sdk._optional import available
from yolov6_sdk.artifact.sidecar import current_gpu
from yolov6_sdk.artifact.spec import ARTIFACT_SUFFIXES, BackendKind, NmsMode
from yolov6_sdk.errors import BuildError, ConfigError, MissingDependencyError
from yolov6_sdk.export.options import DEFAULT_OPSET, DEFAULT_WORKSPACE_GIB, BuildOptions


def nms_mode(backend: str, end2end: bool) -> NmsMode | None:
    return ("trt" if backend == "tensorrt" else "ort") if end2end else None


def resolve_backend(backend: str) -> tuple[BackendKind, str]:
    """The backend ``backend`` (checked by :class:`BuildOptions`: "auto" or a build backend) resolves to on this
    machine, and why."""
    if backend in ("onnxruntime", "openvino"):
        return backend, "asked"  # type: ignore[return-value]  # one of BUILD_BACKENDS
    has_trt = available("tensorrt")
    gpu = current_gpu() if has_trt else None
    if backend == "auto":
        if has_trt and gpu is not None:
            return "tensorrt", f"auto: TensorRT and {gpu[0]} found"
        return "onnxruntime", "auto: " + ("no CUDA GPU visible" if has_trt else "TensorRT not installed")
    if not has_trt:
        raise MissingDependencyError(
            "--backend tensorrt needs TensorRT and an NVIDIA GPU with CUDA: pip install 'yolov6-sdk[trt]' on a "
            "machine with a GPU, or build for the CPU with --backend onnxruntime"
        )
    if gpu is None:
        raise BuildError("--backend tensorrt needs a CUDA GPU and none is visible; use --backend onnxruntime")
    return backend, f"asked, {gpu[0]}"


def check_qat_options(
    target: str, precision: str, backend: str, excludes: tuple[str, ...], sensitivity: bool
) -> tuple[str, str]:
    """(precision, calibration method) of a QAT build: int8 with the trained ranges ("qat")."""
    if precision == "fp16" or excludes or sensitivity:
        raise ConfigError("a QAT source builds as int8 with its trained ranges: drop --precision fp16, --exclude "
                          "and --sensitivity")  # fmt: skip
    if backend == "tensorrt" and target != "tensorrt":
        raise BuildError(
            f"this QAT model was trained for {target} (uint8 activations); TensorRT needs int8 symmetric ones: "
            "train it again with --qat-target tensorrt, or build for ONNX Runtime"
        )
    return "int8", "qat"


def check_static_batch(path: Path, info: Any, sizes: tuple[int, ...]) -> None:
    """Refuse batch sizes that an ONNX source (``info``: its OnnxInfo) with a fixed batch axis cannot serve."""
    static = info.inputs[0].shape[0]
    if static is not None and set(sizes) != {static}:
        raise BuildError(
            f"{path} has a fixed batch of {static} and cannot serve --batch {' '.join(map(str, sizes))}; pass "
            f"--batch {static}, or export with a dynamic batch (yolov6-build --weights PT exports one)"
        )


def resolve_dynamic_hw(wanted: bool, onnx_info: Any) -> bool:
    """Whether the artifact's input height and width are dynamic: ``wanted`` for a checkpoint, what an ONNX
    source records for it.

    Raises:
        ConfigError: asked of an ONNX source exported with a fixed size.
    """
    if onnx_info is None:
        return wanted
    recorded = onnx_info.meta.dynamic_hw
    if wanted and not recorded:
        raise ConfigError(
            f"{onnx_info.path} has a fixed input height and width; build from the checkpoint with --dynamic-hw "
            "(--weights), or drop --dynamic-hw"
        )
    return recorded


def resolve_multi_label(multi_label: bool | None, onnx_info: Any) -> bool:
    """The build's NMS semantics: ``multi_label`` (default False), or what an ONNX source records.

    Raises:
        BuildError: an ONNX source records the other choice (its graph or metadata would contradict the name).
    """
    if onnx_info is None:
        return bool(multi_label)
    recorded = onnx_info.meta.multi_label_or(bool(onnx_info.nms))
    if multi_label is not None and multi_label != recorded:
        kinds = {True: "multi-label", False: "single-label"}
        raise BuildError(
            f"{onnx_info.path} was exported with {kinds[recorded]} NMS, not {kinds[multi_label]}; build from the "
            f"checkpoint (--weights PT{' --multi-label' if multi_label else ''}), or drop "
            f"{'--multi-label' if multi_label else 'multi_label=False'} to keep the source's choice"
        )
    return recorded


def own_name(name: str | None, suffix: str) -> str | None:
    """``name`` as a file name with ``suffix`` (None when no name was given).

    Raises:
        ConfigError: a name with a folder in it, an empty one, or one ending in another artifact suffix.
    """
    if name is None:
        return None
    path = Path(name)
    if not path.name or path.name != name or path.name in (".", ".."):
        raise ConfigError(f"--name takes a file name without a folder, got {name!r}; choose the folder with -o DIR")
    if path.suffix in ARTIFACT_SUFFIXES and path.suffix != suffix:
        raise ConfigError(f"--name {name} ends in {path.suffix}, but this build makes a {suffix} file")
    return path.stem + suffix if path.suffix == suffix else name + suffix


def check_backend_options(
    backend: str, precision: str, sizes: tuple[int, ...], imgsz: tuple[int, int], end2end: bool, runs_variants: bool
) -> None:
    """Refuse what ``backend`` cannot make: fp16 for ONNX Runtime, a TensorRT batch list that is no profile,
    and int8 variants to be run in ONNX Runtime (``runs_variants``) that end in TensorRT's NMS plugin."""
    if precision == "fp16" and backend in ("onnxruntime", "openvino"):
        raise BuildError(
            f"fp16 is not built for {'ONNX Runtime' if backend == 'onnxruntime' else 'OpenVINO'}: CPUs run fp16 graphs through float casts, slower than fp32; build "
            "fp32 or int8 for the CPU (or bf16 with --backend openvino), or fp16 with --backend tensorrt on a GPU"
        )
    if precision == "bf16" and backend != "openvino":
        raise BuildError(
            f"bf16 is built for --backend openvino only (OpenVINO computes an fp32 IR in bf16 on CPUs with "
            f"AVX512-BF16 or AMX), not {backend}; add --backend openvino or build fp32"
        )
    if backend != "tensorrt":
        return
    engine_config(precision, sizes, imgsz, end2end)  # a bad --bs list fails here, before any work
    if end2end and runs_variants:
        raise ConfigError(
            "--val with --sensitivity or --exclude auto runs int8 variants in ONNX Runtime, which cannot run the "
            "TensorRT NMS plugin of --end2end; drop --end2end (NMS then runs on the host) or --val"
        )


def trt_settings(backend: str, options: BuildOptions) -> dict[str, Any]:
    """The builder settings and export opset as :class:`BuildPlan` fields, with their defaults filled in.

    Raises:
        ConfigError: a TensorRT setting for an ONNX Runtime build, or one the TensorRT builder refuses.
    """
    hardware = None if options.hardware_compat == "none" else options.hardware_compat
    given = [flag for flag, value in (("--workspace", options.workspace_gib), ("--timing-cache", options.timing_cache),
                                      ("--hardware-compat", hardware)) if value is not None]  # fmt: skip
    if given and backend != "tensorrt":
        raise ConfigError(f"{', '.join(given)} set the TensorRT builder; add --backend tensorrt or drop them")
    settings = {
        "workspace_gib": DEFAULT_WORKSPACE_GIB if options.workspace_gib is None else options.workspace_gib,
        "opset": DEFAULT_OPSET if options.opset is None else options.opset,
    }
    if backend == "tensorrt":  # the builder's own checks (workspace, level on this TensorRT), before any work
        engine_config("fp32", (1,), (640, 640), False, settings["workspace_gib"], None, options.hardware_compat)
    return settings


def engine_config(
    precision: str,
    sizes: tuple[int, ...],
    imgsz: tuple[int, int],
    end2end: bool,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache: Path | None = None,
    hardware_compat: str = "none",
) -> Any:
    """The TensorRT :class:`BuildConfig` (it checks the batch list: 1-3 ascending sizes, min [opt] max, the
    workspace and the hardware-compatibility level)."""
    from yolov6_sdk.export.tensorrt import BuildConfig

    return BuildConfig(
        precision=precision, batch_sizes=sizes, imgsz=imgsz, end2end=end2end, workspace_gib=workspace_gib,
        timing_cache=timing_cache, hardware_compatibility=hardware_compat,
    )  # fmt: skip
