"""CPU runtime comparison: ONNX Runtime fp32 vs torch eager (unfused and fused), plus pre/post-processing cost.

Times one model at one input size, batch 1, on this machine. The three runtimes are timed round-robin (one run
of each in turn) so that load from other processes falls on all of them alike; medians are reported. Pre- and
post-processing are timed inside the Detector (letterbox, NMS, mapping boxes back) on a generated photo-like
image and set against the ONNX Runtime model time.

    python benchmarks/bench_runtime_cpu.py            # yolov6n, 640, 20 runs, writes benchmarks/runtime_cpu.md
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.machine import cpu_model
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.backends.onnxruntime import OnnxRuntimeBackend
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import make_image

HERE = Path(__file__).resolve().parent


def _time_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov6n", help="zoo name (default yolov6n)")
    parser.add_argument("--imgsz", type=int, default=640, help="square input size (default 640)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per runtime (default 20, at least 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per runtime first (default 3)")
    parser.add_argument("--out", type=Path, default=HERE / "runtime_cpu.md", help="markdown report to write")
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error(f"--runs must be at least 20, got {args.runs}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.manual_seed(0)
    # default initialisation: predictors are zero, every score is 0.01, so post-processing sees a realistic
    # (empty) candidate set instead of the thousands a randomised head produces
    unfused = build_model(args.model, 80).eval()
    fused = fuse(copy.deepcopy(unfused))
    image = make_image(np.random.default_rng(0), (480, 640), 12)[0]
    batch = torch.from_numpy(np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), dtype=np.float32))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(unfused, Path(tmp) / f"{args.model}.onnx", ExportOptions(imgsz=(args.imgsz,) * 2))
        session = OnnxRuntimeBackend(onnx_path, device="cpu")
        detector = Detector(onnx_path, device="cpu")
        feed = batch.numpy()
        runtimes: dict[str, Callable[[], object]] = {
            "ONNX Runtime fp32": lambda: session.infer(feed),
            "torch eager, unfused": lambda: unfused(batch),
            "torch eager, fused": lambda: fused(batch),
        }
        times: dict[str, list[float]] = {name: [] for name in runtimes}
        speeds: list[dict[str, float]] = []
        with torch.inference_mode():
            for fn in runtimes.values():
                for _ in range(args.warmup):
                    fn()
            detector.warmup(args.warmup)
            for i in range(args.runs):
                for name, fn in runtimes.items():
                    times[name].append(_time_ms(fn))
                speeds.append(detector.predict_batch([image])[0].speed)
                print(f"run {i + 1}/{args.runs}", file=sys.stderr, end="\r")
        detections = len(detector.predict_batch([image])[0])
        detector.close()
    load_after = os.getloadavg()
    report = _report(args, times, speeds, image.shape[:2], detections, (load_before, load_after))
    print(report)
    with atomic_path(args.out) as tmp_out:
        tmp_out.write_text(report)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


def _report(
    args: argparse.Namespace,
    times: dict[str, list[float]],
    speeds: list[dict[str, float]],
    image_shape: tuple[int, int],
    detections: int,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline, baseline_best = medians["torch eager, unfused"], min(times["torch eager, unfused"])
    rows = [
        f"| {name} | {median:.1f} | {min(times[name]):.1f} | {baseline / median:.2f}x | "
        f"{baseline_best / min(times[name]):.2f}x |"
        for name, median in medians.items()
    ]
    pre = statistics.median(s["preprocess"] for s in speeds)
    post = statistics.median(s["postprocess"] for s in speeds)
    model = statistics.median(s["inference"] for s in speeds)
    command = "python benchmarks/bench_runtime_cpu.py" + "".join(
        f" --{flag} {value}"
        for flag, value, default in (("model", args.model, "yolov6n"), ("imgsz", args.imgsz, 640))
        if value != default
    )
    lines = [
        f"# CPU runtimes: {args.model} at {args.imgsz}x{args.imgsz}, batch 1",
        "",
        f"Command: `{command}` ({args.runs} timed runs per runtime after {args.warmup} warm-up runs, round-robin).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {ort.__version__} (default threads).",
        f"The CPUs were shared with other work: load average {load[0][0]:.1f} before and {load[1][0]:.1f} after "
        f"the runs on {os.cpu_count()} CPUs, so absolute times are noisy. Runs are interleaved, but torch's "
        f"intra-op threads suffer more from oversubscribed cores than ONNX Runtime's, so the ratio of best "
        f"times is the conservative figure.",
        "",
        "| runtime | median (ms) | best (ms) | speed-up vs torch unfused (medians) | (best times) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Pre- and post-processing in `Detector` (ONNX Runtime, a generated {image_shape[1]}x{image_shape[0]} image, "
        f"{detections} detections at conf 0.25 with the default-initialised head), medians per image:",
        "",
        "| stage | median (ms) | share of model time |",
        "|---|---|---|",
        f"| preprocess (letterbox, to float) | {pre:.2f} | {pre / model:.1%} |",
        f"| postprocess (decode, NMS, map back) | {post:.2f} | {post / model:.1%} |",
        f"| pre + post | {pre + post:.2f} | {(pre + post) / model:.1%} |",
        f"| model (ONNX Runtime inference) | {model:.1f} | 100% |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
