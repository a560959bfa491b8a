"""Export a fused YOLOv6 model to ONNX: raw, or end-to-end with NMS inside the graph.

* raw: input ``images`` float32 [B, 3, H, W] (RGB, 0..1, letterboxed), output ``outputs`` [B, A, 5 + nc]
  (cx, cy, w, h in input pixels, objectness 1.0, sigmoid class scores).
* end-to-end: the EfficientNMS convention on every backend: ``num_dets`` [B, 1] int32, ``det_boxes``
  [B, K, 4] float32 x1y1x2y2 input pixels, ``det_scores`` [B, K], ``det_classes`` [B, K] int32; entries past
  ``num_dets`` are zero. ``nms="ort"`` uses the standard ``NonMaxSuppression`` op (ONNX Runtime), ``nms="trt"``
  the ``EfficientNMS_TRT`` plugin node (TensorRT).

NMS semantics (``multi_label``, recorded in the metadata; the raw path applies it in Python): single-label
(default) keeps each box's best class only: the NMS node gets a score tensor in which every other class of
that box is zero, so it never passes the threshold and NMS stays class-aware exactly as on the raw path;
multi-label feeds all class scores, so a box may come out once per class above ``conf`` (COCO evaluation).

The classic TorchScript-based exporter is used (``dynamo=False``): it needs no extra dependency and gave the
leaner graph for this network. Files are written to a temporary name and renamed, so a failed export leaves
nothing behind.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from yolov6_sdk import __version__
from yolov6_sdk.artifact.meta import ArtifactMeta, onnx_meta, write_onnx_meta
from yolov6_sdk.artifact.preprocess import MIN_SIDE, check_imgsz
from yolov6_sdk.artifact.spec import END2END_OUTPUTS, INPUT_NAME, NMS_MODES, RAW_OUTPUT_NAME, NmsMode
from yolov6_sdk.errors import BuildError, ConfigError
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.models import fuse
from yolov6_sdk.weights import check_fused_weights

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOptions:
    """What to export.

    Attributes:
        imgsz: (H, W) input size, multiples of 32.
        opset: ONNX opset (13 or newer).
        dynamic_batch: batch axis symbolic (``batch``); else fixed to ``batch``.
        dynamic_hw: height and width symbolic (``height``, ``width``; the raw output's anchor axis follows), for
            rectangular inference; the graph serves any multiple of 32 up to ``imgsz``, which stays the model's
            scale. Recorded in the metadata as ``dynamic_hw`` with ``imgsz_min`` (32x32) and ``imgsz_max``.
        batch: batch size of the static export and of the tracing input.
        half: fp16 weights and input (for GPU runtimes).
        nms: None (raw), "ort" (ONNX NonMaxSuppression) or "trt" (EfficientNMS_TRT plugin).
        conf, iou, max_det: NMS score threshold, IoU threshold and detections kept per image (K).
        multi_label: a box may be kept once per class above ``conf`` (COCO evaluation); False keeps only
            its best class (detection). Recorded in the metadata for every artifact, raw ones included.
        simplify: run onnxslim on the exported graph.
    """

    imgsz: tuple[int, int] = (640, 640)
    opset: int = 13
    dynamic_batch: bool = True
    dynamic_hw: bool = False
    batch: int = 1
    half: bool = False
    nms: NmsMode | None = None
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    multi_label: bool = False
    simplify: bool = True

    def validate(self) -> None:
        try:
            check_imgsz(self.imgsz)
        except ConfigError as exc:  # the contract's one image-size rule, as the export's error
            raise BuildError(str(exc)) from None
        if self.opset < 13:
            raise BuildError(f"opset must be 13 or newer, got {self.opset}")
        if self.nms is not None and self.nms not in NMS_MODES:
            raise BuildError(f"nms must be None, 'ort' or 'trt', got {self.nms!r}")
        if not 0 < self.conf < 1 or not 0 < self.iou <= 1 or self.max_det < 1:
            raise BuildError(
                f"need 0 < conf < 1, 0 < iou <= 1 and max_det >= 1, got conf={self.conf} iou={self.iou} "
                f"max_det={self.max_det}"
            )
        if self.batch < 1:
            raise BuildError(f"batch must be >= 1, got {self.batch}")
        if not isinstance(self.multi_label, bool):
            raise BuildError(f"multi_label must be True or False, got {self.multi_label!r}")
        if not isinstance(self.dynamic_hw, bool):
            raise BuildError(f"dynamic_hw must be True or False, got {self.dynamic_hw!r}")


class _OrtNMS(torch.autograd.Function):
    """Traces as ONNX ``NonMaxSuppression``.

    The eager forward runs only while tracing, where values do not matter: it returns one (batch, class 0,
    box 0) row per image, a tensor of the op's dtype and rank.
    """

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class, iou, score_threshold):  # noqa: ANN001, ARG004
        batch = torch.arange(boxes.shape[0], dtype=torch.int64)
        return torch.stack((batch, torch.zeros_like(batch), torch.zeros_like(batch)), dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou, score_threshold):  # noqa: ANN001, ANN205
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou, score_threshold, center_point_box_i=0)


class _EfficientNMSTRT(torch.autograd.Function):
    """Traces as the TensorRT ``EfficientNMS_TRT`` plugin; eager forward only produces tensors of the right shape."""

    @staticmethod
    def forward(ctx, boxes, scores, iou, conf, max_det):  # noqa: ANN001, ARG004
        batch = boxes.shape[0]
        return (
            torch.zeros(batch, 1, dtype=torch.int32),
            torch.zeros(batch, max_det, 4, dtype=boxes.dtype),
            torch.zeros(batch, max_det, dtype=scores.dtype),
            torch.zeros(batch, max_det, dtype=torch.int32),
        )

    @staticmethod
    def symbolic(g, boxes, scores, iou, conf, max_det):  # noqa: ANN001, ANN205
        outputs = g.op(
            "TRT::EfficientNMS_TRT",
            boxes,
            scores,
            background_class_i=-1,
            box_coding_i=1,  # boxes arrive as (cx, cy, w, h)
            iou_threshold_f=iou,
            max_output_boxes_i=max_det,
            plugin_version_s="1",
            score_activation_i=0,  # scores are already sigmoid probabilities
            score_threshold_f=conf,
            outputs=4,
        )
        # Declare the plugin's output types so the graph carries them (the exporter cannot infer a plugin).
        shapes = ([None, 1], [None, max_det, 4], [None, max_det], [None, max_det])
        dtypes = (torch.int32, boxes.type().dtype(), scores.type().dtype(), torch.int32)
        for value, shape, dtype in zip(outputs, shapes, dtypes, strict=True):
            value.setType(value.type().with_dtype(dtype).with_sizes(shape))
        return outputs


class _End2End(nn.Module):
    """Model + NMS, emitting the EfficientNMS outputs. Input [B, 3, H, W]; outputs as the module docstring says."""

    def __init__(self, model: nn.Module, options: ExportOptions) -> None:
        super().__init__()
        self.model, self.options = model, options

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pred = self.model(images)  # [B, A, 5 + nc]
        opt = self.options
        boxes_cxcywh = pred[..., :4]
        scores = pred[..., 5:] if opt.multi_label else _best_class_only(pred[..., 5:])  # [B, A, nc]
        if opt.nms == "trt":
            return _EfficientNMSTRT.apply(boxes_cxcywh, scores, opt.iou, opt.conf, opt.max_det)
        return self._ort_nms(boxes_cxcywh, scores)

    def _ort_nms(self, boxes_cxcywh: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
        opt = self.options
        xy, wh = boxes_cxcywh[..., :2], boxes_cxcywh[..., 2:]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), dim=-1)  # [B, A, 4] xyxy
        scores_t = scores.transpose(1, 2).contiguous()  # [B, nc, A]
        selected = _OrtNMS.apply(
            boxes,
            scores_t,
            torch.tensor([opt.max_det], dtype=torch.int64),
            torch.tensor([opt.iou], dtype=torch.float32),
            torch.tensor([opt.conf], dtype=torch.float32),
        )  # [N, 3]: (batch, class, box)
        b, c, i = selected[:, 0], selected[:, 1], selected[:, 2]
        num_classes, num_anchors = scores_t.shape[1], scores_t.shape[2]
        # One score per (class, box) slot, zero where NMS kept nothing; top-K over it gives the per-image result.
        dense = torch.zeros(scores_t.shape[0], num_classes * num_anchors, dtype=scores.dtype)
        dense = dense.index_put((b, c * num_anchors + i), scores_t[b, c, i])
        top_scores, top_slots = dense.topk(opt.max_det, dim=1)
        top_classes = torch.div(top_slots, num_anchors, rounding_mode="floor")
        top_boxes = torch.gather(boxes, 1, (top_slots % num_anchors).unsqueeze(-1).expand(-1, -1, 4))
        valid = top_scores > 0
        num_dets = valid.sum(dim=1, keepdim=True).to(torch.int32)
        det_boxes = top_boxes * valid.unsqueeze(-1).to(boxes.dtype)
        det_classes = (top_classes * valid.to(top_classes.dtype)).to(torch.int32)
        return num_dets, det_boxes, top_scores, det_classes


def _best_class_only(scores: torch.Tensor) -> torch.Tensor:
    """``[B, A, nc]`` scores with all but each box's best class (ArgMax, first on ties) set to zero."""
    best = scores.argmax(dim=-1, keepdim=True)  # [B, A, 1]
    classes = torch.arange(scores.shape[-1], device=scores.device)  # [nc]
    return scores * (classes == best).to(scores.dtype)


def _output_axes(options: ExportOptions) -> tuple[list[str], dict[str, dict[int, str]]]:
    names = list(END2END_OUTPUTS) if options.nms else [RAW_OUTPUT_NAME]
    axes: dict[str, dict[int, str]] = {name: {} for name in [INPUT_NAME, *names]}
    if options.dynamic_batch:
        for name in axes:
            axes[name][0] = "batch"
    if options.dynamic_hw:
        axes[INPUT_NAME].update({2: "height", 3: "width"})
        if not options.nms:
            axes[RAW_OUTPUT_NAME][1] = "anchors"
    return names, {name: dims for name, dims in axes.items() if dims}


def _metadata(model: nn.Module, options: ExportOptions, extra: Mapping[str, object], where: str) -> ArtifactMeta:
    """The record an export carries: the model and ``options``, with ``extra`` (flat values) set over them."""
    low, high = ((MIN_SIDE, MIN_SIDE), options.imgsz) if options.dynamic_hw else (None, None)
    meta = ArtifactMeta(
        producer="yolov6-sdk",
        sdk_version=__version__,
        model=model.config.name,
        num_classes=model.num_classes,
        names=tuple(getattr(model, "names", ())),
        strides=tuple(model.strides),
        imgsz=options.imgsz,
        dynamic_hw=options.dynamic_hw,
        imgsz_min=low,
        imgsz_max=high,
        precision="fp16" if options.half else "fp32",
        dynamic_batch=options.dynamic_batch,
        batch=options.batch,
        end2end=options.nms or "",
        conf=options.conf,
        iou=options.iou,
        max_det=options.max_det,
        multi_label=options.multi_label,
    )
    return meta.updated(extra, where) if extra else meta


def _simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # a slimmer failure must not lose a valid export
        LOGGER.warning("onnxslim could not simplify the graph (%s); keeping the unsimplified export", exc)
        return proto


def export_onnx(
    model: nn.Module,
    path: str | Path,
    options: ExportOptions | None = None,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Export ``model`` (a YOLOv6 from :func:`yolov6_sdk.models.build_model`) to ``path``.

    The model is deep-copied, fused and put in eval mode; the caller's model is left untouched. ``metadata``
    entries are added to the ONNX ``metadata_props`` beside the standard ones (names, strides, imgsz,
    precision, sdk version, NMS settings). Returns the written path.
    """
    options = options or ExportOptions()
    options.validate()
    path = Path(path)
    model = fuse(copy.deepcopy(model).float().eval().cpu())
    check_fused_weights(model, f"the {model.config.name} model to export")
    wrapped: nn.Module = _End2End(model, options) if options.nms else model
    dtype = torch.float16 if options.half else torch.float32
    wrapped = wrapped.to(dtype)
    dummy = torch.zeros(options.batch, 3, *options.imgsz, dtype=dtype)
    output_names, axes = _output_axes(options)
    with atomic_path(path) as tmp:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
                torch.onnx.export(
                    wrapped,
                    (dummy,),
                    str(tmp),
                    opset_version=options.opset,
                    input_names=[INPUT_NAME],
                    output_names=output_names,
                    dynamic_axes=axes or None,
                    do_constant_folding=True,
                    dynamo=False,
                )
        except Exception as exc:
            raise BuildError(f"ONNX export of {model.config.name} failed: {exc}") from exc
        proto = onnx.load(str(tmp))
        if options.simplify:
            proto = _simplify(proto)
        write_onnx_meta(proto, _metadata(model, options, metadata or {}, str(path)))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    LOGGER.info("exported %s to %s", model.config.name, path)
    return path


def read_metadata(path: str | Path) -> ArtifactMeta:
    """The :class:`~yolov6_sdk.artifact.meta.ArtifactMeta` an ONNX file records."""
    return onnx_meta(onnx.load(str(path), load_external_data=False), str(path))
