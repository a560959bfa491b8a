"""Planning a build: check ``yolov6-build``'s options and decide what will be made, before any work.

:func:`plan_build` resolves the source (checkpoint, ONNX or an untrained model), the backend (``auto``:
TensorRT when it imports and a CUDA GPU is visible, else ONNX Runtime), the input size, the batch sizes and
the artifact's name (:func:`yolov6_sdk.artifact.naming.artifact_name`: model, source digest, input size,
precision, batch profile, NMS mode, multi-label NMS; or the caller's ``name``), and refuses what the chosen
backend cannot make and an existing artifact of other weights at that name (unless ``force``); the checks of
single options live in :mod:`yolov6_sdk.export.plan_options`.
:func:`yolov6_sdk.export.build.run_build` then makes the :class:`BuildPlan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.naming import RANDOM_SOURCE, artifact_name, recorded_source, source_tag
from yolov6_sdk.artifact.preprocess import check_imgsz
from yolov6_sdk.artifact.sidecar import file_sha256
from yolov6_sdk.artifact.spec import BUILD_SUFFIXES, BackendKind, NmsMode, Precision
from yolov6_sdk.errors import BuildError, CheckpointError, ConfigError
from yolov6_sdk.export import calibration
from yolov6_sdk.export.plan_options import (
    DEFAULT_OPSET,
    DEFAULT_WORKSPACE_GIB,
    check_backend_options,
    check_batches,
    check_precision_options,
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

DEFAULT_WEIGHTS = Path("weights/yolov6n-shapes.pt")
DEFAULT_CALIB = Path("calib")
OFFICIAL_WEIGHTS_URL = "https://github.com/meituan/YOLOv6/releases/download/0.4.0"


@dataclass(frozen=True)
class BuildPlan:
    """What a build will do (validated options; see :func:`plan_build` for their meaning).

    ``source_sha256`` is the sha256 hex digest of ``weights`` or ``onnx``, or
    :data:`~yolov6_sdk.artifact.naming.RANDOM_SOURCE` for an untrained model. ``multi_label``: the NMS
    semantics the artifact runs (end-to-end) or records as the Detector's default (raw outputs). ``max_ap_drop``
    is a fraction of mAP (0.01 = one point). ``workspace_gib``, ``timing_cache`` and ``hardware_compat`` are the
    TensorRT builder's settings; ``opset`` is the ONNX opset of an export from a checkpoint. ``dynamic_hw``: the
    artifact's input height and width are dynamic (rectangular inference), the square ``imgsz`` their largest.
    """

    weights: Path | None
    onnx: Path | None
    model: str
    random_weights: bool
    source_sha256: str
    precision: Precision
    backend: BackendKind
    backend_reason: str
    batch_sizes: tuple[int, ...]
    imgsz: tuple[int, int]
    end2end: bool
    output: Path
    artifact: Path
    calib: Path | None = None
    calib_method: str = "minmax"
    calib_size: int = calibration.DEFAULT_CALIB_SIZE
    calib_batch: int = 8
    val: Path | None = None
    sensitivity: bool = False
    exclude: tuple[str, ...] = ()
    max_ap_drop: float = 0.01
    max_error: float = 0.02
    multi_label: bool = False
    workspace_gib: float = DEFAULT_WORKSPACE_GIB
    timing_cache: Path | None = None
    hardware_compat: str = "none"
    opset: int = DEFAULT_OPSET
    qat_target: str | None = None
    dynamic_hw: bool = False

    @property
    def target(self) -> str:
        """Quantisation target: "tensorrt", "openvino" or "onnxruntime-cpu" (a QAT source's own target)."""
        return self.qat_target or {"tensorrt": "tensorrt", "openvino": "openvino"}.get(self.backend, "onnxruntime-cpu")

    @property
    def nms(self) -> NmsMode | None:
        """NMS mode the build exports into the graph (None: raw outputs)."""
        return nms_mode(self.backend, self.end2end)


def _inspect_onnx_source(path: Path) -> Any:
    """The :class:`~yolov6_sdk.export.tensorrt.OnnxInfo` of an ONNX source, read once for all planning checks.

    Raises:
        ArtifactError: the file is not readable ONNX. BuildError: it has no single [B, 3, H, W] input.
    """
    from yolov6_sdk.export.tensorrt import inspect_onnx

    info = inspect_onnx(path)
    if len(info.inputs) != 1 or len(info.inputs[0].shape) != 4:
        raise BuildError(
            f"{path}: expected one [B, 3, H, W] image input, got {[(i.name, i.shape) for i in info.inputs]}; "
            "pass an ONNX exported by yolov6-build or the SDK's export"
        )
    return info


def _shipped(relative: Path) -> Path:
    """``relative`` under the working directory when it exists there, else under the source checkout."""
    return relative if relative.exists() else Path(__file__).resolve().parents[2] / relative


def _resolve_source(weights: Path | None, onnx_path: Path | None, random_weights: bool) -> tuple[Path | None, ...]:
    if weights is not None and onnx_path is not None:
        raise ConfigError("pass either --weights or --onnx, not both")
    if random_weights and (weights is not None or onnx_path is not None):
        raise ConfigError("--random-weights builds an untrained network; it takes no --weights or --onnx")
    for path in (weights, onnx_path):
        if path is not None and not path.is_file():
            raise BuildError(f"{path} does not exist or is not a file; check the path")
    if weights is None and onnx_path is None and not random_weights:
        found = _shipped(DEFAULT_WEIGHTS)
        if not found.is_file():
            raise BuildError(
                f"no --weights given and the demo weights {DEFAULT_WEIGHTS} are not there; pass --weights PT "
                "(an SDK or official YOLOv6 .pt) or --onnx ONNX, or --random-weights --model NAME for an "
                "untrained network (for timing only: it detects nothing)"
            )
        weights = found
    return weights, onnx_path


def plan_build(
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    model: str | None = None,
    precision: str = "fp32",
    calib: str | Path | None = None,
    calib_method: str = "minmax",
    calib_size: int = calibration.DEFAULT_CALIB_SIZE,
    backend: str = "auto",
    batch_sizes: Sequence[int] = (1,),
    imgsz: int | Sequence[int] | None = None,
    end2end: bool = False,
    output: str | Path = "engines",
    val: str | Path | None = None,
    sensitivity: bool = False,
    exclude: Sequence[str] | str = (),
    max_ap_drop: float = 0.01,
    max_error: float = 0.02,
    random_weights: bool = False,
    calib_batch: int = 8,
    name: str | None = None,
    force: bool = False,
    multi_label: bool | None = None,
    workspace_gib: float | None = None,
    timing_cache: str | Path | None = None,
    hardware_compat: str = "none",
    opset: int | None = None,
    qat: str | Path | None = None,
    dynamic_hw: bool = False,
) -> BuildPlan:
    """Check the options and decide what :func:`run_build` will make (nothing is written).

    ``weights``: an SDK or official checkpoint (default ``weights/yolov6n-shapes.pt``); ``onnx``: an fp32 ONNX
    instead; ``random_weights``: an untrained ``model`` (timing only). ``calib``: calibration images for int8
    (default ``calib/``, the shipped set). ``exclude``: node names or module-path patterns
    (``detect.cls_convs.*``) to keep float, or "auto" (greedy, from the sensitivity analysis). ``name``: the
    artifact's file name in ``output`` (suffix optional) instead of the content name of
    :func:`~yolov6_sdk.artifact.naming.artifact_name`. ``force``: replace an artifact built from other weights.
    ``multi_label``: NMS keeps a box once per class above conf (True, COCO evaluation) or only its best class
    (False); None: False for a checkpoint, what an ONNX source records for ``onnx``. ``max_ap_drop``: mAP50-95
    the int8 artifact may lose against fp32 with ``exclude="auto"`` and ``val``, a fraction (0.01 = one point).
    TensorRT only (as trtexec's options): ``workspace_gib`` (default 4), ``timing_cache`` (default: beside the
    engine), ``hardware_compat`` ("none", "ampere_plus", "same_compute_capability"). ``opset``: ONNX opset of
    the export from ``weights`` (default 13). ``qat``: a quantisation-aware training checkpoint instead of
    ``weights``; its Q/DQ ONNX is exported from the fake-quant model (int8, no calibration). An ``onnx`` source
    that is such an export is built as it is, without quantising again. ``dynamic_hw``: export with dynamic
    input height and width, up to ``imgsz`` (the Detector then letterboxes each batch to the smallest
    multiple-of-32 rectangle; TensorRT gets a min/opt/max profile); an ONNX source keeps what it records.

    Raises:
        ConfigError: unknown or inconsistent options. BuildError: missing files, a static ONNX batch that
        cannot serve ``batch_sizes``, fp16 for ONNX Runtime, an existing artifact of other weights at the
        output name (without ``force``), a ``multi_label`` other than an ONNX source records.
        MissingDependencyError: ``backend="tensorrt"`` without TensorRT.
    """
    excludes = check_precision_options(precision, calib_method, exclude, sensitivity)
    if qat is not None and (weights is not None or onnx is not None or random_weights):
        raise ConfigError("--qat CKPT is the build's source: drop --weights / --onnx / --random-weights")
    weights = qat if qat is not None else weights
    source = _resolve_source(Path(weights) if weights else None, Path(onnx) if onnx else None, random_weights)
    onnx_info = _inspect_onnx_source(source[1]) if source[1] is not None else None
    qat_target = _qat_target(source[0], onnx_info, qat is not None)
    if imgsz is None:
        imgsz = _source_imgsz(source[0], onnx_info)
    sizes, size_hw = check_batches(batch_sizes), check_imgsz(tuple(imgsz) if not isinstance(imgsz, int) else imgsz)
    resolved, reason = resolve_backend(backend)
    if qat_target is not None:
        precision, calib_method = check_qat_options(qat_target, precision, resolved, excludes, sensitivity)
    check_backend_options(
        resolved, precision, sizes, size_hw, end2end, val is not None and (sensitivity or "auto" in excludes)
    )
    settings = trt_settings(resolved, source[1], workspace_gib, timing_cache, hardware_compat, opset, max_ap_drop)
    model_name = _model_name(source[0], onnx_info, model, demo=weights is None and onnx is None)
    multi = resolve_multi_label(multi_label, onnx_info)
    dynamic_hw = resolve_dynamic_hw(dynamic_hw, onnx_info)
    if onnx_info is not None:
        check_static_batch(source[1], onnx_info, sizes)
    digest = onnx_info.sha256 if onnx_info is not None else file_sha256(source[0]) if source[0] else RANDOM_SOURCE
    out = Path(output)
    artifact = out / (
        own_name(name, BUILD_SUFFIXES[resolved])
        or _content_name(model_name, digest, size_hw, precision, resolved, sizes, end2end, onnx_info, multi, dynamic_hw)
    )
    if not force:
        check_replaceable(artifact, digest)
    calib_dir = (Path(calib) if calib is not None else _shipped(DEFAULT_CALIB)) if precision == "int8" else None
    calib_dir = None if qat_target is not None else calib_dir
    return BuildPlan(
        weights=source[0], onnx=source[1], model=model_name, random_weights=random_weights, source_sha256=digest,
        precision=precision, backend=resolved, backend_reason=reason, batch_sizes=sizes, imgsz=size_hw,
        end2end=end2end, output=out, artifact=artifact, calib=calib_dir, calib_method=calib_method,
        calib_size=calib_size, calib_batch=calib_batch, val=Path(val) if val is not None else None,
        sensitivity=sensitivity, exclude=excludes, max_ap_drop=max_ap_drop, max_error=max_error,
        multi_label=multi, qat_target=qat_target, dynamic_hw=dynamic_hw, **settings,
    )  # fmt: skip


def _qat_target(weights: Path | None, onnx_info: Any, wanted: bool) -> str | None:
    """The quantisation target a QAT source was trained for (None: not a QAT source).

    Raises:
        BuildError: a QAT checkpoint without ``--qat``, or ``--qat`` with a checkpoint that is not one.
    """
    if onnx_info is not None:
        meta = onnx_info.metadata
        return str(meta.get("quant_target")) if meta.get("calibration_method") == "qat" else None
    recorded = None
    if weights is not None:
        from yolov6_sdk.checkpoint_reader import load_plain

        try:
            checkpoint = load_plain(weights)
        except CheckpointError:  # an official release file or unreadable: never a QAT checkpoint
            checkpoint = None
        meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
        recorded = meta.get("qat") if isinstance(meta, dict) else None
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
    digest: str,
    imgsz: tuple[int, int],
    precision: str,
    backend: str,
    sizes: tuple[int, ...],
    end2end: bool,
    onnx_info: Any,
    multi_label: bool,
    dynamic_hw: bool,
) -> str:
    """The artifact's file name from what it holds: an engine's batch profile, a static ONNX source's fixed
    batch, the NMS inside an ONNX source or the one ``end2end`` exports, and its multi-label choice."""
    if backend == "tensorrt":
        profile = engine_config(precision, sizes, imgsz, end2end).profile
    else:
        static = onnx_info.inputs[0].shape[0] if onnx_info is not None else None
        profile = (static, static, static) if static else None
    nms = (onnx_info.nms or None) if onnx_info is not None else nms_mode(backend, end2end)
    return artifact_name(model, digest, imgsz, precision, BUILD_SUFFIXES[backend], profile, nms, multi_label, dynamic_hw)


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


