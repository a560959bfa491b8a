"""mAP of the torch model being trained, through the training validation loader.

Images go through :class:`~yolov6_sdk.training.datasets.ValDataset` (letterboxed to ``imgsz`` x ``imgsz`` as
the official validation loader does); the raw output gets multi-label NMS, boxes are mapped back to original
pixels and scored by :func:`yolov6_sdk.evaluate.coco_map`, the same scoring as any artifact's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.preprocess import scale_boxes_to_original
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.evaluate import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET, EvalSet, coco_detections, coco_map, load_eval_set
from yolov6_sdk.labels import DetectionSet
from yolov6_sdk.runtime.postprocess import postprocess_raw_torch

from .datasets import ValDataset, build_dataloader

torch = require("torch")


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    data: str | Path | DetectionSet | EvalSet,
    imgsz: int = 640,
    batch: int = 32,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    max_det: int = EVAL_MAX_DET,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """mAP of a torch YOLOv6 ``model`` (run in eval mode on its own device) on a validation split.

    Images are letterboxed to ``imgsz`` x ``imgsz`` as the official validation loader does; detections come from
    multi-label NMS on the raw ``[B, A, 5 + nc]`` output. The model's train/eval mode is restored afterwards.
    """
    eval_set = data if isinstance(data, EvalSet) else load_eval_set(data)
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != eval_set.data.num_classes:
        raise ConfigError(
            f"the model has {num_classes} classes but the dataset has {eval_set.data.num_classes}; "
            "evaluate a model trained on this dataset's classes"
        )
    device = next(model.parameters()).device
    loader = build_dataloader(ValDataset(eval_set.data, imgsz), batch_size=batch, workers=workers)
    tqdm = require("tqdm").tqdm
    was_training = model.training
    model.eval()
    detections: list[dict[str, Any]] = []
    records = iter(eval_set.data.images)  # the loader keeps dataset order
    try:
        for images, _, _, infos in tqdm(loader, desc="eval", disable=not progress, leave=False):
            outputs = model(images.to(device, non_blocking=True).float() / 255.0)
            for det, info in zip(postprocess_raw_torch(outputs, conf, iou, max_det, multi_label=True), infos,
                                 strict=True):  # fmt: skip
                boxes = scale_boxes_to_original(det.boxes.float(), info).cpu().numpy()
                detections += coco_detections(next(records).image_id, boxes, det.scores.cpu().numpy(),
                                              det.class_ids.cpu().numpy(), eval_set.data.category_ids)  # fmt: skip
    finally:
        model.train(was_training)
    return coco_map(eval_set, detections)


__all__ = ["evaluate_model"]
