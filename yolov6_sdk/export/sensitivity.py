"""Per-layer INT8 sensitivity and the choice of layers to leave in float (partial quantisation).

For each quantised convolution of the body, the model is quantised again with that one layer left in float,
and compared with the fully quantised model: the layers whose float fallback removes the most error are the
most sensitive. The comparison measure is:

* always, the **output error** against fp32 on sample images (:class:`OutputComparer`): over the anchors the
  fp32 model scores at least ``conf`` in some class, the mean absolute score difference (0..1) plus the mean
  absolute box-coordinate difference divided by the box size (sqrt of its area). 0.01 reads "scores move by
  about one point, or box sides by about 1 % of the box";
* with a validation set, **mAP50-95** through a caller-supplied ``evaluate(path) -> float``.

:func:`choose_float_layers` then leaves the most sensitive layers in float, one at a time (greedy), until the
budget holds: an mAP drop against fp32 of at most ``max_ap_drop`` (a fraction, 0.01 = one point) when mAP is
measured, else an output error of at most ``max_error``. YOLOv6's own partial quantisation ranks layers the same way (quantise one
layer, measure mAP) and skips the worst ones.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import utils

from yolov6_sdk.errors import BuildError
from yolov6_sdk.export import ort_quant, qdq
from yolov6_sdk.export.options import BuildOptions

LOGGER = logging.getLogger(__name__)

Evaluate = Callable[[Path], float]
"""``evaluate(artifact_path) -> mAP50-95`` (a fraction, 0..1) of a model artifact on the validation set; the
caller makes it (the build never runs the Detector itself)."""
StepProgress = Callable[[int, int], None]
"""Called as ``progress(steps_done, steps_total)``."""

_NMS_OPS = ("NonMaxSuppression", "EfficientNMS_TRT")


@dataclass(frozen=True)
class LayerScore:
    """One layer's sensitivity.

    Attributes:
        node: the Conv node name; module: its torch module path (``backbone.ERBlock_2.0.rbr_reparam``).
        error: output error with this layer float and every other quantised layer int8.
        gain: error of the fully quantised model minus ``error`` (how much leaving it float helps).
        map: mAP50-95 (a fraction) with this layer float, when measured.
    """

    node: str
    module: str
    error: float
    gain: float
    map: float | None = None


@dataclass(frozen=True)
class SensitivityReport:
    """Outcome of an analysis and of the float-layer choice.

    ``layers`` is ranked most sensitive first; ``int8_*`` describe the fully quantised model, ``final_*`` the
    one with ``float_nodes`` left float; mAP values (fractions) are None when not measured.
    """

    layers: tuple[LayerScore, ...]
    int8_error: float
    final_error: float
    float_nodes: tuple[str, ...]
    budget_met: bool
    fp32_map: float | None = None
    int8_map: float | None = None
    final_map: float | None = None


def _decoded_outputs(model: onnx.ModelProto) -> tuple[list[str], str]:
    """Output tensors (boxes, scores) before any NMS, and the box format ("cxcywh" or "xyxy")."""
    for node in model.graph.node:
        if node.op_type in _NMS_OPS:
            return [node.input[0], node.input[1]], "xyxy" if node.op_type == "NonMaxSuppression" else "cxcywh"
    return [model.graph.output[0].name], "cxcywh"


def decoded_view(path: str | Path) -> tuple[onnx.ModelProto, str]:
    """The model of ``path`` cut before its NMS (boxes and scores of every anchor), and the box format."""
    model = onnx.load(str(path))
    outputs, box_format = _decoded_outputs(model)
    if outputs == [model.graph.output[0].name]:
        return model, box_format
    inputs = [v.name for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}]
    cut = utils.Extractor(model).extract_model(inputs, outputs)
    return cut, box_format


def _boxes_scores(outputs: list[np.ndarray], anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [B, A, 4], scores [B, A, nc]) from a raw output or the two NMS inputs."""
    if len(outputs) == 1:
        return outputs[0][..., :4], outputs[0][..., 5:]
    boxes, scores = outputs
    if scores.shape[1] != anchors:  # ONNX NonMaxSuppression takes scores as [B, nc, A]
        scores = scores.transpose(0, 2, 1)
    return boxes, scores


