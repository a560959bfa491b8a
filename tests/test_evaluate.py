"""COCO mAP evaluation: ground truth as predictions scores 1.0, shifted boxes score ~0, model and artifact paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import randomize_model

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.evaluate import (
    EvalSet,
    coco_detections,
    coco_ground_truth,
    coco_map,
    evaluate,
    load_eval_set,
)
from yolov6_sdk.models import build_model
from yolov6_sdk.runtime.postprocess import Detections
from yolov6_sdk.scoring import evaluate_artifact
from yolov6_sdk.training.datagen import generate_dataset
from yolov6_sdk.training.validate import evaluate_model
from yolov6_sdk.weights import save_checkpoint


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("shapes"), 2, 6, imgsz=(96, 160), seed=3, num_classes=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ground_truth_predictions(eval_set: EvalSet, shift: float = 0.0) -> list[Detections]:
    """Each image's labels as detections with score 1, moved right by ``shift`` box widths."""
    out = []
    for rec in eval_set.data.images:
        boxes = rec.boxes.copy()
        width = boxes[:, 2] - boxes[:, 0]
        boxes[:, [0, 2]] += (shift * width)[:, None]
        out.append(Detections(boxes, np.ones(len(boxes), np.float32), rec.classes))
    return out


def _as_coco(eval_set: EvalSet, predictions: list[Detections]) -> list[dict]:
    entries = []
    for rec, det in zip(eval_set.data.images, predictions, strict=True):
        entries += coco_detections(rec.image_id, det.boxes, det.scores, det.class_ids, eval_set.data.category_ids)
    return entries


def test_ground_truth_boxes_as_predictions_score_map_1(shapes: Path) -> None:
    eval_set = load_eval_set(shapes, "val")
    metrics = coco_map(eval_set, _as_coco(eval_set, _ground_truth_predictions(eval_set)))
    assert metrics["mAP50-95"] == pytest.approx(1.0)
    assert metrics["mAP50"] == pytest.approx(1.0)
    assert set(metrics["per_class"]) <= {"circle", "square", "triangle"}
    assert metrics["images"] == 6


def test_boxes_shifted_by_a_box_width_score_about_0(shapes: Path) -> None:
    eval_set = load_eval_set(shapes, "val")
    metrics = coco_map(eval_set, _as_coco(eval_set, _ground_truth_predictions(eval_set, shift=1.0)))
    assert metrics["mAP50-95"] < 0.02
    assert metrics["mAP50"] < 0.02


def test_half_width_shift_scores_between_0_and_1(shapes: Path) -> None:
    eval_set = load_eval_set(shapes, "val")
    metrics = coco_map(eval_set, _as_coco(eval_set, _ground_truth_predictions(eval_set, shift=0.15)))
    assert 0.05 < metrics["mAP50-95"] < 0.95


def test_no_detections_score_0_not_minus_1(shapes: Path) -> None:
    metrics = coco_map(load_eval_set(shapes, "val"), [])
    assert metrics["mAP50-95"] == 0.0 and metrics["detections"] == 0


def test_in_memory_ground_truth_matches_the_annotation_file(shapes: Path) -> None:
    from_file = load_eval_set(shapes, "val")
    built = coco_ground_truth(from_file.data)
    assert len(built["annotations"]) == len(from_file.ground_truth["annotations"])
    assert [c["id"] for c in built["categories"]] == [1, 2, 3]
    in_memory = load_eval_set(from_file.data)
    metrics = coco_map(in_memory, _as_coco(in_memory, _ground_truth_predictions(in_memory)))
    assert metrics["mAP50-95"] == pytest.approx(1.0)


def test_evaluate_feeds_images_in_dataset_order_to_the_predictor(shapes: Path) -> None:
    eval_set = load_eval_set(shapes, "val")
    answers = iter(_ground_truth_predictions(eval_set))
    seen = []

    def predictor(images: list[np.ndarray]) -> list[Detections]:
        seen.extend(img.shape[:2] for img in images)
        return [next(answers) for _ in images]

    metrics = evaluate(predictor, eval_set, batch=4)
    assert metrics["mAP50-95"] == pytest.approx(1.0)
    assert seen == [rec.shape for rec in eval_set.data.images]


def test_predicted_class_outside_the_dataset_is_an_error() -> None:
    with pytest.raises(ConfigError, match="outside the dataset"):
        coco_detections(1, np.zeros((1, 4)), np.ones(1), np.array([5]), [1, 2, 3])


def test_evaluate_model_on_a_torch_model_returns_metrics_and_keeps_train_mode(shapes: Path) -> None:
    model = build_model("yolov6n", num_classes=3).train()
    metrics = evaluate_model(model, shapes, imgsz=128, batch=4)
    assert model.training
    assert 0.0 <= metrics["mAP50-95"] <= metrics["mAP50"] <= 1.0
    with pytest.raises(ConfigError, match="classes"):
        evaluate_model(build_model("yolov6n", num_classes=4), shapes, imgsz=128)


def test_evaluate_artifact_runs_a_checkpoint_through_the_detector(shapes: Path, tmp_path: Path) -> None:
    model = randomize_model(build_model("yolov6n", num_classes=3))
    path = save_checkpoint(tmp_path / "m.pt", model, names=["circle", "square", "triangle"], imgsz=128)
    metrics = evaluate_artifact(path, shapes, device="cpu")
    assert metrics["images"] == 6 and metrics["detections"] > 0
    assert 0.0 <= metrics["mAP50-95"] <= 1.0


def test_eval_cli_prints_a_table_and_writes_json(shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from yolov6_sdk.cli.eval import main

    path = save_checkpoint(tmp_path / "m.pt", build_model("yolov6n", num_classes=3), imgsz=128)
    assert main(["--model", str(path), "--data", str(shapes), "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "mAP50-95" in out and "m.pt" in out
    assert json.loads((tmp_path / "m.json").read_text())["images"] == 6
    assert main(["--model", str(tmp_path / "missing.pt"), "--data", str(shapes)]) == 2


def test_yolo_yaml_dataset_is_scored_against_its_own_labels(shapes: Path, tmp_path: Path) -> None:
    coco = load_eval_set(shapes, "val")
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    for rec in coco.data.images:
        (tmp_path / "images" / "val" / rec.path.name).write_bytes(rec.path.read_bytes())
        h, w = rec.shape
        lines = [
            f"{c} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}"
            for (x1, y1, x2, y2), c in zip(rec.boxes.tolist(), rec.classes.tolist(), strict=True)
        ]
        (tmp_path / "labels" / "val" / rec.path.with_suffix(".txt").name).write_text("\n".join(lines))
    yaml_path = tmp_path / "data.yaml"
    yaml_path.write_text("path: .\ntrain: images/val\nval: images/val\nnames: [circle, square, triangle]\n")
    yolo = load_eval_set(yaml_path, "val")
    assert [c["id"] for c in yolo.ground_truth["categories"]] == [0, 1, 2]
    metrics = coco_map(yolo, _as_coco(yolo, _ground_truth_predictions(yolo)))
    assert metrics["mAP50-95"] == pytest.approx(1.0)