def _model_name(weights: Path | None, onnx_info: Any, model: str | None, demo: bool = False) -> str:
    """The zoo name of what is built; ``demo``: ``weights`` are the shipped demo weights (no --weights given)."""
    if onnx_info is not None:
        return model or str(onnx_info.metadata.get("model", onnx_info.path.stem))
    if weights is None:
        from yolov6_sdk.models import ZOO

        name = model or "yolov6n"
        if name not in ZOO:
            raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(ZOO)}")
        return name
    from yolov6_sdk.weights import load

    name = load(weights).name
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


def _source_imgsz(weights: Path | None, onnx_info: Any) -> int | tuple[int, int]:
    """The input size the source was trained or exported for: an SDK checkpoint's ``imgsz``, a static ONNX
    input's H and W, else 640 (official release files do not record it)."""
    if onnx_info is not None:
        h, w = onnx_info.inputs[0].shape[2:4]
        return (h, w) if h and w else 640
    if weights is not None:
        from yolov6_sdk.checkpoint_reader import load_plain

        try:
            checkpoint = load_plain(weights)  # checked first: a crafted file cannot make torch allocate gigabytes
        except CheckpointError:  # an official release file (pickled modules) or unreadable: load() reports it later
            return 640
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("imgsz"), int):
            return checkpoint["imgsz"]
    return 640


__all__ = ["BuildPlan", "check_replaceable", "engine_config", "plan_build"]
