"""Post-training INT8 quantisation of a YOLOv6 ONNX into a Q/DQ ONNX, with onnxruntime.quantization.

One code path serves every target; :data:`TARGETS` holds what differs:

* ``"onnxruntime-cpu"``: uint8 asymmetric activations, int8 symmetric per-channel weights. On an AVX2 CPU
  without VNNI, ONNX Runtime ran a YOLOv6-N Q/DQ model about 1.7x faster than fp32 with u8 activations but
  only 1.0-1.35x with s8 activations. Conv outputs, ReLUs and the head's SiLUs carry Q/DQ, so ONNX Runtime
  runs QLinearConv (ReLU folded in), QLinearSigmoid and QLinearMul without float round trips between them
  (quantising the SiLUs measured 5-9 % faster at equal output error).
* ``"tensorrt"``: int8 symmetric activations (zero point 0) and weights, Q/DQ only on the inputs of the
  quantised ops (TensorRT's recommended placement; it fuses the conv activations itself). Conv biases stay
  float: TensorRT's DequantizeLinear takes only int8/fp8/int4 inputs, so an int32 bias behind one fails the
  ONNX parse.
* ``"openvino"``: TensorRT's placement with ONNX Runtime's uint8 asymmetric activations, for OpenVINO IR builds
  (OpenVINO folds the pairs into its int8 kernels; see the entry in :data:`TARGETS` for why this flavour).

Weights are per-channel symmetric int8 for all. Activations are per-tensor, ranges from
:func:`calibrate` (MinMax, Entropy or Percentile over the calibration images, run on the body subgraph
:func:`~yolov6_sdk.export.qdq.body_model`). The head's float part (sigmoid, decode, DFL, NMS) is never
quantised; the predictor convs keep int8 inputs and weights but float outputs (:data:`PREDS_FLOAT_OUTPUT`).
Concat and residual-Add tensors share one scale (:mod:`yolov6_sdk.export.qdq`).

Batch axis: calibration runs on the body subgraph as exported (dynamic batch, any batch size per call), and
the fp32 graph is quantised in place, so the int8 model keeps the fp32 model's batch axis. No static-batch copy
is needed because ``quant_pre_process`` is not used (its symbolic shape inference fails on dynamic-batch graphs
with an upsample); onnx shape inference, which quantize_static runs itself, handles them.

Needs onnxruntime >= 1.27 (``quantize_static(calibration_cache_path=...)`` feeds it our aligned ranges).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    TensorData,
    TensorsData,
    create_calibrator,
    quantize_static,
    save_tensors_data,
)

from yolov6_sdk.artifact.meta import onnx_meta, write_onnx_meta
from yolov6_sdk.artifact.sidecar import file_sha256
from yolov6_sdk.errors import BuildError, ConfigError, MissingDependencyError
from yolov6_sdk.export import qdq
from yolov6_sdk.export.calibration import (
    CalibrationSet,
    OrtCalibrationReader,
    Progress,
    load_ranges,
    ranges_key,
    save_ranges,
)
from yolov6_sdk.export.options import CALIB_METHODS
from yolov6_sdk.fileio import atomic_path

LOGGER = logging.getLogger(__name__)

METHODS = dict(zip(CALIB_METHODS, (CalibrationMethod.MinMax, CalibrationMethod.Entropy, CalibrationMethod.Percentile),
                   strict=True))  # fmt: skip

PREDS_FLOAT_OUTPUT = True
"""Predictor convs (cls_preds / reg_preds) run int8 but emit float logits and box distances.

