"""mAP with JPEGs decoded at the size the model needs against full decodes, on the demo set enlarged 4x.

The demo val set (``yolov6-datagen --val 100 --seed 0 --imgsz 256 320``) is written, every picture enlarged 4x
(1024-1280 px per side, bicubic, JPEG quality 95) with its COCO boxes scaled to match, and scored twice with the
shipped demo weights at their 160 px: once with ``Detector(reduced_decode=True)`` (the default: these pictures
decode at 1/4 or 1/8 scale) and once with ``reduced_decode=False`` (every pixel decoded, then letterboxed).
Each picture is passed as a file, as a user passes it, so the decoder sees the JPEG.

Usage: ``python benchmarks/reduced_decode_map.py [--weights weights/yolov6n-shapes.pt] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2

from yolov6_sdk.evaluate import coco_detections, coco_map, load_eval_set
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import generate_dataset

ROOT = Path(__file__).resolve().parents[1]
ENLARGE = 4


def enlarged_demo_set(root: Path, factor: int = ENLARGE, count: int = 100) -> Path:
    """The demo val split under ``root``, each picture and box enlarged ``factor`` times."""
    generate_dataset(root, num_train=0, num_val=count, imgsz=(256, 320), seed=0)
    ann_path = root / "annotations" / "instances_val.json"
    ground_truth = json.loads(ann_path.read_text(encoding="utf-8"))
    for image in ground_truth["images"]:
        path = root / "images" / "val" / image["file_name"]
        picture = cv2.imread(str(path), cv2.IMREAD_COLOR)
        big = cv2.resize(picture, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
        image["width"], image["height"] = big.shape[1], big.shape[0]
    for ann in ground_truth["annotations"]:
        ann["bbox"] = [v * factor for v in ann["bbox"]]
        ann["area"] = ann["area"] * factor * factor
    ann_path.write_text(json.dumps(ground_truth), encoding="utf-8")
    return root


def score(weights: Path, data: Path, reduced_decode: bool) -> dict[str, float]:
    """mAP50-95 and mAP50 of ``weights`` on ``data``'s val split, each picture passed to the Detector as a file."""
    eval_set = load_eval_set(data, "val", cache=False)
    detections = []
    with Detector(weights, device="cpu", conf=0.03, iou=0.65, reduced_decode=reduced_decode) as detector:
        for record in eval_set.data.images:
            result = detector(str(record.path))[0]
            detections += coco_detections(record.image_id, result.boxes, result.scores, result.class_ids,
                                          eval_set.data.category_ids)  # fmt: skip
    metrics = coco_map(eval_set, detections)
    return {"map50_95": float(metrics["mAP50-95"]), "map50": float(metrics["mAP50"])}


def measure(weights: Path, work: Path) -> dict[str, dict[str, float]]:
    """Both scores on the enlarged demo set written under ``work``."""
    data = enlarged_demo_set(work / "shapes_x4")
    return {"full": score(weights, data, False), "reduced": score(weights, data, True)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "weights" / "yolov6n-shapes.pt")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="yolov6-reduced-map-") as tmp:
        figures = measure(args.weights, Path(tmp))
    change = figures["reduced"]["map50_95"] - figures["full"]["map50_95"]
    print("| decode | mAP50-95 | mAP50 |\n|---|---|---|")
    for label, row in figures.items():
        print(f"| {label} | {row['map50_95']:.4f} | {row['map50']:.4f} |")
    print(f"\nchange in mAP50-95: {change * 100:+.2f} points")
    if args.json:
        args.json.write_text(json.dumps({**figures, "change_points": change * 100}, indent=1) + "\n")


if __name__ == "__main__":
    main()
