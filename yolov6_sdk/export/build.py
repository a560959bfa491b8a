"""``yolov6-build`` as a library: checkpoint or ONNX in, a deployable artifact plus its sidecar ``.json`` out.

:func:`~yolov6_sdk.export.plan.plan_build` decides what checked
:class:`~yolov6_sdk.export.options.BuildOptions` will make (backend, names, quantisation target);
:func:`run_build` makes it; :func:`build` does both from keyword options. Every command that needs an artifact
(``yolov6-build``, ``yolov6-bench``) gets it here. Artifacts are named by what they contain
(:func:`yolov6_sdk.artifact.naming.artifact_name`), e.g. ``<out>/yolov6n-3f2a9c1d-640-int8.onnx`` (ONNX Runtime)
or ``<out>/yolov6n-3f2a9c1d-640-fp16-bs1_32.engine`` (TensorRT), unless the caller names the file.

* ONNX Runtime (CPU): fp32 is the export itself; int8 is a Q/DQ ONNX with uint8 activations
  (:mod:`yolov6_sdk.export.ort_quant`). fp16 is refused: ONNX Runtime's CPU provider runs fp16 graphs through
  float casts, slower than fp32, so an fp16 ONNX would only mislead; build fp16 for TensorRT instead.
* TensorRT: the engine is built from the fp32 ONNX, an fp16-exported ONNX, or the symmetric int8 Q/DQ ONNX
  (:func:`yolov6_sdk.export.tensorrt.build_engine`, imported only on this path).
* A quantisation-aware training checkpoint (``qat=``): its Q/DQ ONNX is exported from the fake-quant model with
  the trained ranges (:mod:`yolov6_sdk.export.fake_quant`), no calibration; an ONNX source that is such an
  export is used as it is.
* ``backend="auto"``: TensorRT when it imports and a CUDA GPU is visible, else ONNX Runtime.

Reuse: an artifact whose sidecar records the same build key is returned as it is (for engines, when it also
matches the running TensorRT and GPU), unless ``val`` or ``sensitivity`` asks for reports. The key hashes every
field of the plan and of its :class:`~yolov6_sdk.export.options.BuildOptions` except those :data:`~yolov6_sdk.export.build_key.NOT_CONTENT`
names (where the artifact goes, source paths whose content is hashed instead, reports, the TensorRT builder's
memory and timing cache), plus the SDK and ONNX Runtime versions and the calibration images' fingerprint; a new
option is in the key unless it is added there. Otherwise these caches, kept beside the artifact, are reused: the
fp32 export (``<stem>.fp32.onnx``, or the artifact itself for fp32 ONNX builds; keyed by checkpoint hash and
export options, ``multi_label`` included, in its metadata) and the calibration ranges (``<stem>.calib.json``, keyed by
the fp32 ONNX hash, the calibration images and method).
Every file is written atomically, so an interrupted build leaves no artifact behind; the artifact and its sidecar
are published together (:func:`yolov6_sdk.artifact.sidecar.publish_artifact`), so a killed build leaves the
old pair or none, and builds of one name take turns (:func:`yolov6_sdk.fileio.exclusive_lock`), so two at once
never leave one's artifact with the other's sidecar. An ONNX artifact is parsed, its external data checked to lie
in its folder, before it is published; an ONNX source whose weights live in other files is published with them
inside the one file. Before any work the output folder is checked (it can be created and written), and the
temporaries of killed builds in it are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime

from yolov6_sdk import __version__
from yolov6_sdk.artifact.external_data import copy_self_contained, external_tensors, read_model_proto
from yolov6_sdk.artifact.meta import onnx_meta
from yolov6_sdk.artifact.sidecar import (
    Sidecar,
    check_artifact_hash,
    check_compatible,
    current_gpu,
    file_sha256,
    onnx_sidecar,
    publish_artifact,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from yolov6_sdk.artifact.spec import BackendKind, Precision
from yolov6_sdk.errors import BuildError, ConfigError, YOLOv6Error
from yolov6_sdk.export import calibration, ort_quant, qdq, sensitivity
from yolov6_sdk.export.build_key import build_key
from yolov6_sdk.export.options import BuildOptions
from yolov6_sdk.export.plan import BuildPlan, check_replaceable, engine_config, plan_build
from yolov6_sdk.fileio import check_output_folder, exclusive_lock, remove_stale_temporaries, temporary_sibling

LOGGER = logging.getLogger(__name__)

SENSITIVITY_IMAGES = 16  # calibration images the output error is measured on
EXPORT_KEY = "export_key"  # record entry of a cached export: the hash of what made it (_export_key)

StageProgress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``; stages "calibrate", "sensitivity"."""