Decided by measurement on a briefly trained YOLOv6-N (320 px, 4 classes, MinMax on 64 images, 40 validation
images; fp32 mAP50-95 4.39): output error against fp32 0.0276 (float outputs), 0.0278 (outputs quantised too),
0.0274 (predictor convs wholly float); mAP50-95 4.30 / 4.32 / 4.27, all within noise of each other. Leaving the
convs float gains nothing measurable, so they stay int8. Quantising their outputs was 2-5 % faster on the CPU,
also within noise, and puts a per-tensor rounding of up to half a step (about 1.3 px at stride 32 for a typical
box-distance range) right before the decode, so the outputs stay float.
"""

INPUT_RANGE = (0.0, 1.0)
"""Range of the model input, fixed rather than calibrated: pixels / 255 by the ONNX contract. With uint8 the
scale is then exactly 1/255 and quantising the input loses nothing, whatever the calibration images hold; a
calibrated range (say 0.02..0.98 for a set without pure black or white) would put the 8-bit pixels off the
quantisation grid."""

_CALIBRATED_OPS = ("Conv", "ConvTranspose", "Concat", "MaxPool", "Add", "Relu", "Sigmoid", "Mul")
CALIBRATION_RECIPE = "ops=" + ",".join(_CALIBRATED_OPS)
"""What :func:`calibrate` records, for cache keys: ranges made under another recipe may miss tensors."""


@dataclass(frozen=True)
class QuantTarget:
    """How Q/DQ nodes are written for one runtime.

    Attributes:
        name: "onnxruntime-cpu", "tensorrt" or "openvino".
        activation_type: QUInt8 (asymmetric) or QInt8 (symmetric, zero point 0).
        symmetric: activation ranges made symmetric around 0.
        op_types: op types that get Q/DQ.
        output_float_ops: op types whose outputs get no Q/DQ of their own (the consumer quantises).
        float_bias: conv biases stay float initializers instead of int32 behind a DequantizeLinear.
    """

    name: str
    activation_type: QuantType
    symmetric: bool
    op_types: tuple[str, ...]
    output_float_ops: tuple[str, ...]
    float_bias: bool = False


_BODY_OPS = ("Conv", "ConvTranspose", "Concat", "MaxPool", "Add")
TARGETS = {
    # Relu and the head's SiLU (Sigmoid, Mul) get Q/DQ too, so ONNX Runtime keeps them in uint8 (fused ReLU,
    # QLinearSigmoid / QLinearMul) instead of converting to float and back around each of them.
    "onnxruntime-cpu": QuantTarget(
        "onnxruntime-cpu", QuantType.QUInt8, False, (*_BODY_OPS, "Relu", "Sigmoid", "Mul"), ()
    ),
    # TensorRT fuses a conv's activation itself; Q/DQ go on the inputs of the quantised ops only.
    # Biases stay float: TensorRT's ONNX parser refuses a DequantizeLinear of int32.
    "tensorrt": QuantTarget("tensorrt", QuantType.QInt8, True, _BODY_OPS, ("Conv", "ConvTranspose"), float_bias=True),
    # OpenVINO folds Q/DQ pairs into its own int8 convolutions. Placed as for TensorRT (inputs of the quantised
    # ops only), with uint8 asymmetric activations: with int8 symmetric ones OpenVINO leaves the convolutions fed
    # by a concat of ReLU outputs in float (3 in YOLOv6-N/S) and ran 9-10 % slower and less accurately; ONNX
    # Runtime's placement ran 3-4 % slower (benchmarks/openvino_qdq_flavours.md).
    "openvino": QuantTarget("openvino", QuantType.QUInt8, False, _BODY_OPS, ("Conv", "ConvTranspose")),
}


@dataclass(frozen=True)
class QuantResult:
    """A written Q/DQ model.

    Attributes:
        path: the int8 ONNX.
        target: the :data:`TARGETS` key.
        quantized: body Conv/ConvTranspose nodes running int8.
        float_nodes: Conv/ConvTranspose nodes of the body left float (``float_nodes`` argument).
        tail: nodes of the head's float part.
        shared_scale_groups: number of tensor groups given one scale.
    """

    path: Path
    target: str
    quantized: tuple[str, ...]
    float_nodes: tuple[str, ...]
    tail: tuple[str, ...]
    shared_scale_groups: int


def check_method(method: str) -> CalibrationMethod:
    """The onnxruntime calibration method for ``method`` ("minmax", "entropy", "percentile")."""
    if method not in METHODS:
        raise ConfigError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    return METHODS[method]


def check_target(target: str) -> QuantTarget:
    """The :class:`QuantTarget` named ``target``."""
    if target not in TARGETS:
        raise ConfigError(f"quantisation target must be one of {', '.join(TARGETS)}, got {target!r}")
    return TARGETS[target]


def _require_cache_support() -> None:
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise MissingDependencyError(
            f"INT8 builds need onnxruntime >= 1.27 (quantize_static with calibration_cache_path); this is "
            f"onnxruntime {onnxruntime.__version__}: pip install -U 'onnxruntime>=1.27'"
        )


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """Route onnxruntime.quantization's root-logger warnings and stdout prints to this module's debug log."""

    class _Redirect(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if f"{os.sep}onnxruntime{os.sep}" in record.pathname:
                LOGGER.debug("onnxruntime: %s", record.getMessage())
                return False
            return True

    root, redirect, stdout = logging.getLogger(), _Redirect(), io.StringIO()
    filtered = [root, *root.handlers]  # the root logger's own records, and those propagated to its handlers
    for item in filtered:
        item.addFilter(redirect)
    try:
        with contextlib.redirect_stdout(stdout):
            yield
    finally:
        for item in filtered:
            item.removeFilter(redirect)
        if stdout.getvalue().strip():
            LOGGER.debug("onnxruntime: %s", stdout.getvalue().strip())


class _OneFeed(CalibrationDataReader):
    """Hands one prepared feed to a calibrator, so ranges are merged batch by batch (bounded memory)."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self._feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self._feed = self._feed, None
        return feed


