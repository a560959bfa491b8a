"""CPU latency side by side: this SDK (fp32 and INT8, square and rectangular) vs the official deploy path.

In one run on one machine, for each model (untrained seeded weights: speed does not depend on them):

* artifacts: ours = the ONNX export with dynamic height/width (``dynamic_hw=True``) and its INT8 Q/DQ build
  (``yolov6-build --onnx ... --precision int8``, calibrated at the square size on synthetic images); official =
  the fused model exported as the official deploy/ONNX script does, run in ONNX Runtime with default options
  (``benchmarks/official_deploy.py``).
* model only: the backend run on a letterboxed ``[B, 3, S, S]`` batch (latency p50 per batch, images/s).
* pre+post: the Detector's letterbox + decode/NMS + box mapping time per batch, file decode excluded, and its
  share of the model-only time (the goal: <= 5 % for INT8 at batch 1 and 8).
* end to end over a folder of 640x480 JPEGs (file in, boxes out; decode included): ours at batch 1 and B with
  ``rect=True`` (480x640 canvas) and ``rect=False`` (640x640), official one image at a time; speed-up vs
  official (the goal for INT8 yolov6n with rect: >= 2.8x).
* a stream of single frames (a 640x480 video): ours with the reader thread (prefetch 2) and without, at 1
  and all ONNX Runtime threads, official reading and running each frame in turn.

Cells alternate round-robin within each table (one measurement of each in turn, ``--repeats`` times), so load
from other processes falls on all alike; medians are reported. Run it on an idle machine:

    python benchmarks/bench_latency_cpu.py                       # yolov6n yolov6s, int8 fp32, bs 1 8 (~20 min)
    python benchmarks/bench_latency_cpu.py --tiny --out /tmp/latency.md   # a one-minute smoke run
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_deploy import OfficialDeployPipeline, export_official_onnx  # noqa: E402

from yolov6_sdk.export.build import build  # noqa: E402
from yolov6_sdk.export.onnx import ExportOptions, export_onnx  # noqa: E402
from yolov6_sdk.fileio import atomic_path  # noqa: E402
from yolov6_sdk.machine import machine_info  # noqa: E402
from yolov6_sdk.models import build_model, fuse  # noqa: E402
from yolov6_sdk.runtime.detector import Detector  # noqa: E402
from yolov6_sdk.training.datagen import make_image, write_calibration_images  # noqa: E402

HERE = Path(__file__).resolve().parent
PICTURE = (480, 640)  # h, w of the JPEGs and video frames


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--models", nargs="+", default=["yolov6n", "yolov6s"], help="zoo names (default n, s)")
    parser.add_argument("--precisions", nargs="+", choices=["int8", "fp32"], default=["int8", "fp32"])
    parser.add_argument("--bs", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--imgsz", type=int, default=640, help="model input side, multiple of 32 (default 640)")
    parser.add_argument("--images", type=int, default=32, help="640x480 JPEGs in the folder (default 32)")
    parser.add_argument("--frames", type=int, default=60, help="frames of the 640x480 video (default 60)")
    parser.add_argument("--runs", type=int, default=20, help="timed model-only runs per cell and repeat (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin passes over the cells (default 3)")
    parser.add_argument("--calib", type=int, default=32, help="synthetic INT8 calibration images (default 32)")
    parser.add_argument("--work", type=Path, help="folder for artifacts and pictures (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=HERE / "latency_cpu.md", help="markdown report")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--tiny", action="store_true", help="smoke run: yolov6n, 160 px, few images, 1 repeat")
    args = parser.parse_args(argv)
    if args.tiny:
        args.models, args.imgsz, args.images, args.frames, args.runs, args.repeats, args.calib = (
            ["yolov6n"], 160, 4, 6, 2, 1, 4)  # fmt: skip
    if args.imgsz % 32 or min(args.images, args.frames, args.runs, args.repeats, args.calib, *args.bs) < 1:
        parser.error("imgsz must be a multiple of 32; counts and batch sizes must be >= 1")
    return args


# ------------------------------------------------------------------------------------------------ inputs


def write_pictures(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        image = cv2.resize(make_image(rng, 400, 8)[0], PICTURE[::-1])
        paths.append(folder / f"picture_{i:03d}.jpg")
        cv2.imwrite(str(paths[-1]), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


def write_video(path: Path, pictures: list[Path], frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, PICTURE[::-1])
    for i in range(frames):
        writer.write(cv2.imread(str(pictures[i % len(pictures)])))
    writer.release()
    return path


def make_artifacts(args: argparse.Namespace, name: str, work: Path, calib: Path) -> dict[str, Path]:
    """``{"fp32": ..., "int8": ..., "official-b<B>": ...}`` ONNX files of one untrained seeded model."""
    torch.manual_seed(0)
    model = fuse(build_model(name).eval())
    size = (args.imgsz, args.imgsz)
    paths = {"fp32": export_onnx(model, work / f"{name}-dynamic.onnx", ExportOptions(size, dynamic_hw=True))}
    if "int8" in args.precisions:
        built = build(onnx=paths["fp32"], precision="int8", backend="onnxruntime", imgsz=size, calib=calib,
                      output=work / "engines")  # fmt: skip
        paths["int8"] = built.artifact
    for batch in sorted({1, *args.bs}):  # the official export has a static batch
        paths[f"official-b{batch}"] = export_official_onnx(model, work / f"{name}-official-b{batch}.onnx", args.imgsz,
                                                           batch)  # fmt: skip
    return paths


# ------------------------------------------------------------------------------------------------ timing


def timed_ms(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def round_robin(cells: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median of each cell's figure, the cells measured in turn ``repeats`` times."""
    samples: dict[str, list[float]] = {key: [] for key in cells}
    for _ in range(repeats):
        for key, measure in cells.items():
            samples[key].append(measure())
    return {key: statistics.median(values) for key, values in samples.items()}


