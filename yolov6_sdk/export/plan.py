"""Planning a build: decide what will be made from checked :class:`BuildOptions`, before any work.

:func:`plan_build` reads the source once (checkpoint, ONNX or an untrained model), resolves the backend
(``auto``: TensorRT when it imports and a CUDA GPU is visible, else ONNX Runtime), the input size and the
artifact's name (:func:`yolov6_sdk.artifact.naming.artifact_name`: model, source digest, input size, precision,
batch profile, NMS mode, multi-label NMS; or the caller's ``name``), and refuses what the chosen backend cannot
make and an existing artifact of other weights at that name (unless ``force``); the checks against the source
and the machine live in :mod:`yolov6_sdk.export.plan_options`.
:func:`yolov6_sdk.export.build.run_build` then makes the :class:`BuildPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolov6_sdk.artifact.naming import RANDOM_SOURCE, artifact_name, recorded_source, source_tag
from yolov6_sdk.artifact.preprocess import check_imgsz
from yolov6_sdk.artifact.spec import BUILD_SUFFIXES, BackendKind, NmsMode, Precision
from yolov6_sdk.errors import BuildError, ConfigError
from yolov6_sdk.export.options import BuildOptions
from yolov6_sdk.export.plan_options import (
    check_backend_options,
    check_qat_options,
    check_static_batch,
    engine_config,
    nms_mode,
    own_name,
    resolve_backend,
    resolve_dynamic_hw,
    resolve_multi_label,
    trt_settings,
)

if TYPE_CHECKING:
    from yolov6_sdk.models import ModelConfig
    from yolov6_sdk.weights import LoadedModel

DEFAULT_WEIGHTS = Path("weights/yolov6n-shapes.pt")
DEFAULT_CALIB = Path("calib")
OFFICIAL_WEIGHTS_URL = "https://github.com/meituan/YOLOv6/releases/download/0.4.0"


@dataclass(frozen=True)
class BuildPlan:
    """What a build will do: the checked ``options`` it was asked, and what planning decided from them.

    ``weights`` / ``onnx``: the source file (``weights`` is the demo checkpoint when no source was given, the
    QAT checkpoint of ``options.qat``). ``source_sha256``: the sha256 hex digest of that file, or
    :data:`~yolov6_sdk.artifact.naming.RANDOM_SOURCE` for an untrained model. ``precision`` and
    ``calib_method`` are the options' unless the source is a QAT model (int8, "qat"); ``imgsz`` is (h, w)
    pixels, the source's own size when none was asked; ``calib`` is the calibration folder of a calibrated
    int8 build (else None). ``multi_label``: the NMS semantics the artifact runs (end-to-end) or records as the
    Detector's default (raw outputs). ``dynamic_hw``: the artifact's input height and width are dynamic
    (rectangular inference), ``imgsz`` their largest. ``workspace_gib`` and ``opset``: the TensorRT builder's
    memory limit and the export's ONNX opset with their defaults filled in. ``checkpoint``: the checkpoint as
    planning read it (the build exports from it instead of reading the file again).
    """

    options: BuildOptions
    weights: Path | None
    onnx: Path | None
    model: str
    source_sha256: str
    precision: Precision
    backend: BackendKind
    backend_reason: str
    imgsz: tuple[int, int]
    artifact: Path
    calib: Path | None
    calib_method: str
    multi_label: bool
    dynamic_hw: bool
    workspace_gib: float
    opset: int
    qat_target: str | None = None
    checkpoint: LoadedModel | None = field(default=None, compare=False, repr=False)

    @property
    def target(self) -> str:
        """Quantisation target: "tensorrt", "openvino" or "onnxruntime-cpu" (a QAT source's own target)."""
        return self.qat_target or {"tensorrt": "tensorrt", "openvino": "openvino"}.get(self.backend, "onnxruntime-cpu")

    @property
    def nms(self) -> NmsMode | None:
        """NMS mode the build exports into the graph (None: raw outputs)."""
        return nms_mode(self.backend, self.options.end2end)


@dataclass(frozen=True)
class _Source:
    """The build's source, read once: its files, an ONNX source's contract (``OnnxInfo``) or the checkpoint."""

    weights: Path | None
    onnx: Path | None
    onnx_info: Any
    checkpoint: LoadedModel | None
    sha256: str


def _inspect_onnx_source(path: Path) -> Any:
    """The :class:`~yolov6_sdk.export.tensorrt.OnnxInfo` of an ONNX source, read once for all planning checks.

    Raises:
        ArtifactError: the file is not readable ONNX, or keeps weights outside its folder. BuildError: it has no
            single [B, 3, H, W] input.
    """
    from yolov6_sdk.artifact.external_data import read_model_proto
    from yolov6_sdk.export.tensorrt import inspect_onnx

    info = inspect_onnx(path)
    read_model_proto(path)  # weights kept in other files must lie inside the source's folder
    if len(info.inputs) != 1 or len(info.inputs[0].shape) != 4:
        raise BuildError(
            f"{path}: expected one [B, 3, H, W] image input, got {[(i.name, i.shape) for i in info.inputs]}; "
            "pass an ONNX exported by yolov6-build or the SDK's export"
        )
    return info


def _shipped(relative: Path) -> Path:
    """``relative`` under the working directory when it exists there, else under the source checkout."""
    return relative if relative.exists() else Path(__file__).resolve().parents[2] / relative


def _read_source(options: BuildOptions) -> _Source:
    """Find the source the options name (the demo weights when none) and read it once: an ONNX file's contract
    and digest, or the checkpoint (checked, its model built) with its digest.

    Raises:
        BuildError: a source file that is not there. CheckpointError / ArtifactError: one that cannot be read.
    """
    weights = options.qat if options.qat is not None else options.weights
    for path in (weights, options.onnx):
        if path is not None and not path.is_file():
            raise BuildError(f"{path} does not exist or is not a file; check the path")
    if weights is None and options.onnx is None and not options.random_weights:
        weights = _shipped(DEFAULT_WEIGHTS)
        if not weights.is_file():
            raise BuildError(
                f"no --weights given and the demo weights {DEFAULT_WEIGHTS} are not there; pass --weights PT "
                "(an SDK or official YOLOv6 .pt) or --onnx ONNX, or --random-weights --model NAME for an "
                "untrained network (for timing only: it detects nothing)"
            )
    if options.onnx is not None:
        info = _inspect_onnx_source(options.onnx)
        return _Source(None, options.onnx, info, None, info.sha256)
    if weights is None:
        return _Source(None, None, None, None, RANDOM_SOURCE)
    from yolov6_sdk.weights import load

    checkpoint = load(weights)  # checked before torch reads it: a crafted file cannot make torch allocate gigabytes
    return _Source(weights, None, None, checkpoint, checkpoint.sha256)


def plan_build(options: BuildOptions) -> BuildPlan:
    """Decide what :func:`run_build` will make of ``options`` (nothing is written); see :class:`BuildOptions`
    for each option's meaning.

    Raises:
        BuildError: missing files, a static ONNX batch that cannot serve the batch sizes, fp16 for ONNX Runtime,
        an existing artifact of other weights at the output name (without ``force``), a ``multi_label`` other
        than an ONNX source records, a QAT checkpoint built as plain weights or the reverse.
        ConfigError: options the source or backend cannot take (``--dynamic-hw`` of a fixed-size ONNX,
        ``--model`` of other weights, TensorRT settings for ONNX Runtime). CheckpointError / ArtifactError: an
        unreadable source. MissingDependencyError: ``backend="tensorrt"`` without TensorRT.
    """
    source = _read_source(options)
    qat_target = _qat_target(source, options.qat is not None)
    demo = options.weights is None and options.onnx is None and options.qat is None
    model = _model_name(source, options.model, demo)
    imgsz = options.imgsz or check_imgsz(_source_imgsz(source, model))
    if source.onnx_info is None:
        _zoo_config(model).check_imgsz(imgsz)  # P6: multiples of 64
    backend, reason = resolve_backend(options.backend)
    precision, calib_method = options.precision, options.calib_method
    if qat_target is not None:
        precision, calib_method = check_qat_options(
            qat_target, precision, backend, options.exclude, options.sensitivity
        )
    runs_variants = options.val is not None and (options.sensitivity or "auto" in options.exclude)
    check_backend_options(backend, precision, options.batch_sizes, imgsz, options.end2end, runs_variants)
    settings = trt_settings(backend, options)
    multi_label = resolve_multi_label(options.multi_label, source.onnx_info)
    dynamic_hw = resolve_dynamic_hw(options.dynamic_hw, source.onnx_info)
    if source.onnx_info is not None:
        check_static_batch(source.onnx, source.onnx_info, options.batch_sizes)
    named = own_name(options.name, BUILD_SUFFIXES[backend])
    artifact = options.output / (named or _content_name(
        model, source, imgsz, precision, backend, options, multi_label, dynamic_hw
    ))  # fmt: skip
    if not options.force:
        check_replaceable(artifact, source.sha256)
    calibrated = precision == "int8" and qat_target is None
    calib = (options.calib or _shipped(DEFAULT_CALIB)) if calibrated else None
    return BuildPlan(
        options=options, weights=source.weights, onnx=source.onnx, model=model, source_sha256=source.sha256,
        precision=precision, backend=backend, backend_reason=reason, imgsz=imgsz, artifact=artifact, calib=calib,
        calib_method=calib_method, multi_label=multi_label, dynamic_hw=dynamic_hw, qat_target=qat_target,
        checkpoint=source.checkpoint, **settings,
    )  # fmt: skip


def _qat_target(source: _Source, wanted: bool) -> str | None:
    """The quantisation target a QAT source was trained for (None: not a QAT source).

    Raises:
        BuildError: a QAT checkpoint without ``--qat``, or ``--qat`` with a checkpoint that is not one.
    """
    if source.onnx_info is not None:
        meta = source.onnx_info.meta
        return meta.quant_target if meta.calibration_method == "qat" else None
    recorded = source.checkpoint.meta.get("qat") if source.checkpoint is not None else None
    weights = source.weights
    if recorded is not None and not wanted:
        raise BuildError(
            f"{weights} is a quantisation-aware training checkpoint (fake-quant weights and ranges); build it with "
            f"--qat {weights}, which exports its own Q/DQ ONNX, not as plain weights"
        )
    if wanted and not isinstance(recorded, dict):
        raise BuildError(
            f"--qat {weights} is not a quantisation-aware training checkpoint; make one with yolov6-train --qat "
            f"--teacher {weights}, or build this file with --weights"
        )
    return str(recorded.get("target")) if recorded is not None else None


def _content_name(
    model: str,
    source: _Source,
    imgsz: tuple[int, int],
    precision: str,
    backend: str,
    options: BuildOptions,
    multi_label: bool,
    dynamic_hw: bool,
) -> str:
    """The artifact's file name from what it holds: an engine's batch profile, a static ONNX source's fixed
    batch, the NMS inside an ONNX source or the one ``end2end`` exports, and its multi-label choice."""
    info = source.onnx_info
    if backend == "tensorrt":
        profile = engine_config(precision, options.batch_sizes, imgsz, options.end2end).profile
    else:
        static = info.inputs[0].shape[0] if info is not None else None
        profile = (static, static, static) if static else None
    nms = (info.nms or None) if info is not None else nms_mode(backend, options.end2end)
    suffix = BUILD_SUFFIXES[backend]
    return artifact_name(model, source.sha256, imgsz, precision, suffix, profile, nms, multi_label, dynamic_hw)


def check_replaceable(artifact: Path, source_sha256: str) -> None:
    """Refuse to replace an existing ``artifact`` built from another source than ``source_sha256``.

    Raises:
        BuildError: ``artifact`` exists and records another source, or none at all; the message names the file
            and says to pass ``--force`` or choose another name.
    """
    if not artifact.exists():
        return
    recorded = recorded_source(artifact)
    if recorded == source_sha256:
        return
    was = f"weights {source_tag(recorded)}" if recorded else "unrecorded weights (no sidecar or metadata)"
    raise BuildError(
        f"{artifact} exists and was built from {was}; this build is from weights {source_tag(source_sha256)} "
        "and would replace it. Pass --force to replace it, or choose another name (--name NAME or -o DIR)"
    )


def _model_name(source: _Source, model: str | None, demo: bool) -> str:
    """The zoo name of what is built; ``demo``: the source is the shipped demo checkpoint (no source given)."""
    if source.onnx_info is not None:
        return model or source.onnx_info.meta.model or source.onnx_info.path.stem
    if source.checkpoint is None:
        from yolov6_sdk.models import ZOO

        name = model or "yolov6n"
        if name not in ZOO:
            raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(ZOO)}")
        return name
    name, weights = source.checkpoint.name, source.weights
    if model is not None and model != name and demo:
        raise ConfigError(
            f"--model {model} without --weights: the demo weights {weights} are a {name}. Pass --weights with a "
            f"{model} checkpoint (official ones: {OFFICIAL_WEIGHTS_URL}/{model}.pt), or add --random-weights for an "
            f"untrained {model} (timing only)"
        )
    if model is not None and model != name:
        raise ConfigError(
            f"--model {model} does not match {weights}, which holds a {name}; drop --model (the checkpoint names "
            f"its model) or pass a {model} checkpoint"
        )
    return name


def _source_imgsz(source: _Source, model: str) -> int | tuple[int, int]:
    """The input size the source was trained or exported for: a checkpoint's ``imgsz`` (the model's official size
    for release files, which do not record it), a static ONNX input's H and W, else the model's official size
    (1280 for P6, 320 for Lite, 640 otherwise)."""
    if source.onnx_info is not None:
        h, w = source.onnx_info.inputs[0].shape[2:4]
        return (h, w) if h and w else 640
    return source.checkpoint.imgsz if source.checkpoint is not None else _zoo_config(model).imgsz


def _zoo_config(name: str) -> ModelConfig:
    from yolov6_sdk.models import get_config  # torch: imported only when a model is built

    return get_config(name)


__all__ = ["BuildOptions", "BuildPlan", "check_replaceable", "engine_config", "plan_build"]