def calibrate(
    model: onnx.ModelProto,
    calib: CalibrationSet,
    method: str = "minmax",
    progress: Progress | None = None,
) -> dict[str, tuple[float, float]]:
    """Activation ranges ``{tensor name: (low, high)}`` of ``model``'s body over the calibration images.

    Runs the body subgraph (input to predictor outputs) in ONNX Runtime on the CPU, one batch at a time (one
    image at a time for the histogram methods, whose memory grows with every activation of a feed). Ranges are
    raw (not symmetrised); the quantiser applies each target's rule.
    """
    ort_method = check_method(method)
    body = qdq.body_model(model, qdq.split_head(model))
    input_name = body.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="yolov6-calib-") as tmp, _quiet_onnxruntime():
        body_path = Path(tmp) / "body.onnx"
        onnx.save(body, str(body_path))
        calibrator = create_calibrator(
            body_path,
            list(_CALIBRATED_OPS),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method,
            extra_options={"symmetric": False},
        )
        reader = OrtCalibrationReader(calib, input_name, progress)
        # Histogram calibrators keep every activation of a feed in memory: give them one image at a time.
        step = calib.batch if ort_method == CalibrationMethod.MinMax else 1
        while (feed := reader.get_next()) is not None:
            images = feed[input_name]
            for start in range(0, images.shape[0], step):
                calibrator.collect_data(_OneFeed({input_name: images[start : start + step]}))
        data = calibrator.compute_data()
    ranges = {}
    for name, tensor in data.items():
        low, high = tensor.range_value
        ranges[name] = (float(np.min(low)), float(np.max(high)))
    LOGGER.info("calibrated %d tensors on %d images (%s)", len(ranges), len(calib), method)
    return ranges


def calibrate_cached(
    fp32_path: Path, calib: CalibrationSet, method: str, cache: Path, progress: Progress | None = None
) -> tuple[dict[str, tuple[float, float]], bool]:
    """:func:`calibrate`, or the ranges cached at ``cache`` when they were made from the same fp32 ONNX, images,
    method and recipe. Returns the ranges and whether they came from the cache (a fresh result is cached)."""
    key = ranges_key(file_sha256(fp32_path), calib, method, CALIBRATION_RECIPE)
    cached = load_ranges(cache, key)
    if cached is not None:
        LOGGER.info("reusing calibration ranges %s", cache)
        return cached, True
    ranges = calibrate(onnx.load(str(fp32_path)), calib, method, progress)
    info = {"method": method, "images": len(calib), "folder": str(calib.folder), "imgsz": list(calib.imgsz)}
    save_ranges(cache, key, ranges, info)
    return ranges, False


