"""``yolov6-build`` as a library: checkpoint or ONNX in, a deployable artifact plus its sidecar ``.json`` out.

:func:`plan_build` checks the options and decides what will be made (backend, names, quantisation target);
:func:`run_build` makes it; :func:`build` does both. Artifacts are ``<out>/<model>-<precision>[-bs<N>].onnx``
(ONNX Runtime; ``-bs<N>`` only for a fixed batch) or ``.engine`` (TensorRT; ``N`` = the profile's max batch).

* ONNX Runtime (CPU): fp32 is the export itself; int8 is a Q/DQ ONNX with uint8 activations
  (:mod:`yolov6_sdk.export.ort_quant`). fp16 is refused: ONNX Runtime's CPU provider runs fp16 graphs through
  float casts, slower than fp32, so an fp16 ONNX would only mislead; build fp16 for TensorRT instead.
* TensorRT: the engine is built from the fp32 ONNX, an fp16-exported ONNX, or the symmetric int8 Q/DQ ONNX
  (:func:`yolov6_sdk.export.tensorrt.build_engine`, imported only on this path).
* ``backend="auto"``: TensorRT when it imports and a CUDA GPU is visible, else ONNX Runtime.

Caches, kept beside the artifact and reused by the next build: the fp32 export (``<stem>.fp32.onnx``, or the
artifact itself for fp32 ONNX builds; keyed by checkpoint hash and export options in its metadata) and the
calibration ranges (``<stem>.calib.json``, keyed by the fp32 ONNX hash, the calibration images and method).
Every file is written atomically, so an interrupted build leaves no artifact behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime

from yolov6_sdk import __version__
from yolov6_sdk._optional import available
from yolov6_sdk.errors import BuildError, ConfigError, MissingDependencyError
from yolov6_sdk.export import calibration, ort_quant, qdq, sensitivity
from yolov6_sdk.export.sidecar import current_gpu, file_sha256, onnx_sidecar, read_sidecar, write_sidecar
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.runtime.preprocess import check_imgsz

LOGGER = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("auto", "onnxruntime", "tensorrt")
DEFAULT_WEIGHTS = Path("weights/yolov6n-shapes.pt")
DEFAULT_CALIB = Path("calib")
EXPORT_OPSET = 13
SENSITIVITY_IMAGES = 16  # calibration images the output error is measured on

StageProgress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``; stages "calibrate", "sensitivity"."""


@dataclass(frozen=True)
class BuildPlan:
    """What a build will do (validated options; see :func:`plan_build` for their meaning)."""

    weights: Path | None
    onnx: Path | None
    model: str
    random_weights: bool
    precision: str
    backend: str
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
    max_ap_drop: float = 1.0
    max_error: float = 0.02

    @property
    def target(self) -> str:
        """Quantisation target: "tensorrt" or "onnxruntime-cpu"."""
        return "tensorrt" if self.backend == "tensorrt" else "onnxruntime-cpu"

    @property
    def nms(self) -> str | None:
        return ("trt" if self.backend == "tensorrt" else "ort") if self.end2end else None


@dataclass(frozen=True)
class BuildResult:
    """A finished build: the artifact, its sidecar and what it took.

    ``maps`` holds mAP50-95 in percent of the reference ONNX and of the artifact, keyed "<precision> (<kind>)"
    ("fp32 (onnx)", "int8 (onnx)", "fp16 (engine)", ...), when ``val`` was given.
    ``seconds`` maps stage names to wall time; ``cached`` names the caches that were reused ("export",
    "calibration").
    """

    artifact: Path
    sidecar: Path
    precision: str
    backend: str
    size_bytes: int
    seconds: dict[str, float]
    cached: tuple[str, ...] = ()
    float_layers: tuple[str, ...] = ()
    calibration_images: int = 0
    sensitivity: sensitivity.SensitivityReport | None = None
    maps: dict[str, float] = field(default_factory=dict)