class OutputComparer:
    """Output error of quantised variants against the fp32 model on fixed sample images.

    Args:
        fp32_path: the fp32 ONNX (raw or end-to-end).
        images: float32 [B, 3, H, W] sample batch (from the calibration set).
        conf: anchors whose best fp32 class score reaches ``conf`` are compared (the 100 best per image when
            none does).
    """

    def __init__(self, fp32_path: str | Path, images: np.ndarray, conf: float = 0.05) -> None:
        self.images = images
        model, self.box_format = decoded_view(fp32_path)
        boxes, scores = self._run(model)
        best = scores.max(axis=-1)  # [B, A]
        mask = best >= conf
        if not mask.any():
            top = np.argsort(-best, axis=1)[:, :100]
            mask = np.zeros_like(best, dtype=bool)
            np.put_along_axis(mask, top, True, axis=1)
        self.mask, self.boxes, self.scores = mask, boxes[mask], scores[mask]
        self.sizes = np.sqrt(np.clip(self._areas(self.boxes), 1.0, None))[:, None]

    def _areas(self, boxes: np.ndarray) -> np.ndarray:
        if self.box_format == "xyxy":
            return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes[:, 2] * boxes[:, 3]

    def _run(self, model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {session.get_inputs()[0].name: self.images})
        anchors = outputs[0].shape[1]
        return _boxes_scores(outputs, anchors)

    def error(self, path: str | Path) -> float:
        """Output error of the model at ``path`` (see the module docstring)."""
        boxes, scores = self._run(decoded_view(path)[0])
        score_error = float(np.abs(scores[self.mask] - self.scores).mean())
        box_error = float((np.abs(boxes[self.mask] - self.boxes) / self.sizes).mean())
        return score_error + box_error


@dataclass(frozen=True)
class QuantJob:
    """Everything needed to quantise one variant: the fp32 model, ranges, target and calibration method."""

    fp32_path: Path
    ranges: Mapping[str, tuple[float, float]]
    target: str
    method: str

    def quantize(self, out_path: Path, float_nodes: Sequence[str]) -> Path:
        return ort_quant.quantize_model(
            self.fp32_path, out_path, self.ranges, self.target, self.method, float_nodes=float_nodes
        ).path


class _Measure:
    """Quantises variants into a scratch folder and measures them (error always, mAP when asked)."""

    def __init__(self, job: QuantJob, comparer: OutputComparer, evaluate: Evaluate | None, scratch: Path) -> None:
        self.job, self.comparer, self.evaluate, self.scratch = job, comparer, evaluate, scratch
        self.count = 0

    def __call__(self, float_nodes: Sequence[str]) -> tuple[float, float | None]:
        self.count += 1
        path = self.job.quantize(self.scratch / f"variant{self.count}.onnx", float_nodes)
        error = self.comparer.error(path)
        score = self.evaluate(path) if self.evaluate is not None else None
        path.unlink(missing_ok=True)
        return error, score