def _ort_cache(ranges: Mapping[str, tuple[float, float]], method: CalibrationMethod, path: Path) -> Path:
    data = {name: TensorData(lowest=np.float32(low), highest=np.float32(high)) for name, (low, high) in ranges.items()}
    save_tensors_data(TensorsData(method, data), path)
    return path


def _metadata(
    model: onnx.ModelProto, where: str, target: str, method: str, float_layers: list[str], extra: Mapping[str, object]
) -> None:
    """Record in ``model`` that it is int8 for ``target``, calibrated by ``method``, with ``float_layers`` left
    float, plus ``extra`` (flat record values); the quantiser's own ``onnx.infer`` entry is dropped."""
    inferred = [i for i, prop in enumerate(model.metadata_props) if prop.key == "onnx.infer"]
    for index in reversed(inferred):
        del model.metadata_props[index]
    meta = dataclasses.replace(
        onnx_meta(model, where).updated(extra, where),
        precision="int8",
        quant_target=target,
        calibration_method=method,
        float_layers=tuple(float_layers),
    )
    write_onnx_meta(model, meta)


def body_convs(model: onnx.ModelProto, split: qdq.HeadSplit | None = None) -> list[str]:
    """Conv/ConvTranspose node names of the quantisable body (predictor convs included, head float part not)."""
    split = split or qdq.split_head(model)
    tail = set(split.tail)
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose") and n.name not in tail]


def resolve_float_nodes(model: onnx.ModelProto, patterns: Sequence[str]) -> list[str]:
    """Body conv node names matched by ``patterns``: node names or module paths, shell wildcards allowed.

    Raises:
        BuildError: a pattern that matches no quantised convolution.
    """
    convs = body_convs(model)
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in convs if fnmatchcase(n, pattern) or fnmatchcase(qdq.module_path(n), pattern)]
        if not hits:
            examples = ", ".join(qdq.module_path(n) for n in convs[:3])
            raise BuildError(
                f"--exclude {pattern!r} matches no quantised convolution; use module paths such as {examples}"
            )
        chosen += [n for n in hits if n not in chosen]
    return chosen


def quantize_model(
    fp32_path: str | Path,
    out_path: str | Path,
    ranges: Mapping[str, tuple[float, float]],
    target: str = "onnxruntime-cpu",
    method: str = "minmax",
    float_nodes: Sequence[str] = (),
    metadata: Mapping[str, object] | None = None,
) -> QuantResult:
    """Write the Q/DQ int8 model of ``fp32_path`` to ``out_path`` (atomically) from calibrated ``ranges``.

    ``float_nodes``: body Conv/ConvTranspose node names to leave float (sensitivity fallback, ``--exclude``).
    The input keeps its batch axis (dynamic stays dynamic). ``metadata`` entries are added to
    ``metadata_props`` beside ``precision="int8"``, ``quant_target``, ``calibration_method`` and ``float_layers``.

    Raises:
        BuildError: a name in ``float_nodes`` is not a body conv, or the result breaks a Q/DQ rule.
    """
    _require_cache_support()
    quant_target, ort_method = check_target(target), check_method(method)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = onnx.load(str(fp32_path))
    split = qdq.split_head(model)
    convs = body_convs(model, split)
    unknown = sorted(set(float_nodes) - set(convs))
    if unknown:
        raise BuildError(f"cannot leave {unknown} float: not convolutions of the quantised body of {fp32_path}")
    excluded = sorted({*split.tail, *float_nodes})
    groups = qdq.scale_groups(model, excluded)
    inputs = {v.name for v in model.graph.input} - {i.name for i in model.graph.initializer}
    aligned = qdq.align_ranges({**ranges, **{name: INPUT_RANGE for name in inputs}}, groups)
    if not quant_target.symmetric:
        excluded += qdq.relus_below_zero(model, aligned)
    quantized = _run_quantizer(fp32_path, aligned, ort_method, quant_target, excluded)
    if PREDS_FLOAT_OUTPUT:
        qdq.strip_output_qdq(quantized, split.outputs)
    _check_result(quantized, split, float_nodes)
    float_layers = [qdq.module_path(n) for n in float_nodes]
    _metadata(quantized, str(fp32_path), target, method, float_layers, metadata or {})
    with atomic_path(out_path) as tmp_out:
        onnx.save(quantized, str(tmp_out))
    kept = tuple(n for n in convs if n not in set(float_nodes))
    LOGGER.info("wrote %s: %d convs int8, %d float (%s)", out_path, len(kept), len(float_nodes), target)
    return QuantResult(out_path, target, kept, tuple(float_nodes), split.tail, len(groups))