@dataclass(frozen=True)
class BuildResult:
    """A finished build: the artifact, its sidecar and what it took.

    ``maps`` holds mAP50-95 (a fraction, 0..1) of the reference ONNX and of the artifact, keyed "<precision> (<kind>)"
    ("fp32 (onnx)", "int8 (onnx)", "fp16 (engine)", ...), when ``val`` was given.
    ``seconds`` maps stage names to wall time; ``cached`` names the caches that were reused ("artifact": the
    whole artifact, nothing was built; else "export", "calibration").
    """

    artifact: Path
    sidecar: Path
    precision: Precision
    backend: BackendKind
    size_bytes: int
    seconds: dict[str, float]
    cached: tuple[str, ...] = ()
    float_layers: tuple[str, ...] = ()
    calibration_images: int = 0
    sensitivity: sensitivity.SensitivityReport | None = None
    maps: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- export


def _export_key(plan: BuildPlan, source_hash: str, half: bool) -> str:
    text = (
        f"{__version__}|{plan.model}|{source_hash}|{plan.imgsz}|nms={plan.nms}|multi_label={plan.multi_label}"
        f"|half={half}|opset={plan.opset}|dynamic_hw={plan.dynamic_hw}"
        + (f"|qat={plan.qat_target}" if plan.qat_target else "")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _cached_export(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    try:
        meta = onnx_meta(onnx.load(str(path), load_external_data=False), str(path))
    except Exception:  # an unreadable cache is rebuilt
        return False
    return meta.extra.get(EXPORT_KEY) == key


def _export(plan: BuildPlan, path: Path, half: bool, dest: Path) -> tuple[Path, bool]:
    """Export the ONNX the build starts from to ``dest``, or reuse ``path`` when it holds the same export;
    returns (path of the ONNX, reused). The model is the checkpoint planning read (or an untrained one)."""
    if plan.onnx is not None:
        return plan.onnx, True
    source_hash = plan.source_sha256
    key = _export_key(plan, source_hash, half)
    if _cached_export(path, key):
        LOGGER.info("reusing the export %s", path)
        return path, True
    path = dest
    from yolov6_sdk.export.onnx import ExportOptions, export_onnx
    from yolov6_sdk.models import build_model

    options = ExportOptions(
        imgsz=plan.imgsz, opset=plan.opset, dynamic_batch=True, half=half, nms=plan.nms,
        multi_label=plan.multi_label, dynamic_hw=plan.dynamic_hw,
    )  # fmt: skip
    meta = {EXPORT_KEY: key, "weights_sha256": source_hash}
    if plan.qat_target is not None:  # the Q/DQ ONNX of the fake-quant model: trained ranges, no calibration
        from yolov6_sdk.export.fake_quant import export_qat_onnx, qat_model

        export_qat_onnx(qat_model(plan.checkpoint), path, options, metadata=meta)
        return path, False
    model = plan.checkpoint.model if plan.checkpoint is not None else build_model(plan.model).eval()
    export_onnx(model, path, options, metadata=meta)
    return path, False


# ------------------------------------------------------------------------------------------------ int8


def _float_layers(
    plan: BuildPlan,
    fp32: Path,
    ranges: dict[str, tuple[float, float]],
    calib: calibration.CalibrationSet,
    evaluate: sensitivity.Evaluate | None,
    progress: StageProgress | None,
) -> tuple[list[str], sensitivity.SensitivityReport | None]:
    """Layers to leave float: the ``--exclude`` names, or the greedy choice of ``--exclude auto``."""
    options = plan.options
    auto = options.exclude == ("auto",)
    manual = [] if auto else ort_quant.resolve_float_nodes(onnx.load(str(fp32)), options.exclude)
    if not options.sensitivity and not auto:
        return manual, None
    job = sensitivity.QuantJob(fp32, ranges, plan.target, plan.calib_method)
    sample = list(itertools.islice(calib.batches(), -(-SENSITIVITY_IMAGES // calib.batch)))
    comparer = sensitivity.OutputComparer(fp32, np.concatenate(sample)[:SENSITIVITY_IMAGES])
    step = (lambda done, total: progress("sensitivity", done, total)) if progress else None
    ranking, int8_error, int8_map = sensitivity.rank_layers(job, comparer, evaluate=evaluate, progress=step)
    fp32_map = evaluate(fp32) if evaluate is not None else None
    budget = sensitivity.Budget(options.max_error, options.max_ap_drop, fp32_map)
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
    build_key: str = ""

    @property
    def calibration_images(self) -> int:
        return len(self.calib) if self.calib is not None else 0

    def timed(self, stage: str, started: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def _quantize(state: _State, fp32: Path, out: Path, evaluate: sensitivity.Evaluate | None) -> Path:
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


def _prepare_onnx(state: _State, evaluate: sensitivity.Evaluate | None, work: Path) -> tuple[Path, Path]:
    """The ONNX the artifact comes from (export or given) and the ONNX that becomes / feeds the artifact.

    What becomes the artifact itself is written to ``work`` (a hidden temporary beside it), never under the
    artifact's name; an fp32 artifact whose file already holds this export is reused as it is.
    """
    plan, started = state.plan, time.perf_counter()
    half = plan.precision == "fp16"  # fp16 is only planned for TensorRT, which takes it from the ONNX
    qat = plan.qat_target is not None  # the export is the int8 Q/DQ model already
    fp32_only = (plan.precision == "fp32" or qat) and plan.backend == "onnxruntime" and plan.onnx is None
    suffix = ".qdq.onnx" if qat else ".fp16.onnx" if half else ".fp32.onnx"
    cache = plan.artifact if fp32_only else plan.artifact.with_suffix(suffix)
    source, reused = _export(plan, cache, half, dest=work if fp32_only else cache)
    if source == plan.onnx and external_tensors(read_model_proto(source)):  # every stage reads one file
        source = copy_self_contained(source, source_copy(work))
    state.cached += ["export"] if reused and plan.onnx is None else []
    state.hashes["fp32_onnx"] = plan.source_sha256 if source == plan.onnx else file_sha256(source)
    state.timed("export", started)
    if plan.precision != "int8" or qat:
        return source, source
    out = work if plan.backend == "onnxruntime" else plan.artifact.with_suffix(".qdq.onnx")
    return source, _quantize(state, source, out, evaluate)


def source_copy(work: Path) -> Path:
    """Where an ONNX source kept in several files is copied as one, beside the build's temporary ``work``."""
    return work.with_name(f"{work.stem}.source.onnx")


def _finish_onnx(state: _State, onnx_path: Path, work: Path) -> Path:
    """Publish the ONNX artifact with its sidecar (``onnx_path``: the finished file; copied to ``work`` first
    when it is the user's file or a cache) and return the sidecar's path."""
    plan = state.plan
    if onnx_path not in (work, plan.artifact):
        copy_self_contained(onnx_path, work)
    built = plan.artifact if onnx_path == plan.artifact else work
    read_model_proto(built)  # what is published parses, and keeps no data outside its folder
    sidecar = onnx_sidecar(built, precision=plan.precision, **_sidecar_fields(state))
    sidecar = sidecar.replaced(extra=_sidecar_extra(state))
    if built == plan.artifact:  # an export reused in place: the artifact stays, its sidecar is (re)written
        return write_sidecar(dataclasses.replace(sidecar, artifact_sha256=file_sha256(built)), plan.artifact)
    return publish_artifact(work, plan.artifact, sidecar)


def _sidecar_fields(state: _State) -> dict[str, Any]:
    """The sidecar fields every artifact kind records the same way: calibration and source hashes."""
    plan = state.plan
    return {
        "calibration_method": plan.calib_method if plan.precision == "int8" else "",
        "calibration_images": state.calibration_images,
        "source_hashes": {"source": plan.source_sha256, **({"source_onnx": plan.source_sha256} if plan.onnx else {})},
    }


def _sidecar_extra(state: _State) -> dict[str, Any]:
    plan = state.plan
    return {
        "onnxruntime_version": onnxruntime.__version__,
        "batch_sizes": list(plan.options.batch_sizes),
        "build_seconds": {k: round(v, 2) for k, v in state.seconds.items()},
        "build_key": state.build_key,
    }


def _finish_ir(state: _State, onnx_path: Path, work: Path) -> Path:
    """Convert ``onnx_path`` to the OpenVINO IR ``work`` (+ ``.bin``), then publish it with its sidecar."""
    import openvino

    from yolov6_sdk.export.openvino import ir_sidecar, publish_ir, write_ir

    plan, started = state.plan, time.perf_counter()
    write_ir(onnx_path, work, plan.precision)
    state.timed("convert", started)
    sidecar = ir_sidecar(onnx_path, work, plan.precision, **_sidecar_fields(state))
    extra = {**_sidecar_extra(state), "openvino_version": openvino.__version__}
    return publish_ir(work, plan.artifact, sidecar.replaced(extra=extra))


def _build_engine(state: _State, onnx_path: Path, work: Path) -> Path:
    """Build the engine into ``work`` from the record of ``onnx_path`` plus what this build knows (calibration,
    source), then publish it with its sidecar."""
    from yolov6_sdk.export.tensorrt import make_engine

    plan, started = state.plan, time.perf_counter()
    options = plan.options
    config = engine_config(plan.precision, options.batch_sizes, plan.imgsz, options.end2end, plan.workspace_gib,
                           options.timing_cache, options.hardware_compat)  # fmt: skip
    meta = onnx_meta(onnx.load(str(onnx_path), load_external_data=False), str(onnx_path))
    int8 = plan.precision == "int8"
    meta = dataclasses.replace(
        meta,
        calibration_method=plan.calib_method if int8 else meta.calibration_method,
        calibration_images=state.calibration_images if int8 else meta.calibration_images,
        source_hashes={**meta.source_hashes, "source": plan.source_sha256},
    )
    sidecar = make_engine(onnx_path, work, config, meta, extra=_sidecar_extra(state))
    state.timed("engine", started)
    return publish_artifact(work, plan.artifact, sidecar)


# ------------------------------------------------------------------------------------------------ reuse


def calibration_set(plan: BuildPlan) -> calibration.CalibrationSet | None:
    """The calibration images of a calibrated int8 build (None for any other build).

    Raises:
        CalibrationError: the folder holds no readable image.
    """
    if plan.calib is None:
        return None
    return calibration.load_calibration_set(plan.calib, plan.imgsz, plan.options.calib_size, plan.options.calib_batch)


def _up_to_date(plan: BuildPlan, key: str) -> Sidecar | None:
    """The sidecar of an existing artifact made with ``key`` (and runnable here), or None when it must be built.

    Builds that report (``val``, ``sensitivity``) always run. An ONNX artifact must still hash as its sidecar
    recorded; an engine must match the running TensorRT and GPU.
    """
    if plan.options.val is not None or plan.options.sensitivity or not plan.artifact.is_file():
        return None
    try:
        car = read_sidecar(plan.artifact)
        if car.extra.get("build_key") != key:
            return None
        check_artifact_hash(car, plan.artifact)
        if plan.backend == "tensorrt":
            from yolov6_sdk.artifact import trt_compat

            check_compatible(car, trt_compat.load_tensorrt().__version__, *(current_gpu() or ("", "0.0")))
        elif plan.backend == "openvino":
            if car.source_hashes.get("bin") != file_sha256(plan.artifact.with_suffix(".bin")):
                return None
        elif car.source_hashes.get("onnx") != file_sha256(plan.artifact):
            return None
    except YOLOv6Error as exc:  # unreadable sidecar, or an engine from another TensorRT / GPU: build again
        LOGGER.info("rebuilding %s: %s", plan.artifact, exc)
        return None
    return car


def _reused(plan: BuildPlan, car: Sidecar) -> BuildResult:
    LOGGER.info("reusing %s (built from the same source and settings)", plan.artifact)
    return BuildResult(
        artifact=plan.artifact,
        sidecar=sidecar_path(plan.artifact),
        precision=plan.precision,
        backend=plan.backend,
        size_bytes=plan.artifact.stat().st_size,
        seconds={},
        cached=("artifact",),
        float_layers=car.meta.float_layers,
        calibration_images=car.calibration_images,
    )


def _validate(state: _State, evaluate: sensitivity.Evaluate, reference: Path) -> dict[str, float]:
    """mAP50-95 (a fraction, 0..1) of the reference ONNX and of the artifact, keyed "<precision> (<kind>)"."""
    plan, started = state.plan, time.perf_counter()
    maps = {}
    if plan.nms == "trt":  # the EfficientNMS_TRT plugin only runs inside TensorRT
        LOGGER.warning("no reference mAP: %s ends in a TensorRT plugin that ONNX Runtime cannot run", reference)
    elif plan.qat_target is not None:  # its only export is the int8 Q/DQ model: no fp32 figure to show
        LOGGER.info("a QAT build has no fp32 export; score the float teacher with yolov6-eval to compare")
    else:
        maps[f"{'fp16' if plan.precision == 'fp16' else 'fp32'} (onnx)"] = evaluate(reference)
    maps.setdefault(f"{plan.precision} ({plan.artifact.suffix[1:]})", evaluate(plan.artifact))
    state.timed("validate", started)
    return maps


def run_build(
    plan: BuildPlan, progress: StageProgress | None = None, evaluate: sensitivity.Evaluate | None = None
) -> BuildResult:
    """Make what ``plan`` describes; see the module docstring for files written and caches reused.

    ``evaluate(path)``: mAP50-95 (a fraction) of an artifact on ``plan.options.val``, which a build with
    ``val`` needs for its report and the mAP budget of ``--exclude auto`` (the caller makes it, e.g.
    :func:`yolov6_sdk.scoring.map_evaluator`, so the build never runs the Detector itself).

    Raises:
        ConfigError: ``val`` without ``evaluate``.
        BuildError / CalibrationError / MissingDependencyError: as the stages find problems; nothing is left
        at ``plan.artifact`` by a build that fails or is interrupted.
    """
    options = plan.options
    if options.val is not None and evaluate is None:
        raise ConfigError(
            f"val={options.val} needs evaluate(path) -> mAP to report on it: pass "
            "evaluate=yolov6_sdk.scoring.map_evaluator(val, imgsz), as yolov6-build does, or drop val"
        )
    evaluate = evaluate if options.val is not None else None
    state = _State(plan, progress)
    prepare_output_folder(plan.artifact.parent)
    state.calib = calibration_set(plan)  # a bad calibration folder fails before any export
    state.build_key = build_key(plan, state.calib)
    plan.artifact.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(plan.artifact, lambda: LOGGER.warning("waiting for another build of %s", plan.artifact)):
        return _run_locked(state, evaluate)


def _run_locked(state: _State, evaluate: sensitivity.Evaluate | None) -> BuildResult:
    """:func:`run_build`'s work, while this process alone builds ``plan.artifact`` (and its caches)."""
    plan = state.plan
    if not plan.options.force:  # another build may have published this name while this one waited
        check_replaceable(plan.artifact, plan.source_sha256)
    existing = _up_to_date(plan, state.build_key)
    if existing is not None:
        return _reused(plan, existing)
    work = temporary_sibling(plan.artifact)
    try:
        fp32, final_onnx = _prepare_onnx(state, evaluate, work)
        finish = {"tensorrt": _build_engine, "openvino": _finish_ir}.get(plan.backend, _finish_onnx)
        sidecar_file = finish(state, final_onnx, work)
    except OSError as exc:  # a full disk, or the folder changed under the build
        raise BuildError(
            f"cannot write the build's files in {plan.artifact.parent} ({exc}); free some space or choose another "
            "output folder"
        ) from exc
    finally:
        for leftover in (work, sidecar_path(work), work.with_suffix(".bin"), source_copy(work)):
            leftover.unlink(missing_ok=True)
    reference = plan.artifact if fp32 == work else fp32  # an fp32 export that became the artifact itself
    maps = _validate(state, evaluate, reference) if evaluate is not None else {}
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


def prepare_output_folder(folder: Path) -> None:
    """Check that artifacts can be written in ``folder`` (created when missing) and remove what killed builds
    left there: hidden temporaries, and the side files older releases let ONNX Runtime's quantiser write.

    Raises:
        BuildError: ``folder`` is a file, cannot be created or cannot be written.
    """
    check_output_folder(folder, "the output folder", BuildError)
    leftovers = remove_stale_temporaries(folder)
    for inferred in folder.glob("*-inferred.onnx"):
        if inferred.with_name(inferred.name.replace("-inferred.onnx", ".onnx")).is_file():
            inferred.unlink(missing_ok=True)
            leftovers.append(inferred)
    if leftovers:
        LOGGER.info("removed %d files left by interrupted builds in %s", len(leftovers), folder)


def build(
    progress: StageProgress | None = None, evaluate: sensitivity.Evaluate | None = None, **options: Any
) -> BuildResult:
    """Plan and run a build in one call: ``build(weights="best.pt", precision="int8", calib="calib/")``.

    ``options`` are :class:`BuildOptions` fields; ``progress(stage, done, total)`` follows the long stages and
    ``evaluate`` measures mAP for ``val`` (see :func:`run_build`). Returns the :class:`BuildResult`.
    """
    return run_build(plan_build(BuildOptions(**options)), progress, evaluate)