def rank_layers(
    job: QuantJob,
    comparer: OutputComparer,
    layers: Sequence[str] | None = None,
    evaluate: Evaluate | None = None,
    progress: StepProgress | None = None,
) -> tuple[tuple[LayerScore, ...], float, float | None]:
    """Rank ``layers`` (default: every quantised body conv) by sensitivity, most sensitive first.

    Returns the ranking, the error and the mAP (when ``evaluate`` is given) of the fully quantised model.
    Ranked by mAP with that layer float (higher first) when measured, else by error gain.
    """
    model = onnx.load(str(job.fp32_path))
    candidates = list(layers) if layers is not None else ort_quant.body_convs(model)
    unknown = sorted(set(candidates) - set(ort_quant.body_convs(model)))
    if unknown:
        raise BuildError(f"sensitivity: {unknown} are not quantised convolutions of {job.fp32_path}")
    with tempfile.TemporaryDirectory(prefix="yolov6-sensitivity-") as tmp:
        measure = _Measure(job, comparer, evaluate, Path(tmp))
        base_error, base_map = measure([])
        scores = []
        for i, node in enumerate(candidates):
            error, score = measure([node])
            scores.append(LayerScore(node, qdq.module_path(node), error, base_error - error, score))
            if progress is not None:
                progress(i + 1, len(candidates))
    key = (lambda s: -(s.map or 0.0)) if evaluate is not None else (lambda s: -s.gain)
    return tuple(sorted(scores, key=key)), base_error, base_map


@dataclass(frozen=True)
class Budget:
    """How much accuracy INT8 may cost: ``max_ap_drop`` mAP (a fraction) against ``fp32_map`` when mAP is measured
    (``fp32_map`` set), else an output error of at most ``max_error``."""

    max_error: float = BuildOptions.max_error
    max_ap_drop: float = BuildOptions.max_ap_drop
    fp32_map: float | None = None

    def met(self, error: float, score: float | None) -> bool:
        if self.fp32_map is not None and score is not None:
            return self.fp32_map - score <= self.max_ap_drop
        return error <= self.max_error


def choose_float_layers(
    job: QuantJob,
    comparer: OutputComparer,
    ranking: Sequence[LayerScore],
    int8: tuple[float, float | None],
    budget: Budget,
    evaluate: Evaluate | None = None,
    fixed: Sequence[str] | None = None,
) -> SensitivityReport:
    """Leave the most sensitive layers of ``ranking`` in float, one more at a time, until ``budget`` is met.

    ``int8`` is (error, mAP) of the fully quantised model; mAP is measured for each step when ``evaluate`` is
    given. When every ranked layer in float still misses the budget, all of them stay float and ``budget_met``
    is False. ``fixed``: no search, measure exactly these float layers (a manual ``--exclude`` list).
    """
    error, score = int8
    chosen: list[str] = []
    with tempfile.TemporaryDirectory(prefix="yolov6-partial-") as tmp:
        measure = _Measure(job, comparer, evaluate, Path(tmp))
        if fixed is not None:
            chosen = list(fixed)
            if chosen:
                error, score = measure(chosen)
        else:
            for layer in ranking:
                if budget.met(error, score):
                    break
                chosen.append(layer.node)
                error, score = measure(chosen)
                LOGGER.info(
                    "%d layer(s) float: error %.4f%s", len(chosen), error, "" if score is None else f", mAP {score:.2f}"
                )
    return SensitivityReport(
        layers=tuple(ranking),
        int8_error=int8[0],
        final_error=error,
        float_nodes=tuple(chosen),
        budget_met=budget.met(error, score),
        fp32_map=budget.fp32_map,
        int8_map=int8[1],
        final_map=score,
    )


def format_table(report: SensitivityReport, limit: int = 20) -> str:
    """The ranking as a plain-text table (most sensitive first), at most ``limit`` rows."""
    with_map = any(layer.map is not None for layer in report.layers)
    header = f"{'rank':>4}  {'layer':<48} {'error if float':>14} {'gain':>8}" + ("  mAP if float" if with_map else "")
    lines = [header]
    for rank, layer in enumerate(report.layers[:limit], 1):
        row = f"{rank:>4}  {layer.module[:48]:<48} {layer.error:>14.4f} {layer.gain:>8.4f}"
        lines.append(row + (f"  {layer.map:>12.4f}" if layer.map is not None else ""))
    if len(report.layers) > limit:
        lines.append(f"      ... {len(report.layers) - limit} more layers")
    return "\n".join(lines)