def _check_batches(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(batch_sizes)
    if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in sizes):
        raise ConfigError(f"--bs takes positive batch sizes, got {list(sizes)}; e.g. --bs 1 32")
    return sizes


def _resolve_backend(backend: str) -> tuple[str, str]:
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
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


def _static_batch(path: Path) -> int | None:
    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None


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
    max_ap_drop: float = 1.0,
    max_error: float = 0.02,
    random_weights: bool = False,
    calib_batch: int = 8,
) -> BuildPlan:
    """Check the options and decide what :func:`run_build` will make (nothing is written).

    ``weights``: an SDK or official checkpoint (default ``weights/yolov6n-shapes.pt``); ``onnx``: an fp32 ONNX
    instead; ``random_weights``: an untrained ``model`` (timing only). ``calib``: calibration images for int8
    (default ``calib/``, the shipped set). ``exclude``: node names or module-path patterns
    (``detect.cls_convs.*``) to keep float, or "auto" (greedy, from the sensitivity analysis).

    Raises:
        ConfigError: unknown or inconsistent options. BuildError: missing files, a static ONNX batch that
        cannot serve ``batch_sizes``, fp16 for ONNX Runtime.
        MissingDependencyError: ``backend="tensorrt"`` without TensorRT.
    """
    excludes = _check_precision_options(precision, calib_method, exclude, sensitivity)
    source = _resolve_source(Path(weights) if weights else None, Path(onnx) if onnx else None, random_weights)
    if imgsz is None:
        imgsz = _source_imgsz(source[0], source[1])
    sizes, size_hw = _check_batches(batch_sizes), check_imgsz(tuple(imgsz) if not isinstance(imgsz, int) else imgsz)
    resolved, reason = _resolve_backend(backend)
    if precision == "fp16" and resolved == "onnxruntime":
        raise BuildError(
            "fp16 is not built for ONNX Runtime: its CPU provider runs fp16 graphs through float casts, slower "
            "than fp32; build fp32 or int8 for the CPU, or fp16 with --backend tensorrt on an NVIDIA GPU"
        )
    if resolved == "tensorrt":
        _engine_config(precision, sizes, size_hw, end2end)  # a bad --bs list fails here, before any work
    if val is not None and end2end and resolved == "tensorrt" and (sensitivity or "auto" in excludes):
        raise ConfigError(
            "--val with --sensitivity or --exclude auto runs int8 variants in ONNX Runtime, which cannot run the "
            "TensorRT NMS plugin of --end2end; drop --end2end (NMS then runs on the host) or --val"
        )
    name = _model_name(source[0], source[1], model)
    static = _static_batch(source[1]) if source[1] is not None else None
    if static is not None and set(sizes) != {static}:
        raise BuildError(
            f"{source[1]} has a fixed batch of {static} and cannot serve --bs {' '.join(map(str, sizes))}; pass "
            f"--bs {static}, or export with a dynamic batch (yolov6-build --weights PT exports one)"
        )
    out = Path(output)
    suffix = f"-bs{max(sizes)}" if resolved == "tensorrt" else (f"-bs{static}" if static else "")
    artifact = out / f"{name}-{precision}{suffix}{'.engine' if resolved == 'tensorrt' else '.onnx'}"
    calib_dir = (Path(calib) if calib is not None else _shipped(DEFAULT_CALIB)) if precision == "int8" else None
    return BuildPlan(
        weights=source[0], onnx=source[1], model=name, random_weights=random_weights, precision=precision,
        backend=resolved, backend_reason=reason, batch_sizes=sizes, imgsz=size_hw, end2end=end2end, output=out,
        artifact=artifact, calib=calib_dir, calib_method=calib_method,
        calib_size=calib_size, calib_batch=calib_batch, val=Path(val) if val is not None else None,
        sensitivity=sensitivity, exclude=excludes, max_ap_drop=max_ap_drop, max_error=max_error,
    )  # fmt: skip


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


