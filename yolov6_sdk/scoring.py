"""mAP of a model artifact run by the Detector: what ``yolov6-eval`` prints and what ``yolov6-build --val`` hands
the build to score its artifacts with.

This is the one place where :mod:`yolov6_sdk.evaluate` (which scores any predictor) meets the
:class:`~yolov6_sdk.runtime.detector.Detector`; it sits above runtime and export, so the build gets its mAP
measure as a plain callable (:func:`map_evaluator`) and never reaches the runtime itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.evaluate import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET, EvalSet, evaluate, load_eval_set
from yolov6_sdk.labels import DetectionSet
from yolov6_sdk.runtime.detector import Detector


def evaluate_artifact(
    path: str | Path,
    data: str | Path | DetectionSet | EvalSet,
    split: str = "val",
    imgsz: int | tuple[int, int] | None = None,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    max_det: int = EVAL_MAX_DET,
    batch: int = 8,
    device: str = "auto",
    backend: str = "auto",
    progress: bool = False,
    save_json: str | Path | None = None,
) -> dict[str, Any]:
    """mAP of a model artifact (.pt, .onnx, int8 .onnx, .engine) run by the :class:`~yolov6_sdk.Detector`.

    ``imgsz`` None uses the artifact's own input size. ``save_json``: also write the COCO results there. The
    artifact's classes must be the dataset's. Raw artifacts are decoded with multi-label NMS (the official
    protocol); end-to-end ones run the NMS they were exported with (the Detector warns when that is
    single-label). Returns what :func:`yolov6_sdk.evaluate.coco_map` returns.
    """
    eval_set = data if isinstance(data, EvalSet) else load_eval_set(data, split)
    detector = Detector(
        path, device=device, backend=backend, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz, multi_label=True
    )
    try:
        if detector.names and len(detector.names) != eval_set.data.num_classes:  # [] : an engine recording none
            raise ConfigError(
                f"{path} detects {len(detector.names)} classes but the dataset has {eval_set.data.num_classes}; "
                "evaluate a model trained on this dataset's classes"
            )
        return evaluate(detector.predict_batch, eval_set, batch=batch, progress=progress, save_json=save_json)
    finally:
        detector.close()


def map_evaluator(data: str | Path, imgsz: tuple[int, int]) -> Callable[[Path], float]:
    """``evaluate(path) -> mAP50-95`` (a fraction, 0..1) of an artifact on ``data``'s validation split (loaded
    once), each artifact run by the backend of its suffix at ``imgsz`` (h, w): what ``run_build`` takes."""
    eval_set = load_eval_set(data)

    def measure(path: Path) -> float:
        return float(evaluate_artifact(path, eval_set, imgsz=imgsz, backend="auto")["mAP50-95"])

    return measure


__all__ = ["evaluate_artifact", "map_evaluator"]
