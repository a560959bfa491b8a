"""``yolov6-eval``: COCO mAP of any model artifact (.pt, .onnx, int8 .onnx, .engine) on a validation split.

Official evaluation settings by default: conf 0.03, NMS IoU 0.65, 300 detections per image, multi-label NMS.
Exit status: 0 on success, 2 for a usage error (bad option, unusable model or dataset, an output file that
cannot be written: checked before the evaluation), 130 / 143 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from yolov6_sdk.artifact.spec import BACKENDS
from yolov6_sdk.cli.options import CommandParser, add_device, parse, parse_imgsz_option
from yolov6_sdk.cli.outputs import check_outputs
from yolov6_sdk.cli.signals import command


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="yolov6-eval", description="COCO mAP of a YOLOv6 model artifact.")
    p.add_argument("--model", required=True, help="artifact: .pt, .onnx or .engine/.plan")
    p.add_argument("--data", required=True, help="COCO-layout root or YOLO data.yaml")
    p.add_argument("--split", default="val", help="split to score, e.g. val or test (default val)")
    p.add_argument("--imgsz", type=int, nargs="+", metavar="PX",
                   help="input size H [W], multiples of 32 (default: the model's)")  # fmt: skip
    p.add_argument("--conf", type=float, default=0.03, help="score threshold (default 0.03)")
    p.add_argument("--iou", type=float, default=0.65, help="NMS IoU threshold (default 0.65)")
    p.add_argument("--max-det", type=_positive, default=300, help="detections per image (default 300)")
    p.add_argument("--batch", "--bs", type=_positive, default=8, metavar="N", help="images per model run (default 8)")
    add_device(p)
    p.add_argument("--backend", default="auto", choices=("auto", *sorted(BACKENDS)),
                   help="runtime that runs the model (default auto: from the model file's suffix)")  # fmt: skip
    p.add_argument("--per-class", action="store_true", help="also print the AP of every class")
    p.add_argument("--json", metavar="FILE", help="write the metrics (mAP as fractions) to this JSON file")
    p.add_argument("--save-json", metavar="FILE",
                   help="write the predictions as COCO results (image_id, category_id, bbox x y w h, score), "
                   "the list pycocotools and faster-coco-eval load with loadRes")  # fmt: skip
    return p


def _table(name: str, metrics: dict, per_class: bool) -> str:
    lines = [
        f"{'model':<32} {'images':>7} {'detections':>10} {'mAP50-95':>9} {'mAP50':>7}",
        f"{name[-32:]:<32} {metrics['images']:>7} {metrics['detections']:>10} "
        f"{metrics['mAP50-95']:>9.4f} {metrics['mAP50']:>7.4f}",
    ]
    if per_class:
        lines += ["", f"{'class':<32} {'AP50-95':>9}"]
        lines += [f"{cls[:32]:<32} {ap:>9.4f}" for cls, ap in metrics["per_class"].items()]
    return "\n".join(lines)


@command("yolov6-eval")
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parse(parser, argv)
    imgsz = parse_imgsz_option(parser, args.imgsz)
    check_outputs(files={"--json": args.json, "--save-json": args.save_json})
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from yolov6_sdk.fileio import atomic_path
    from yolov6_sdk.scoring import evaluate_artifact

    metrics = evaluate_artifact(
        args.model, args.data, args.split, imgsz=imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det,
        batch=args.batch, device=args.device, backend=args.backend, progress=True, save_json=args.save_json,
    )  # fmt: skip
    print(_table(Path(args.model).name, metrics, args.per_class))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"model": args.model, "data": args.data, **metrics}, indent=2))
    if args.save_json:
        print(f"COCO results written to {args.save_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
