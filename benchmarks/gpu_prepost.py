"""Time pre- and post-processing on the CPU (numpy) and on a torch device (CUDA), side by side.

Pre-processing: B 1280x720 BGR frames letterboxed into the float32 [B, 3, 640, 640] input (numpy into a reused
buffer; torch on the device). Post-processing: decode + NMS of a synthetic raw output [B, 8400, 85] holding
``--candidates`` boxes per image above the threshold (clustered, so NMS has work), on each side. Each figure is
the median of ``--iters`` timed runs (ms per batch, device synchronised). The device detections are checked
against the numpy ones (same count per image). Writes a markdown table to ``--out``.

    python benchmarks/gpu_prepost.py --device cuda --out gpu/prepost.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from yolov6_sdk.artifact.preprocess import InputBuffer, preprocess_batch, preprocess_batch_torch
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.runtime.postprocess import postprocess_raw, postprocess_raw_torch

FRAME_SHAPE = (720, 1280)
ANCHORS_640 = 8400
NUM_CLASSES = 80


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device of the device-side runs (default cuda)")
    parser.add_argument("--bs", type=int, nargs="+", default=[1, 32], help="batch sizes (default 1 32)")
    parser.add_argument("--imgsz", type=int, default=640, help="square model input, multiple of 32 (default 640)")
    parser.add_argument("--candidates", type=int, default=300, help="boxes above conf per image (default 300)")
    parser.add_argument("--iters", type=int, default=30, help="timed runs per figure (default 30)")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return parser.parse_args(argv)


def synthetic_raw(batch: int, anchors: int, candidates: int, imgsz: int, seed: int = 0) -> np.ndarray:
    """``[B, anchors, 5 + 80]`` float32 raw outputs: ``candidates`` clustered boxes per image score above 0.25."""
    rng = np.random.default_rng(seed)
    raw = np.zeros((batch, anchors, 5 + NUM_CLASSES), dtype=np.float32)
    raw[..., 4] = 1.0
    raw[..., 5:] = rng.uniform(0, 0.2, (batch, anchors, NUM_CLASSES))
    centres = rng.uniform(40, imgsz - 40, (batch, max(candidates // 10, 1), 2))
    for b in range(batch):
        rows = rng.choice(anchors, candidates, replace=False)
        cluster = centres[b, rng.integers(0, len(centres[b]), candidates)]
        raw[b, rows, :2] = cluster + rng.normal(0, 4, (candidates, 2))
        raw[b, rows, 2:4] = rng.uniform(20, 80, (candidates, 2))
        raw[b, rows, 5 + rng.integers(0, 4, candidates)] = rng.uniform(0.3, 0.95, candidates)
    return raw


def median_ms(run: Callable[[], object], iters: int, sync: Callable[[], None]) -> float:
    run()
    sync()  # warm-up (allocations, kernel loading)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def measure(args: argparse.Namespace, batch: int) -> list[str]:
    import torch

    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(batch)
    frames = [rng.integers(0, 256, (*FRAME_SHAPE, 3), dtype=np.uint8) for _ in range(batch)]
    anchors = ANCHORS_640 * args.imgsz**2 // 640**2
    raw = synthetic_raw(batch, anchors, min(args.candidates, anchors), args.imgsz)
    raw_device = torch.from_numpy(raw).to(device)
    buffer = InputBuffer()
    cpu_pre = median_ms(lambda: preprocess_batch(frames, args.imgsz, buffer=buffer), args.iters, lambda: None)
    cpu_post = median_ms(lambda: postprocess_raw(raw), args.iters, lambda: None)
    dev_pre = median_ms(lambda: preprocess_batch_torch(frames, args.imgsz, device), args.iters, sync)
    dev_post = median_ms(lambda: postprocess_raw_torch(raw_device), args.iters, sync)
    same = [len(a.scores) for a in postprocess_raw(raw)] == [len(b.scores) for b in postprocess_raw_torch(raw_device)]
    figures = [cpu_pre, cpu_post, cpu_pre + cpu_post, dev_pre, dev_post, dev_pre + dev_post]
    return [str(batch), *(f"{value:.2f}" for value in figures), "yes" if same else "NO"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.imgsz <= 0 or args.imgsz % 32 or args.iters < 1 or any(b < 1 for b in args.bs):
        print("imgsz must be a positive multiple of 32, iters and batch sizes >= 1", file=sys.stderr)
        return 2
    rows = [measure(args, batch) for batch in args.bs]
    header = ["batch", "CPU pre ms", "CPU post ms", "CPU pre+post ms", f"{args.device} pre ms",
              f"{args.device} post ms", f"{args.device} pre+post ms", "same detections"]  # fmt: skip
    lines = [
        f"# Pre/post-processing: numpy CPU vs torch on {args.device}",
        "",
        f"Command: `python benchmarks/gpu_prepost.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"{FRAME_SHAPE[1]}x{FRAME_SHAPE[0]} BGR frames -> [B, 3, {args.imgsz}, {args.imgsz}]; synthetic raw output "
        f"with {args.candidates} boxes above conf 0.25 per image; median of {args.iters} runs, ms per batch.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