@contextmanager
def detectors(paths: dict[str, Path], **options: Any) -> Iterator[dict[str, Detector]]:
    opened = {key: Detector(path, device="cpu", **options) for key, path in paths.items()}
    try:
        yield opened
    finally:
        for detector in opened.values():
            detector.close()


def model_and_prepost(args: argparse.Namespace, paths: dict[str, Path], pictures: list[Path]) -> list[dict]:
    """Model-only p50 per batch (ours and official) and the Detector's pre+post per batch (decode excluded)."""
    images = [cv2.imread(str(p)) for p in pictures]
    rows = []
    for batch in args.bs:
        rows += _model_rows(args, paths, list(itertools.islice(itertools.cycle(images), batch)))
    return rows


def _model_rows(args: argparse.Namespace, paths: dict[str, Path], chunk: list[np.ndarray]) -> list[dict]:
    batch = len(chunk)
    official = OfficialDeployPipeline(paths[f"official-b{batch}"], args.imgsz)
    tensor = np.concatenate([official.preprocess(image)[0] for image in chunk])
    prepost: dict[str, list[float]] = {precision: [] for precision in args.precisions}

    def run_official() -> float:
        return statistics.median(
            timed_ms(lambda: official.session.run(None, {"images": tensor})) for _ in range(args.runs)
        )

    def run_ours(detector: Detector, precision: str) -> float:
        model = []
        for _ in range(args.runs):
            speeds = [result.speed for result in detector.predict_batch(chunk)]  # ms per image
            model.append(sum(speed["inference"] for speed in speeds))
            prepost[precision].append(sum(speed["preprocess"] + speed["postprocess"] for speed in speeds))
        return statistics.median(model)

    with detectors({p: paths[p] for p in args.precisions}, batch=batch, rect=False) as ours:
        for detector in ours.values():
            detector.predict_batch(chunk)  # warm-up
        cells = {"official": run_official, **{p: functools.partial(run_ours, d, p) for p, d in ours.items()}}
        medians = round_robin(cells, args.repeats)
    rows = []
    for precision in args.precisions:
        share = statistics.median(prepost[precision])
        rows.append({"batch": batch, "artifact": precision, "model_ms": medians[precision],
                     "images_s": batch * 1e3 / medians[precision], "prepost_ms": share,
                     "prepost_share": share / medians[precision],
                     "vs_official": medians["official"] / medians[precision]})  # fmt: skip
    rows.append({"batch": batch, "artifact": "official", "model_ms": medians["official"],
                 "images_s": batch * 1e3 / medians["official"]})  # fmt: skip
    return rows


