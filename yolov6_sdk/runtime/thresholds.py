"""The NMS settings of one Detector call (:class:`Thresholds`), checked once where the user gives them.

A Detector holds its own (an end-to-end artifact's NMS ran inside the graph with the settings it records, which
a Detector can narrow but not widen: :func:`warn_end2end_overrides`); a call may pass ``conf``, ``iou``, ``classes`` and ``max_det`` to set over them for that
call only (:func:`call_thresholds`). Classes are taken as class ids or class names, as
:meth:`~yolov6_sdk.runtime.results.Results.filter` takes them (:func:`class_ids`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yolov6_sdk.artifact.model_info import ModelInfo
from yolov6_sdk.artifact.spec import END2END_OUTPUTS
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.runtime.postprocess import Detections, check_thresholds

LOGGER = logging.getLogger(__name__)

ClassFilter = Sequence[int | str] | None
"""Classes to keep: class ids and/or class names; None keeps every class."""


@dataclass(frozen=True)
class Thresholds:
    """Checked NMS settings: score threshold (0..1), IoU threshold (0..1), detections kept per image, class ids
    kept (None: all)."""

    conf: float
    iou: float
    max_det: int
    classes: tuple[int, ...] | None


def class_ids(classes: ClassFilter, names: Sequence[str]) -> tuple[int, ...] | None:
    """``classes`` (ids and/or names) as class ids of a model with ``names``.

    Raises:
        ConfigError: not a list, an unknown name, or an id outside ``0..len(names) - 1``.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, int, np.integer)) or not isinstance(classes, (Sequence, np.ndarray)):
        example = list(names[:1]) or ["person"]
        raise ConfigError(f"classes must be a list of class ids or names, got {classes!r}; e.g. [0, 2] or {example}")
    index = {name: i for i, name in reversed(list(enumerate(names)))}
    ids = [index.get(c, c) if isinstance(c, str) else c for c in classes]
    bad = [c for c in ids if isinstance(c, (bool, str)) or not isinstance(c, (int, np.integer)) or c < 0]
    bad += [c for c in ids if names and c not in bad and c >= len(names)]
    if bad:
        known = f"class ids in 0..{max(len(names) - 1, 0)} or names in {list(names[:10])}"
        raise ConfigError(f"classes must be {known}, got {bad} in {list(classes)}")
    return tuple(int(c) for c in ids)


def call_thresholds(
    base: Thresholds,
    names: Sequence[str],
    conf: float | None,
    iou: float | None,
    classes: ClassFilter,
    max_det: int | None,
) -> Thresholds:
    """``base`` with the values one call passes (None: keep ``base``'s) checked and set over it.

    Raises:
        ConfigError: as :func:`~yolov6_sdk.runtime.postprocess.check_thresholds` and :func:`class_ids`.
    """
    if conf is None and iou is None and classes is None and max_det is None:
        return base
    conf, iou = base.conf if conf is None else conf, base.iou if iou is None else iou
    max_det = base.max_det if max_det is None else max_det
    check_thresholds(conf, iou, max_det)
    ids = base.classes if classes is None else class_ids(classes, names)
    return Thresholds(float(conf), float(iou), int(max_det), ids)


def filter_detections(det: Detections, settings: Thresholds) -> Detections:
    """Apply conf, classes and max_det to end-to-end detections (numpy, already sorted by score)."""
    keep = det.scores > settings.conf
    if settings.classes is not None:
        keep &= np.isin(det.class_ids, settings.classes)
    index = np.flatnonzero(keep)[: settings.max_det]
    return Detections(det.boxes[index], det.scores[index], det.class_ids[index])


def warn_end2end_overrides(
    where: str, info: ModelInfo, multi_label: bool | None, settings: Thresholds, agnostic: bool = False
) -> None:
    """Warn about settings an end-to-end artifact ``where`` cannot honour: another NMS semantics, class-agnostic
    NMS, a ``conf`` below the one its graph filters at, another ``iou``, a ``max_det`` above what it keeps."""
    if agnostic:
        LOGGER.warning("%s runs class-aware NMS inside the graph; agnostic=True is ignored", where)
    kept = info.meta.max_det
    if kept is None:
        shapes = {spec.name: spec.shape for spec in info.outputs}
        kept = shapes.get(END2END_OUTPUTS[1], (None, None))[1]
    if isinstance(kept, int) and settings.max_det > kept:
        LOGGER.warning("%s keeps at most %d detections per image inside the graph; max_det=%d cannot give more "
                       "(re-export with a larger max_det)", where, kept, settings.max_det)  # fmt: skip
    if multi_label is not None and multi_label != info.multi_label:
        kind = "multi" if info.multi_label else "single"
        LOGGER.warning(
            "%s runs %s-label NMS inside the graph; multi_label=%s is ignored (re-export to change it)",
            where,
            kind,
            multi_label,
        )
    exported = info.meta
    if exported.conf is not None and settings.conf < exported.conf:
        LOGGER.warning(
            "%s filters scores below %.3g inside the graph; conf=%.3g cannot keep more",
            where,
            exported.conf,
            settings.conf,
        )
    if exported.iou is not None and abs(settings.iou - exported.iou) > 1e-6:
        LOGGER.warning(
            "%s runs NMS with iou=%.3g inside the graph; iou=%.3g is ignored (re-export to change it)",
            where,
            exported.iou,
            settings.iou,
        )
