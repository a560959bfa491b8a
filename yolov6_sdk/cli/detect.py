"""``yolov6-detect``: run a model on images, folders, globs and videos; save annotated copies and JSON.

Argument parsing and printing only; the work is :func:`yolov6_sdk.runtime.detect.detect`. Bad inputs
(missing, empty, corrupt) are reported one line each at the end while the others go on. Exit status: 0 when
at least one input succeeded, 1 when all failed, 2 for a usage error (bad option, unusable model).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from yolov6_sdk.artifact.spec import BACKENDS

if TYPE_CHECKING:
    from yolov6_sdk.runtime.detect import DetectReport

DEFAULT_SAVE_DIR = "runs/detect"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolov6-detect", description="Detect objects in images and videos with a YOLOv6 model."
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image or video files, folders, glob patterns")
    parser.add_argument("--model", required=True, help="model file: .onnx, .engine/.plan or .pt")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold, 0..1 (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold, 0..1 (default 0.45)")
    parser.add_argument("--max-det", type=int, default=300, help="detections kept per image (default 300)")
    parser.add_argument(
        "--classes", type=int, nargs="+", metavar="ID", help="keep only these class ids, e.g. --classes 0 2"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", *sorted(BACKENDS)),
        help="default auto: from the model suffix",
    )
    parser.add_argument("--imgsz", type=int, nargs="+", help="input size H [W], multiples of 32 (default: the model's)")
    parser.add_argument("--save-dir", default=DEFAULT_SAVE_DIR, help=f"annotated outputs (default {DEFAULT_SAVE_DIR})")
    parser.add_argument("--save-json", metavar="FILE", help="write every detection to this JSON file")
    parser.add_argument("--no-save", action="store_true", help="do not write annotated images or videos")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    from tqdm import tqdm

    from yolov6_sdk.errors import YOLOv6Error
    from yolov6_sdk.runtime.detect import Progress, detect

    imgsz = None if args.imgsz is None else args.imgsz[0] if len(args.imgsz) == 1 else tuple(args.imgsz)
    options = {
        "conf": args.conf,
        "iou": args.iou,
        "max_det": args.max_det,
        "classes": args.classes,
        "device": args.device,
        "backend": args.backend,
        "imgsz": imgsz,
    }
    save_dir = None if args.no_save else args.save_dir
    started = time.perf_counter()
    with tqdm(unit="file", desc="detect", disable=None) as bar:

        def show(progress: Progress) -> None:
            bar.total = progress.total
            bar.update(progress.done - bar.n)
            bar.set_postfix_str(progress.current)

        try:
            report = detect(
                args.model, args.sources, save_dir=save_dir, save_json=args.save_json, progress=show, **options
            )
        except YOLOv6Error as exc:
            print(f"yolov6-detect: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("yolov6-detect: interrupted; outputs written so far are complete", file=sys.stderr)
            return 130
    _print_report(report, save_dir, args.save_json, time.perf_counter() - started)
    return 0 if report.images + report.videos else 1


def _print_report(report: DetectReport, save_dir: str | None, save_json: str | None, seconds: float) -> None:
    frames = f" ({report.frames} frames)" if report.videos else ""
    print(f"{report.images} images and {report.videos} videos{frames} done in {seconds:.1f} s")
    if save_dir is not None and report.images + report.videos:
        print(f"annotated outputs saved to {save_dir}")
    if save_json:
        print(f"detections written to {save_json}")
    if report.failures:
        print(f"{len(report.failures)} inputs failed:", file=sys.stderr)
        for path, error in report.failures:
            print(f"  {path}: {error}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