def folder_end_to_end(args: argparse.Namespace, paths: dict[str, Path], folder: Path, count: int) -> list[dict]:
    """Images/s from JPEG files to boxes over the folder: ours (rect and square, each batch size) vs official."""
    official = OfficialDeployPipeline(paths["official-b1"], args.imgsz)
    files = sorted(folder.glob("*.jpg"))
    cells: dict[str, Callable[[], float]] = {"official b1": lambda: timed_ms(lambda: [official(f) for f in files])}
    opened = []
    for precision, batch, rect in itertools.product(args.precisions, args.bs, (True, False)):
        detector = Detector(paths[precision], device="cpu", batch=batch, rect=rect)
        detector(folder)  # warm-up
        opened.append(detector)
        cells[f"{precision} b{batch} {'rect' if rect else 'square'}"] = lambda d=detector: timed_ms(lambda: d(folder))
    try:
        official(files[0])
        medians = round_robin(cells, args.repeats)
    finally:
        for detector in opened:
            detector.close()
    base = count * 1e3 / medians["official b1"]
    return [{"cell": key, "images_s": count * 1e3 / ms, "ms_per_image": ms / count,
             "vs_official": count * 1e3 / ms / base} for key, ms in medians.items()]  # fmt: skip


def stream(args: argparse.Namespace, paths: dict[str, Path], video: Path) -> list[dict]:
    """Frames/s over a 640x480 video, one frame at a time: reader thread on/off x ONNX Runtime threads."""
    official = OfficialDeployPipeline(paths["official-b1"], args.imgsz)

    def official_run() -> float:
        def frames() -> None:
            capture = cv2.VideoCapture(str(video))
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                tensor, ratio, pad = official.preprocess(frame)
                official.postprocess(official.session.run(None, {"images": tensor})[0][0], ratio, pad, frame.shape[:2])
            capture.release()

        return timed_ms(frames)

    cells: dict[str, Callable[[], float]] = {"official": official_run}
    opened = []
    precision = args.precisions[0]
    for threads, depth in itertools.product((1, None), (2, 0)):
        detector = Detector(paths[precision], device="cpu", threads=threads)
        detector.warmup(2)
        opened.append(detector)
        label = f"{precision} threads={threads or 'all'} prefetch={depth}"
        cells[label] = lambda d=detector, depth=depth: timed_ms(lambda: list(d.stream(video, prefetch_depth=depth)))
    try:
        medians = round_robin(cells, args.repeats)
    finally:
        for detector in opened:
            detector.close()
    return [{"cell": key, "frames_s": args.frames * 1e3 / ms, "ms_per_frame": ms / args.frames} for key, ms in
            medians.items()]  # fmt: skip


# ------------------------------------------------------------------------------------------------ report


def table(rows: list[dict], columns: list[str]) -> list[str]:
    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) and abs(value) < 1 else (
            f"{value:.1f}" if isinstance(value, float) else str(value))  # fmt: skip

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]


def report(args: argparse.Namespace, command: str, results: dict[str, dict[str, list[dict]]]) -> str:
    lines = ["# CPU latency: yolov6-sdk vs the official deploy path", "", f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in machine_info().items()]
    lines += ["", f"Untrained seeded weights (timing only), {args.imgsz} px model scale, {PICTURE[1]}x{PICTURE[0]} "
              f"pictures; medians of {args.repeats} round-robin passes.", ""]  # fmt: skip
    for name, parts in results.items():
        lines += [f"## {name}", "", "Model only (ms per batch) and pre+post (file decode excluded):", ""]
        lines += table(parts["model"], ["batch", "artifact", "model_ms", "images_s", "prepost_ms", "prepost_share",
                                        "vs_official"])  # fmt: skip
        lines += ["", f"End to end over {args.images} JPEG files (decode included):", ""]
        lines += table(parts["folder"], ["cell", "images_s", "ms_per_image", "vs_official"])
        lines += ["", f"Stream of {args.frames} single frames (640x480 video):", ""]
        lines += table(parts["stream"], ["cell", "frames_s", "ms_per_frame"]) + [""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/bench_latency_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="latency-") as scratch:
        work = args.work or Path(scratch)
        pictures = write_pictures(work / "pictures", args.images)
        video = write_video(work / "clip.mp4", pictures, args.frames)
        calib = work / "calib"
        write_calibration_images(calib, args.calib)
        results = {}
        for name in args.models:
            paths = make_artifacts(args, name, work, calib)
            results[name] = {
                "model": model_and_prepost(args, paths, pictures),
                "folder": folder_end_to_end(args, paths, work / "pictures", args.images),
                "stream": stream(args, paths, video),
            }
            print(json.dumps(results[name], indent=1), flush=True)
    text = report(args, command.strip(), results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"machine": machine_info(), "results": results}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
