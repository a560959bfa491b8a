"""Planning a build: check ``yolov6-build``'s options and decide what will be made, before any work.

:func:`plan_build` resolves the source (checkpoint, ONNX or an untrained model), the backend (``auto``:
TensorRT when it imports and a CUDA GPU is visible, else ONNX Runtime), the input size, the batch sizes and
the artifact's name (:func:`yolov6_sdk.artifact.naming.artifact_name`: model, source digest, input size,
precision, batch profile, NMS mode, multi-label NMS; or the caller's ``name``), and refuses what the chosen
backend cannot make and an existing artifact of other weights at that name (unless ``force``).
:func:`yolov6_sdk.export.build.run_build` then makes the :class:`BuildPlan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolov6_sdk._optional import available
from yolov6_sdk.artifact.naming import RANDOM_SOURCE, artifact_name, recorded_source, source_tag
from yolov6_sdk.artifact.preprocess import check_imgsz
from yolov6_sdk.artifact.sidecar import current_gpu, file_sha256, recorded_multi_label
from yolov6_sdk.artifact.spec import BUILD_BACKENDS, PRECISIONS, SUFFIX_BACKENDS, BackendKind, NmsMode, Precision
from yolov6_sdk.errors import BuildError, CheckpointError, ConfigError, MissingDependencyError
from yolov6_sdk.export import calibration, ort_quant

DEFAULT_WEIGHTS = Path("weights/yolov6n-shapes.pt")
DEFAULT_CALIB = Path("calib")
OFFICIAL_WEIGHTS_URL = "https://github.com/meituan/YOLOv6/releases/download/0.4.0"
DEFAULT_OPSET = 13  # ONNX opset of an export from a checkpoint
DEFAULT_WORKSPACE_GIB = 4.0


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
        """Quantisation target: "tensorrt" or "onnxruntime-cpu" (a QAT source's own target)."""
        return self.qat_target or ("tensorrt" if self.backend == "tensorrt" else "onnxruntime-cpu")

    @property
    def nms(self) -> NmsMode | None:
        """NMS mode the build exports into the graph (None: raw outputs)."""
        return _nms_mode(self.backend, self.end2end)


def _nms_mode(backend: str, end2end: bool) -> NmsMode | None:
    return ("trt" if backend == "tensorrt" else "ort") if end2end else None


def _check_batches(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(batch_sizes)
    if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in sizes):
        raise ConfigError(f"--batch takes positive batch sizes, got {list(sizes)}; e.g. --batch 1 32")
    return sizes


def _resolve_backend(backend: str) -> tuple[BackendKind, str]:
    if backend != "auto" and backend not in BUILD_BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(('auto', *BUILD_BACKENDS))}, got {backend!r}")
    if backend == "onnxruntime":
        return backend, "asked"
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
    excludes = _check_precision_options(precision, calib_method, exclude, sensitivity)
    if qat is not None and (weights is not None or onnx is not None or random_weights):
        raise ConfigError("--qat CKPT is the build's source: drop --weights / --onnx / --random-weights")
    weights = qat if qat is not None else weights
    source = _resolve_source(Path(weights) if weights else None, Path(onnx) if onnx else None, random_weights)
    onnx_info = _inspect_onnx_source(source[1]) if source[1] is not None else None
    qat_target = _qat_target(source[0], onnx_info, qat is not None)
    if imgsz is None:
        imgsz = _source_imgsz(source[0], onnx_info)
    sizes, size_hw = _check_batches(batch_sizes), check_imgsz(tuple(imgsz) if not isinstance(imgsz, int) else imgsz)
    resolved, reason = _resolve_backend(backend)
    if qat_target is not None:
        precision, calib_method = _check_qat_options(qat_target, precision, resolved, excludes, sensitivity)
    _check_backend_options(
        resolved, precision, sizes, size_hw, end2end, val is not None and (sensitivity or "auto" in excludes)
    )
    settings = _trt_settings(resolved, source[1], workspace_gib, timing_cache, hardware_compat, opset, max_ap_drop)
    model_name = _model_name(source[0], onnx_info, model, demo=weights is None and onnx is None)
    multi = _multi_label(multi_label, onnx_info)
    dynamic_hw = _dynamic_hw(dynamic_hw, onnx_info)
    if onnx_info is not None:
        _check_static_batch(source[1], onnx_info, sizes)
    digest = onnx_info.sha256 if onnx_info is not None else file_sha256(source[0]) if source[0] else RANDOM_SOURCE
    out = Path(output)
    artifact = out / (
        _own_name(name, ".engine" if resolved == "tensorrt" else ".onnx")
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


def _check_qat_options(
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


def _check_static_batch(path: Path, info: Any, sizes: tuple[int, ...]) -> None:
    """Refuse batch sizes that an ONNX source (``info``: its OnnxInfo) with a fixed batch axis cannot serve."""
    static = info.inputs[0].shape[0]
    if static is not None and set(sizes) != {static}:
        raise BuildError(
            f"{path} has a fixed batch of {static} and cannot serve --batch {' '.join(map(str, sizes))}; pass "
            f"--batch {static}, or export with a dynamic batch (yolov6-build --weights PT exports one)"
        )


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
    nms = (onnx_info.nms or None) if onnx_info is not None else _nms_mode(backend, end2end)
    suffix = ".engine" if backend == "tensorrt" else ".onnx"
    return artifact_name(model, digest, imgsz, precision, suffix, profile, nms, multi_label, dynamic_hw)


def _dynamic_hw(wanted: bool, onnx_info: Any) -> bool:
    """Whether the artifact's input height and width are dynamic: ``wanted`` for a checkpoint, what an ONNX
    source records for it.

    Raises:
        ConfigError: ``wanted`` is not a bool, or asked of an ONNX source exported with a fixed size.
    """
    if not isinstance(wanted, bool):
        raise ConfigError(f"dynamic_hw must be True or False, got {wanted!r}")
    if onnx_info is None:
        return wanted
    recorded = str(onnx_info.metadata.get("dynamic_hw", "")).lower() in ("true", "1")
    if wanted and not recorded:
        raise ConfigError(
            f"{onnx_info.path} has a fixed input height and width; build from the checkpoint with --dynamic-hw "
            "(--weights), or drop --dynamic-hw"
        )
    return recorded


def _multi_label(multi_label: bool | None, onnx_info: Any) -> bool:
    """The build's NMS semantics: ``multi_label`` (default False), or what an ONNX source records.

    Raises:
        ConfigError: ``multi_label`` is not a bool or None.
        BuildError: an ONNX source records the other choice (its graph or metadata would contradict the name).
    """
    if multi_label is not None and not isinstance(multi_label, bool):
        raise ConfigError(f"multi_label must be True, False or None, got {multi_label!r}")
    if onnx_info is None:
        return bool(multi_label)
    recorded = recorded_multi_label(onnx_info.metadata, bool(onnx_info.nms), str(onnx_info.path))
    if multi_label is not None and multi_label != recorded:
        kinds = {True: "multi-label", False: "single-label"}
        raise BuildError(
            f"{onnx_info.path} was exported with {kinds[recorded]} NMS, not {kinds[multi_label]}; build from the "
            f"checkpoint (--weights PT{' --multi-label' if multi_label else ''}), or drop "
            f"{'--multi-label' if multi_label else 'multi_label=False'} to keep the source's choice"
        )
    return recorded


def _own_name(name: str | None, suffix: str) -> str | None:
    """``name`` as a file name with ``suffix`` (None when no name was given).

    Raises:
        ConfigError: a name with a folder in it, an empty one, or one ending in another artifact suffix.
    """
    if name is None:
        return None
    path = Path(name)
    if not path.name or path.name != name or path.name in (".", ".."):
        raise ConfigError(f"--name takes a file name without a folder, got {name!r}; choose the folder with -o DIR")
    if path.suffix in SUFFIX_BACKENDS and path.suffix != suffix:
        raise ConfigError(f"--name {name} ends in {path.suffix}, but this build makes a {suffix} file")
    return path.stem + suffix if path.suffix == suffix else name + suffix


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


def _check_backend_options(
    backend: str, precision: str, sizes: tuple[int, ...], imgsz: tuple[int, int], end2end: bool, runs_variants: bool
) -> None:
    """Refuse what ``backend`` cannot make: fp16 for ONNX Runtime, a TensorRT batch list that is no profile,
    and int8 variants to be run in ONNX Runtime (``runs_variants``) that end in TensorRT's NMS plugin."""
    if precision == "fp16" and backend == "onnxruntime":
        raise BuildError(
            "fp16 is not built for ONNX Runtime: its CPU provider runs fp16 graphs through float casts, slower "
            "than fp32; build fp32 or int8 for the CPU, or fp16 with --backend tensorrt on an NVIDIA GPU"
        )
    if backend != "tensorrt":
        return
    engine_config(precision, sizes, imgsz, end2end)  # a bad --bs list fails here, before any work
    if end2end and runs_variants:
        raise ConfigError(
            "--val with --sensitivity or --exclude auto runs int8 variants in ONNX Runtime, which cannot run the "
            "TensorRT NMS plugin of --end2end; drop --end2end (NMS then runs on the host) or --val"
        )


def _check_precision_options(
    precision: str, calib_method: str, exclude: Sequence[str] | str, sensitivity: bool
) -> tuple[str, ...]:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    ort_quant.check_method(calib_method)
    excludes = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    if "auto" in excludes and len(excludes) > 1:
        raise ConfigError(f"--exclude takes 'auto' or layer names, not both: {list(excludes)}")
    if (sensitivity or excludes) and precision != "int8":
        raise ConfigError("--sensitivity and --exclude apply to int8 builds only")
    return excludes


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


def _trt_settings(
    backend: str,
    onnx_source: Path | None,
    workspace_gib: float | None,
    timing_cache: str | Path | None,
    hardware_compat: str,
    opset: int | None,
    max_ap_drop: float,
) -> dict[str, Any]:
    """The builder settings and export opset as :class:`BuildPlan` fields, checked.

    Raises:
        ConfigError: a TensorRT setting for an ONNX Runtime build, ``opset`` with an ONNX source or below 13, a
            workspace that is not positive, an unknown hardware level, ``max_ap_drop`` outside 0..1.
    """
    if not 0.0 <= max_ap_drop < 1.0:  # 1.0 would allow losing every detection: a value meant as points
        raise ConfigError(
            f"--max-ap-drop is a fraction of mAP below 1, like every mAP the SDK prints (0.01 = one point), got "
            f"{max_ap_drop}"
        )
    given = [flag for flag, value in (("--workspace", workspace_gib), ("--timing-cache", timing_cache),
                                      ("--hardware-compat", None if hardware_compat == "none" else hardware_compat))
             if value is not None]  # fmt: skip
    if given and backend != "tensorrt":
        raise ConfigError(f"{', '.join(given)} set the TensorRT builder; add --backend tensorrt or drop them")
    if opset is not None and onnx_source is not None:
        raise ConfigError(f"--opset applies to exports from --weights; {onnx_source} keeps the opset it was saved with")
    if opset is not None and opset < DEFAULT_OPSET:
        raise ConfigError(f"--opset must be {DEFAULT_OPSET} or newer, got {opset}")
    settings = {
        "workspace_gib": DEFAULT_WORKSPACE_GIB if workspace_gib is None else float(workspace_gib),
        "timing_cache": None if timing_cache is None else Path(timing_cache),
        "hardware_compat": hardware_compat,
        "opset": DEFAULT_OPSET if opset is None else int(opset),
    }
    if backend == "tensorrt":  # the builder's own checks (workspace > 0, known level), before any work
        engine_config("fp32", (1,), (640, 640), False, settings["workspace_gib"], None, hardware_compat)
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


__all__ = ["BuildPlan", "check_replaceable", "engine_config", "plan_build"]