def _model_name(weights: Path | None, onnx_path: Path | None, model: str | None) -> str:
    if onnx_path is not None:
        meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        return model or meta.get("model", onnx_path.stem)
    if weights is None:
        from yolov6_sdk.models import ZOO

        name = model or "yolov6n"
        if name not in ZOO:
            raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(ZOO)}")
        return name
    from yolov6_sdk.weights import load

    name = load(weights).name
    if model is not None and model != name:
        raise ConfigError(f"--model {model} does not match {weights}, which holds a {name}; drop --model")
    return name


# --------------------------------------------------------------------------------------------------- export


def _export_key(plan: BuildPlan, source_hash: str, half: bool) -> str:
    text = f"{__version__}|{plan.model}|{source_hash}|{plan.imgsz}|nms={plan.nms}|half={half}|opset={EXPORT_OPSET}"
    return hashlib.sha256(text.encode()).hexdigest()


def _cached_export(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    try:
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception:  # an unreadable cache is rebuilt
        return False
    return meta.get("export_key") == key


def _export(plan: BuildPlan, path: Path, half: bool) -> tuple[Path, str, bool]:
    """Export (or reuse) the ONNX the build starts from; returns (path, source hash, reused)."""
    if plan.onnx is not None:
        return plan.onnx, file_sha256(plan.onnx), True
    source_hash = file_sha256(plan.weights) if plan.weights is not None else "random-init"
    key = _export_key(plan, source_hash, half)
    if _cached_export(path, key):
        LOGGER.info("reusing the export %s", path)
        return path, source_hash, True
    from yolov6_sdk.export.onnx import ExportOptions, export_onnx
    from yolov6_sdk.models import build_model
    from yolov6_sdk.weights import load

    model = load(plan.weights).model if plan.weights is not None else build_model(plan.model).eval()
    options = ExportOptions(imgsz=plan.imgsz, opset=EXPORT_OPSET, dynamic_batch=True, half=half, nms=plan.nms)
    meta = {"export_key": key, "weights_sha256": source_hash}
    export_onnx(model, path, options, metadata=meta)
    return path, source_hash, False


# ------------------------------------------------------------------------------------------------ int8


def _float_layers(
    plan: BuildPlan,
    fp32: Path,
    ranges: dict[str, tuple[float, float]],
    calib: calibration.CalibrationSet,
    evaluate: Callable[[Path], float] | None,
    progress: StageProgress | None,
) -> tuple[list[str], sensitivity.SensitivityReport | None]:
    """Layers to leave float: the ``--exclude`` names, or the greedy choice of ``--exclude auto``."""
    auto = plan.exclude == ("auto",)
    manual = [] if auto else ort_quant.resolve_float_nodes(onnx.load(str(fp32)), plan.exclude)
    if not plan.sensitivity and not auto:
        return manual, None
    job = sensitivity.QuantJob(fp32, ranges, plan.target, plan.calib_method)
    sample = list(itertools.islice(calib.batches(), -(-SENSITIVITY_IMAGES // calib.batch)))
    comparer = sensitivity.OutputComparer(fp32, np.concatenate(sample)[:SENSITIVITY_IMAGES])
    step = (lambda done, total: progress("sensitivity", done, total)) if progress else None
    ranking, int8_error, int8_map = sensitivity.rank_layers(job, comparer, evaluate=evaluate, progress=step)
    fp32_map = evaluate(fp32) if evaluate is not None else None
    budget = sensitivity.Budget(plan.max_error, plan.max_ap_drop, fp32_map)
    report = sensitivity.choose_float_layers(
        job, comparer, ranking, (int8_error, int8_map), budget, evaluate, fixed=None if auto else manual
    )
    return list(report.float_nodes), report


@dataclass
class _State:
    """What the stages of one build hand on to each other."""

    plan: BuildPlan
    progress: StageProgress | None
    seconds: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    float_layers: list[str] = field(default_factory=list)
    calib: calibration.CalibrationSet | None = None
    report: sensitivity.SensitivityReport | None = None

    @property
    def calibration_images(self) -> int:
        return len(self.calib) if self.calib is not None else 0

    def timed(self, stage: str, started: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def _quantize(state: _State, fp32: Path, out: Path, evaluate: Callable[[Path], float] | None) -> Path:
    plan, started, calib = state.plan, time.perf_counter(), state.calib
    step = (lambda done, total: state.progress("calibrate", done, total)) if state.progress else None
    cache = plan.artifact.with_suffix(".calib.json")
    ranges, reused = ort_quant.calibrate_cached(fp32, calib, plan.calib_method, cache, step)
    state.cached += ["calibration"] if reused else []
    state.timed("calibrate", started)
    started = time.perf_counter()
    state.float_layers, state.report = _float_layers(plan, fp32, ranges, calib, evaluate, state.progress)
    if state.report is not None:
        state.timed("sensitivity", started)
    started = time.perf_counter()
    meta = {
        "calibration_images": len(calib),
        "calibration_sha256": calib.fingerprint,
        "fp32_onnx_sha256": state.hashes["fp32_onnx"],
        "onnxruntime_version": onnxruntime.__version__,
    }
    ort_quant.quantize_model(fp32, out, ranges, plan.target, plan.calib_method, state.float_layers, meta)
    state.timed("quantize", started)
    return out


def _prepare_onnx(state: _State, evaluate: Callable[[Path], float] | None) -> tuple[Path, Path]:
    """The ONNX the artifact comes from (export or given) and the ONNX that becomes / feeds the artifact."""
    plan, started = state.plan, time.perf_counter()
    half = plan.precision == "fp16"  # fp16 is only planned for TensorRT, which takes it from the ONNX
    fp32_only = plan.precision == "fp32" and plan.backend == "onnxruntime" and plan.onnx is None
    cache = plan.artifact if fp32_only else plan.artifact.with_suffix(".fp16.onnx" if half else ".fp32.onnx")
    source, source_hash, reused = _export(plan, cache, half)
    state.cached += ["export"] if reused and plan.onnx is None else []
    state.hashes.update(source=source_hash, fp32_onnx=file_sha256(source))
    state.timed("export", started)
    if plan.precision != "int8":
        return source, source
    out = plan.artifact if plan.backend == "onnxruntime" else plan.artifact.with_suffix(".qdq.onnx")
    return source, _quantize(state, source, out, evaluate)


def _finish_onnx(state: _State, onnx_path: Path) -> Path:
    """Put the ONNX artifact in place (a copy when the source is the user's file) and write its sidecar."""
    plan = state.plan
    if onnx_path != plan.artifact:
        with atomic_path(plan.artifact) as tmp:
            shutil.copyfile(onnx_path, tmp)
    sidecar = onnx_sidecar(
        plan.artifact,
        precision=plan.precision,
        calibration_method=plan.calib_method if plan.precision == "int8" else "",
        calibration_images=state.calibration_images,
        source_hashes={"source_onnx": state.hashes["source"]} if plan.onnx is not None else None,
    )
    return write_sidecar(dataclasses.replace(sidecar, extra=_sidecar_extra(state)), plan.artifact)


def _sidecar_extra(state: _State) -> dict[str, Any]:
    plan = state.plan
    return {
        "onnxruntime_version": onnxruntime.__version__,
        "quant_target": plan.target if plan.precision == "int8" else "",
        "float_layers": [qdq.module_path(n) for n in state.float_layers],
        "batch_sizes": list(plan.batch_sizes),
        "build_seconds": {k: round(v, 2) for k, v in state.seconds.items()},
    }


def _source_imgsz(weights: Path | None, onnx_path: Path | None) -> int | tuple[int, int]:
    """The input size the source was trained or exported for: an SDK checkpoint's ``imgsz``, a static ONNX
    input's H and W, else 640 (official release files do not record it)."""
    if onnx_path is not None:
        import onnx

        dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        h, w = (d.dim_value for d in dims[2:4])
        return (h, w) if h and w else 640
    if weights is not None:
        import torch

        try:
            checkpoint = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # an official release file (pickled modules) or unreadable: load() reports it later
            return 640
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("imgsz"), int):
            return checkpoint["imgsz"]
    return 640


def _engine_config(precision: str, sizes: tuple[int, ...], imgsz: tuple[int, int], end2end: bool) -> Any:
    """The TensorRT :class:`BuildConfig` (it checks the batch list: 1-3 ascending sizes, min [opt] max)."""
    from yolov6_sdk.export.tensorrt import BuildConfig

    return BuildConfig(precision=precision, batch_sizes=sizes, imgsz=imgsz, end2end=end2end)


def _build_engine(state: _State, onnx_path: Path) -> Path:
    from yolov6_sdk.export.tensorrt import build_engine

    plan, started = state.plan, time.perf_counter()
    config = _engine_config(plan.precision, plan.batch_sizes, plan.imgsz, plan.end2end)
    calib = {"method": plan.calib_method, "images": state.calibration_images} if plan.precision == "int8" else None
    build_engine(onnx_path, plan.artifact, config, calibration=calib)
    state.timed("engine", started)
    sidecar = read_sidecar(plan.artifact)  # add what the quantiser knows (float layers, target) to the builder's
    return write_sidecar(dataclasses.replace(sidecar, extra={**sidecar.extra, **_sidecar_extra(state)}), plan.artifact)


def _validate(state: _State, evaluate: Callable[[Path], float], reference: Path) -> dict[str, float]:
    """mAP50-95 (percent) of the reference ONNX and of the artifact, keyed "<precision> (<kind>)"."""
    plan, started = state.plan, time.perf_counter()
    maps = {}
    if plan.nms == "trt":  # the EfficientNMS_TRT plugin only runs inside TensorRT
        LOGGER.warning("no reference mAP: %s ends in a TensorRT plugin that ONNX Runtime cannot run", reference)
    else:
        maps[f"{'fp16' if plan.precision == 'fp16' else 'fp32'} (onnx)"] = evaluate(reference)
    maps.setdefault(f"{plan.precision} ({plan.artifact.suffix[1:]})", evaluate(plan.artifact))
    state.timed("validate", started)
    return maps


def run_build(plan: BuildPlan, progress: StageProgress | None = None) -> BuildResult:
    """Make what ``plan`` describes; see the module docstring for files written and caches reused.

    Raises:
        BuildError / CalibrationError / MissingDependencyError: as the stages find problems; nothing is left
        at ``plan.artifact`` by a build that fails or is interrupted.
    """
    state = _State(plan, progress)
    if plan.precision == "int8":  # a bad calibration folder fails before any export work
        state.calib = calibration.load_calibration_set(plan.calib, plan.imgsz, plan.calib_size, plan.calib_batch)
    evaluate = sensitivity.map_evaluator(plan.val, plan.imgsz) if plan.val is not None else None
    fp32, final_onnx = _prepare_onnx(state, evaluate)
    finish = _build_engine if plan.backend == "tensorrt" else _finish_onnx
    sidecar_file = finish(state, final_onnx)
    maps = _validate(state, evaluate, fp32) if evaluate is not None else {}
    return BuildResult(
        artifact=plan.artifact,
        sidecar=sidecar_file,
        precision=plan.precision,
        backend=plan.backend,
        size_bytes=plan.artifact.stat().st_size,
        seconds=state.seconds,
        cached=tuple(state.cached),
        float_layers=tuple(qdq.module_path(n) for n in state.float_layers),
        calibration_images=state.calibration_images,
        sensitivity=state.report,
        maps=maps,
    )


def build(progress: StageProgress | None = None, **options: Any) -> BuildResult:
    """Plan and run a build in one call: ``build(weights="best.pt", precision="int8", calib="calib/")``.

    ``options`` are :func:`plan_build`'s keyword arguments; ``progress(stage, done, total)`` follows the long
    stages. Returns the :class:`BuildResult`.
    """
    return run_build(plan_build(**options), progress)
