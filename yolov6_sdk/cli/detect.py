"""``yolov6-detect``: run a model on images, folders, globs and videos; save annotated copies and JSON.

Argument parsing and printing only; the work is :func:`yolov6_sdk.runtime.detect.detect`. One line per image
with its detection counts; bad inputs (missing, empty, corrupt, too large) are reported one line each at the end
while the others go on, as are videos whose damaged frames were skipped. Without ``-o``, each run writes to a
new numbered folder (``runs/detect/exp``, ``exp2``, ...). A source that is a number is a camera index, one with
``://`` a stream URL. Exit status: 0 when every input succeeded, 1 when any failed, 2 for a usage error (bad
option, unusable model, an output location that cannot be written), 130 / 143 when interrupted by SIGINT /
SIGTERM (the ``--save-json`` report is written, ``"complete": false``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from yolov6_sdk.artifact.spec import BACKENDS
from yolov6_sdk.cli.options import (
    CommandParser,
    ListThenPositionals,
    add_deprecated_alias,
    add_device,
    parse,
    parse_imgsz_option,
)
from yolov6_sdk.cli.outputs import check_outputs, numbered_run_folder
from yolov6_sdk.cli.signals import command, interrupt_note

if TYPE_CHECKING:
    from yolov6_sdk.runtime.detect import DetectReport, Progress

DEFAULT_SAVE_DIR = "runs/detect"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="yolov6-detect",
        description="Detect objects in images and videos with a YOLOv6 model. Options may come before or after "
        "the sources.",
    )
    parser.add_argument(
        "sources", nargs="*", metavar="SOURCE",
        help="image or video files, folders, glob patterns, camera indices (0) or stream URLs (rtsp://...)",
    )  # fmt: skip
    parser.add_argument("--model", required=True, help="model file: .onnx, .engine/.plan or .pt")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold, 0..1 (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold, 0..1 (default 0.45)")
    parser.add_argument("--max-det", type=int, default=300, help="detections kept per image (default 300)")
    parser.add_argument("--classes", action=ListThenPositionals, convert=int, metavar="ID",
                        help="keep only these class ids, e.g. --classes 0 2")  # fmt: skip
    add_device(parser)
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", *sorted(BACKENDS)),
        help="runtime that runs the model (default auto: from the model file's suffix)",
    )
    parser.add_argument("--names", metavar="NAMES",
                        help="class names for a model that records none (e.g. an engine built by trtexec): a "
                        "data.yaml, a text file with one name per line, or a,b,c")  # fmt: skip
    parser.add_argument("--ort-provider", choices=("cuda", "tensorrt"), default=None,
                        help="ONNX Runtime GPU provider for .onnx models: cuda (default) or tensorrt (engine and "
                        "timing caches kept beside the model)")  # fmt: skip
    parser.add_argument("--imgsz", action=ListThenPositionals, convert=int, metavar="PX",
                        help="input size H [W], multiples of 32 (default: the model's)")  # fmt: skip
    parser.add_argument("--agnostic-nms", action="store_true",
                        help="class-agnostic NMS: an object comes out once even when two classes score it")  # fmt: skip
    parser.add_argument("--batch", "--bs", type=_positive, default=None, metavar="N",
                        help="images per model run (default: the largest batch the model serves, up to 16)")  # fmt: skip
    parser.add_argument("--no-reduced-decode", action="store_true",
                        help="decode every JPEG at full size (default: one at least 2x, 4x or 8x the size the model "
                        "needs on both sides is decoded at 1/2, 1/4 or 1/8 scale; boxes stay in original pixels)")  # fmt: skip
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help=f"folder for annotated images and videos (default: a new {DEFAULT_SAVE_DIR}/exp, "
                        "exp2, ... per run)")  # fmt: skip
    add_deprecated_alias(parser, "--save-dir", "output", "-o/--output", metavar="DIR")
    parser.add_argument("--save-json", metavar="FILE", help="write every detection to this JSON file")
    parser.add_argument("--no-save", action="store_true", help="do not write annotated images or videos")
    parser.add_argument("--save-txt", action="store_true", help="write YOLO label files to DIR/labels/")
    parser.add_argument("--save-conf", action="store_true", help="add each score to the --save-txt lines")
    parser.add_argument("--save-crop", action="store_true", help="write each detection's region to DIR/crops/<class>/")
    parser.add_argument("--line-width", type=_positive, default=None, metavar="PX",
                        help="box line width of annotated outputs (default: 0.5 %% of the picture's short side)")  # fmt: skip
    parser.add_argument("--vid-stride", type=_positive, default=1, metavar="N",
                        help="run every N-th frame of videos and streams (default 1)")  # fmt: skip
    return parser


def _source(text: str) -> str | int:
    """A camera index as an int ("0" -> 0); everything else as given."""
    return int(text) if text.isdigit() else text


@command("yolov6-detect")
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parse(parser, argv, positionals="sources")
    if not args.sources:
        parser.error("give at least one SOURCE: an image or video file, a folder or a glob pattern")
    imgsz = parse_imgsz_option(parser, args.imgsz)
    writes = not args.no_save or args.save_txt or args.save_crop
    output = args.output or (numbered_run_folder(DEFAULT_SAVE_DIR) if writes else None)
    check_outputs(folders={"-o/--output": output if writes else None}, files={"--save-json": args.save_json})

    from tqdm import tqdm

    from yolov6_sdk.runtime.detect import SaveOptions, detect

    options = {
        "conf": args.conf,
        "iou": args.iou,
        "max_det": args.max_det,
        "classes": args.classes,
        "device": args.device,
        "backend": args.backend,
        "imgsz": imgsz,
        "batch": args.batch,
        "names": args.names,
        "ort_provider": args.ort_provider,
        "reduced_decode": not args.no_reduced_decode,
        "agnostic": args.agnostic_nms,
    }
    save = SaveOptions(images=not args.no_save, txt=args.save_txt, conf=args.save_conf, crop=args.save_crop,
                       line_width=args.line_width, vid_stride=args.vid_stride)  # fmt: skip
    save_dir = str(output) if writes else None
    saved = f"; detections so far are in {args.save_json}" if args.save_json else ""
    interrupt_note(f"outputs written so far are complete{saved}")
    started = time.perf_counter()
    with tqdm(unit="file", desc="detect", disable=None, file=sys.stderr) as bar:

        def show(progress: Progress) -> None:
            bar.total = progress.total
            bar.update(progress.done - bar.n)
            bar.set_postfix_str(progress.current)
            if progress.result is not None:
                bar.write(_image_line(progress))

        sources = [_source(text) for text in args.sources]
        report = detect(args.model, sources, save_dir=save_dir, save_json=args.save_json, progress=show, save=save,
                        **options)  # fmt: skip
    _print_report(report, save_dir, time.perf_counter() - started)
    return 1 if report.failures else 0


def _image_line(progress: Progress) -> str:
    """``image 3/10 bus.jpg: 480x640, 2 person, 1 bus, 12.3 ms`` (or ``no detections``)."""
    result = progress.result
    counts = Counter(result.name(c) for c in result.class_ids)
    found = ", ".join(f"{n} {name}" for name, n in counts.most_common()) or "no detections"
    took = sum(result.speed.values())
    height, width = result.orig_shape
    return f"image {progress.done}/{progress.total} {result.path}: {height}x{width}, {found}, {took:.1f} ms"


def _print_report(report: DetectReport, save_dir: str | None, seconds: float) -> None:
    skipped = f", {report.skipped_frames} damaged frames skipped" if report.skipped_frames else ""
    frames = f" ({report.frames} frames{skipped})" if report.videos else ""
    print(f"{report.images} images and {report.videos} videos{frames} done in {seconds:.1f} s")
    if save_dir is not None and report.images + report.videos:
        print(f"annotated outputs saved to {save_dir}")
    if report.json_path is not None:
        print(f"detections written to {report.json_path}")
    for _, warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.failures:
        print(f"{len(report.failures)} inputs failed:", file=sys.stderr)
        for path, error in report.failures:
            print(f"  {path}: {error}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
