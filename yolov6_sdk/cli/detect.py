"""``yolov6-detect``: run a model on images, folders, globs and videos; save annotated copies and JSON.

Bad inputs (missing, empty, corrupt) are reported one line each at the end while the others go on.
Exit status: 0 when at least one input succeeded, 1 when all failed, 2 for a usage error (bad option,
unusable model).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.spec import BACKENDS

DEFAULT_SAVE_DIR = "runs/detect"


@dataclass
class _Run:
    """What a run has done so far."""

    save_dir: Path
    save: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    images: int = 0
    videos: int = 0
    frames: int = 0
    used_names: set[str] = field(default_factory=set)

    def output_path(self, source: Path, suffix: str | None = None) -> Path:
        """A file under ``save_dir`` named after ``source``, made unique when two inputs share a name."""
        stem, ext = source.stem, suffix or source.suffix
        name, n = f"{stem}{ext}", 1
        while name in self.used_names:
            name, n = f"{stem}_{n}{ext}", n + 1
        self.used_names.add(name)
        return self.save_dir / name


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


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[int, int] | None:
    for name in ("conf", "iou"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name} must be in 0..1, got {getattr(args, name)}")
    if args.max_det < 1:
        parser.error(f"--max-det must be >= 1, got {args.max_det}")
    if args.imgsz is None:
        return None
    if len(args.imgsz) > 2 or any(v <= 0 or v % 32 for v in args.imgsz):
        parser.error(f"--imgsz takes one or two positive multiples of 32, got {args.imgsz}")
    return args.imgsz[0], args.imgsz[-1]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    imgsz = _check_args(parser, args)

    from tqdm import tqdm

    from yolov6_sdk.errors import YOLOv6Error
    from yolov6_sdk.runtime.detector import Detector

    try:
        detector = Detector(
            args.model,
            device=args.device,
            backend=args.backend,
            conf=args.conf,
            iou=args.iou,
            max_det=args.max_det,
            imgsz=imgsz,
            classes=args.classes,
        )
    except YOLOv6Error as exc:
        print(f"yolov6-detect: error: {exc}", file=sys.stderr)
        return 2
    run = _Run(save_dir=Path(args.save_dir), save=not args.no_save)
    started = time.perf_counter()
    try:
        with detector:
            files = _collect(args.sources, run)
            with tqdm(total=len(files), unit="file", desc="detect", disable=None) as bar:
                _process(detector, files, run, bar)
    except KeyboardInterrupt:
        print("yolov6-detect: interrupted; outputs written so far are complete", file=sys.stderr)
        return 130
    _report(run, args, detector, time.perf_counter() - started)
    return 0 if run.images + run.videos else 1


def _collect(sources: list[str], run: _Run) -> list[Path]:
    from yolov6_sdk.errors import YOLOv6Error
    from yolov6_sdk.runtime.source import media_files

    files: list[Path] = []
    for source in sources:
        try:
            files.extend(media_files(source))
        except YOLOv6Error as exc:
            run.failures.append((source, str(exc)))
    return files


def _process(detector: Any, files: list[Path], run: _Run, bar: Any) -> None:
    """Run images in batches the detector serves and videos frame by frame, recording failures."""
    from yolov6_sdk.artifact.images import is_video

    pending: list[Path] = []
    for path in files:
        if is_video(path):
            _video(detector, path, run, bar)
            bar.update(1)
            continue
        pending.append(path)
        if len(pending) == detector.batch_size:
            _images(detector, pending, run, bar)
            pending = []
    if pending:
        _images(detector, pending, run, bar)


def _images(detector: Any, paths: list[Path], run: _Run, bar: Any) -> None:
    from yolov6_sdk.artifact.images import read_image
    from yolov6_sdk.errors import YOLOv6Error

    loaded: list[tuple[Path, Any]] = []
    for path in paths:
        try:
            loaded.append((path, read_image(path)))
        except YOLOv6Error as exc:
            run.failures.append((str(path), str(exc)))
            bar.update(1)
    if not loaded:
        return
    results = detector.predict_batch([image for _, image in loaded], paths=[str(path) for path, _ in loaded])
    for (path, _), result in zip(loaded, results, strict=True):
        try:
            if run.save:
                result.save(run.output_path(path))
        except YOLOv6Error as exc:
            run.failures.append((str(path), str(exc)))
        else:
            run.images += 1
            run.records.append(result.to_dict())
        bar.update(1)


def _video(detector: Any, path: Path, run: _Run, bar: Any) -> None:
    from yolov6_sdk.errors import YOLOv6Error

    records: list[dict[str, Any]] = []
    try:
        with _video_sink(run, path) as write:
            for index, result in enumerate(detector.stream(path)):
                write(result)
                records.append({**result.to_dict(), "frame": index})
                bar.set_postfix_str(f"{path.name} frame {index + 1}")
    except YOLOv6Error as exc:
        run.failures.append((str(path), str(exc)))
        return
    run.videos += 1
    run.frames += len(records)
    run.records.extend(records)


@contextlib.contextmanager
def _video_sink(run: _Run, path: Path) -> Iterator[Any]:
    """A ``write(result)`` callable drawing frames into ``<save_dir>/<stem>.mp4`` (a no-op with --no-save)."""
    if not run.save:
        yield lambda result: None
        return
    from yolov6_sdk.runtime.source import video_fps, video_writer

    fps = video_fps(path)
    output = run.output_path(path, ".mp4")
    with contextlib.ExitStack() as stack:
        writers: list[Any] = []

        def write(result: Any) -> None:
            if not writers:
                height, width = result.orig_shape
                writers.append(stack.enter_context(video_writer(output, fps, (width, height))))
            writers[0].write(result.draw())

        yield write


def _report(run: _Run, args: argparse.Namespace, detector: Any, seconds: float) -> None:
    if args.save_json:
        from yolov6_sdk.fileio import atomic_path

        payload = {
            "model": str(args.model),
            "names": detector.names,
            "results": run.records,
            "errors": [{"path": path, "error": error} for path, error in run.failures],
        }
        with atomic_path(args.save_json) as tmp:
            tmp.write_text(json.dumps(payload, indent=1))
    frames = f" ({run.frames} frames)" if run.videos else ""
    print(f"{run.images} images and {run.videos} videos{frames} done in {seconds:.1f} s")
    if run.save and run.images + run.videos:
        print(f"annotated outputs saved to {run.save_dir}")
    if args.save_json:
        print(f"detections written to {args.save_json}")
    if run.failures:
        print(f"{len(run.failures)} inputs failed:", file=sys.stderr)
        for path, error in run.failures:
            print(f"  {path}: {error}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