def _run_quantizer(
    fp32_path: Path,
    ranges: Mapping[str, tuple[float, float]],
    method: CalibrationMethod,
    target: QuantTarget,
    excluded: Sequence[str],
) -> onnx.ModelProto:
    """ONNX Runtime's ``quantize_static`` on ``fp32_path`` with the given ``ranges`` (no calibration run): per-
    channel int8 weights, ``target``'s activations, ``excluded`` nodes left float. Returns the Q/DQ model; its
    complaint about a tensor missing from the ranges becomes a BuildError. The quantiser reads a copy of the
    model in a temporary folder, where it also leaves its side files (``*-inferred.onnx``)."""
    with tempfile.TemporaryDirectory(prefix="yolov6-quant-") as tmp, _quiet_onnxruntime():
        out, source = Path(tmp) / "int8.onnx", Path(tmp) / "fp32.onnx"
        shutil.copyfile(fp32_path, source)
        try:
            quantize_static(
                str(source),
                str(out),
                None,
                calibration_cache_path=_ort_cache(ranges, method, Path(tmp) / "ranges.json"),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(target.op_types),
                per_channel=True,
                activation_type=target.activation_type,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(excluded),
                calibrate_method=method,
                extra_options=_extra_options(target),
            )
        except ValueError as exc:
            if "Quantization parameters are not specified" not in str(exc):
                raise
            raise BuildError(
                f"the calibration ranges do not cover every tensor to quantise ({exc}); they come from another "
                "calibration recipe: recalibrate (delete the .calib.json cache beside the artifact)"
            ) from exc
        return onnx.load(str(out))


def _extra_options(target: QuantTarget) -> dict[str, Any]:
    return {
        "ActivationSymmetric": target.symmetric,
        "WeightSymmetric": True,
        "ForceQuantizeNoInputCheck": True,
        "OpTypesToExcludeOutputQuantization": list(target.output_float_ops),
        "QuantizeBias": not target.float_bias,
    }


def _check_result(model: onnx.ModelProto, split: qdq.HeadSplit, float_nodes: Sequence[str]) -> None:
    """The rules every Q/DQ model we write must satisfy; a failure is a bug, reported as a BuildError."""
    problems = []
    missing = qdq.conv_inputs_without_dq(model, skip=[*split.tail, *float_nodes])
    if missing:
        problems.append(f"convs without Q/DQ inputs: {missing[:5]}")
    mismatched = qdq.concat_scale_mismatches(model)
    if mismatched:
        problems.append(f"concats with differing input scales: {mismatched[:3]}")
    touched = qdq.qdq_nodes_among(model, split.tail)
    if touched:
        problems.append(f"Q/DQ in the head's float part: {touched[:5]}")
    if problems:
        raise BuildError(
            "the quantised graph breaks the SDK's Q/DQ rules (" + "; ".join(problems) + "); please report this "
            f"with onnxruntime {onnxruntime.__version__}"
        )
