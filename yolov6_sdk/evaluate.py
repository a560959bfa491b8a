"""COCO mAP of any predictor's detections: a Detector's over an artifact, or the trainer's over its torch model.

Official settings by default (meituan/YOLOv6 tools/eval.py): confidence 0.03, NMS IoU 0.65, at most 300 boxes
per image, multi-label NMS. Predictions are mapped back to original-image pixels and scored with
faster-coco-eval (the pycocotools algorithm) at IoU 0.50:0.95 with at most 100 detections per image.

Ground truth: for a COCO-layout root the annotation file itself (crowd regions stay ignore regions), restricted to
the images the loader kept; for a YOLO ``data.yaml`` a COCO ground truth built in memory from the parsed labels
(readers in :mod:`yolov6_sdk.labels`).

The predictor is handed in, so this module sits below export and runtime: :func:`yolov6_sdk.scoring.evaluate_artifact`
runs an artifact through the Detector and scores it here, and the trainer scores the torch model it is training with
:func:`yolov6_sdk.training.validate.evaluate_model`, on the same :func:`coco_map`. torch is never imported here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.images import read_image
from yolov6_sdk.errors import ConfigError, DatasetError
from yolov6_sdk.fileio import write_text
from yolov6_sdk.labels import DetectionSet, load_coco, load_yolo

LOGGER = logging.getLogger(__name__)
EVAL_CONF, EVAL_IOU, EVAL_MAX_DET = 0.03, 0.65, 300  # official evaluation thresholds


class Prediction(Protocol):
    """What a predictor returns per image: ``boxes`` float [N, 4] xyxy original pixels, ``scores`` [N],
    ``class_ids`` int [N] (model class indices)."""

    boxes: Any
    scores: Any
    class_ids: Any


PredictFn = Callable[[list[np.ndarray]], Sequence[Prediction]]


@dataclass(frozen=True)
class EvalSet:
    """A validation split: the parsed images and the COCO ground truth (a json dict) they are scored against."""

    data: DetectionSet
    ground_truth: dict[str, Any]


# ------------------------------------------------------------------------------------------------- data


def load_split(data: str | Path, split: str, *, cache: bool = True) -> DetectionSet:
    """Parse ``split`` of a COCO-layout root folder or a YOLO ``data.yaml`` (picked from the path)."""
    path = Path(data)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_yolo(path, split, cache=cache)
    if path.is_dir():
        return load_coco(path, split, cache=cache)
    raise DatasetError(
        f"dataset {path} not found or of unknown kind: expected a COCO-layout folder (images/{split}/ and "
        f"annotations/instances_{split}.json) or a YOLO data.yaml"
    )


def coco_ground_truth(data: DetectionSet) -> dict[str, Any]:
    """A COCO detection ground truth (json dict) of ``data``'s images, boxes and categories."""
    images, annotations = [], []
    for rec in data.images:
        h, w = rec.shape
        images.append({"id": rec.image_id, "width": w, "height": h, "file_name": str(rec.path)})
        for box, cls in zip(rec.boxes.tolist(), rec.classes.tolist(), strict=True):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": rec.image_id,
                    "category_id": data.category_ids[cls],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c, "name": n} for c, n in zip(data.category_ids, data.names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def load_eval_set(data: str | Path | DetectionSet, split: str = "val", *, cache: bool = True) -> EvalSet:
    """The split to score: a COCO root's annotation file, otherwise ground truth built from the labels."""
    if isinstance(data, DetectionSet):
        return EvalSet(data, coco_ground_truth(data))
    parsed = load_split(data, split, cache=cache)
    if not parsed.images:
        raise DatasetError(
            f"the {split!r} split of {data} holds no usable image, so there is nothing to score; pass a split with "
            "images (--split val) or add images to it"
        )
    if parsed.skipped:
        LOGGER.warning("%s split: %d problems, kept going without them; first: %s", split, len(parsed.skipped),
                       "; ".join(f"{p}: {r}" for p, r in parsed.skipped[:5]))  # fmt: skip
    ann_path = Path(data) / "annotations" / f"instances_{split}.json"
    if ann_path.is_file():
        return EvalSet(parsed, json.loads(ann_path.read_text(encoding="utf-8")))
    return EvalSet(parsed, coco_ground_truth(parsed))


# ------------------------------------------------------------------------------------------------ scoring


def coco_detections(
    image_id: int, boxes: Any, scores: Any, class_ids: Any, category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """COCO result entries of one image: ``boxes`` [N, 4] xyxy original pixels -> ``bbox`` [x, y, w, h].

    ``class_ids`` are model class indices, mapped to annotation ids by ``category_ids``; ids outside the
    dataset's classes raise :class:`ConfigError`.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores, class_ids = np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(class_ids).reshape(-1)
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= len(category_ids)):
        raise ConfigError(
            f"predicted class id {int(class_ids.max())} is outside the dataset's {len(category_ids)} classes; "
            "evaluate a model trained on this dataset's classes"
        )
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category_ids[int(c)]),
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(s), 5),
        }
        for (x1, y1, x2, y2), s, c in zip(boxes.tolist(), scores.tolist(), class_ids.tolist(), strict=True)
    ]


def coco_map(eval_set: EvalSet, detections: list[dict[str, Any]]) -> dict[str, Any]:
    """Score COCO result entries against ``eval_set``.

    Returns ``{"mAP50-95", "mAP50", "per_class": {name: AP50-95}, "images", "detections"}``; mAPs are 0.0 when
    the split has no ground-truth box, classes without ground truth are left out of ``per_class``.
    """
    fce = require("faster_coco_eval")
    gt = fce.COCO(eval_set.ground_truth, print_function=LOGGER.debug)
    dt = gt.loadRes([dict(d) for d in detections])
    coco_eval = fce.COCOeval_faster(gt, dt, "bbox", print_function=LOGGER.debug)
    coco_eval.params.imgIds = sorted(rec.image_id for rec in eval_set.data.images)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    map5095, map50 = (max(float(v), 0.0) for v in coco_eval.stats[:2])  # -1 means "no ground truth"
    precision = np.asarray(coco_eval.eval["precision"])  # [IoU thr, recall thr, class, area, max dets]
    names = {c["id"]: c["name"] for c in eval_set.ground_truth["categories"]}
    per_class = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        if (p > -1).any():
            per_class[str(names.get(cat_id, cat_id))] = float(p[p > -1].mean())
    return {
        "mAP50-95": map5095,
        "mAP50": map50,
        "per_class": per_class,
        "images": len(eval_set.data),
        "detections": len(detections),
    }


# ------------------------------------------------------------------------------------------ entry points


def _batches(eval_set: EvalSet, batch: int) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    records = eval_set.data.images
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        yield [r.image_id for r in chunk], [read_image(r.path) for r in chunk]


def evaluate(
    predictor: PredictFn,
    data: str | Path | DetectionSet | EvalSet,
    split: str = "val",
    batch: int = 8,
    progress: bool = False,
    save_json: str | Path | None = None,
) -> dict[str, Any]:
    """mAP of ``predictor`` on ``data``'s ``split``.

    ``predictor(images)`` receives lists of up to ``batch`` HxWx3 uint8 BGR images in dataset order and returns
    one :class:`Prediction` per image (boxes in original pixels); a :class:`~yolov6_sdk.Detector` fits as is.
    ``save_json``: also write the predictions there as COCO results (:func:`save_coco_results`).
    Returns what :func:`coco_map` returns.
    """
    if batch < 1:
        raise ConfigError(f"batch={batch}: expected at least 1 image per batch")
    eval_set = data if isinstance(data, EvalSet) else load_eval_set(data, split)
    tqdm = require("tqdm").tqdm
    detections: list[dict[str, Any]] = []
    total = -(-len(eval_set.data) // batch)
    for ids, images in tqdm(_batches(eval_set, batch), total=total, desc="eval", disable=not progress):
        predictions = predictor(images)
        if len(predictions) != len(images):
            raise ConfigError(f"the predictor returned {len(predictions)} results for {len(images)} images")
        for image_id, pred in zip(ids, predictions, strict=True):
            detections += coco_detections(image_id, pred.boxes, pred.scores, pred.class_ids,
                                          eval_set.data.category_ids)  # fmt: skip
    if save_json is not None:
        save_coco_results(detections, save_json)
    return coco_map(eval_set, detections)


def save_coco_results(detections: list[dict[str, Any]], path: str | Path) -> Path:
    """Write COCO result entries (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] original pixels,
    ``score``) as the JSON list pycocotools' and faster-coco-eval's ``loadRes`` read; atomically."""
    return write_text(path, json.dumps(detections))


__all__ = [
    "EVAL_CONF",
    "EVAL_IOU",
    "EVAL_MAX_DET",
    "EvalSet",
    "Prediction",
    "coco_detections",
    "coco_ground_truth",
    "coco_map",
    "evaluate",
    "load_eval_set",
    "load_split",
    "save_coco_results",
]
