"""Time pre- and post-processing on the CPU (numpy) and on a torch device (CUDA), side by side.

Each side starts and ends where the pipeline does, so the figures compare like with like:

* pre-processing, from B 1280x720 uint8 BGR frames on the host to the float32 [B, 3, 640, 640] input on the device:
  CPU = numpy letterbox into a reused buffer + upload of that float batch through a pinned buffer (157 MB at
  batch 32, as the TensorRT backend stages it); device = upload of the uint8 frames + letterbox there.
* post-processing, from the raw output [B, 8400, 85] on the device (a synthetic one holding ``--candidates``
  clustered boxes per image above the threshold, so NMS has work) to detections on the host: CPU = download of
  the raw output + numpy decode and NMS; device = decode and NMS there + download of the detections.

Each figure is the median of ``--iters`` timed runs after ``--warmup`` (>= 3) untimed ones (ms per batch, device
synchronised). The device detections are checked against the numpy ones (same count per image). Writes a
markdown table to ``--out``.

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
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before each figure, >= 3 (default 3)")
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


def median_ms(run: Callable[[], object], iters: int, sync: Callable[[], None], warmup: int = 3) -> float:
    """Median wall time of ``run()`` + ``sync()`` over ``iters`` runs after ``warmup`` untimed ones, ms."""
    for _ in range(warmup):  # allocations, kernel loading, cuDNN/cuBLAS set-up, pinned buffer growth
        run()
        sync()
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
    pinned = torch.empty((batch, 3, args.imgsz, args.imgsz), dtype=torch.float32, pin_memory=device.type == "cuda")

    def cpu_preprocess() -> object:
        host, _ = preprocess_batch(frames, args.imgsz, buffer=buffer)
        pinned.numpy()[...] = host
        return pinned.to(device, non_blocking=True)

    def device_postprocess() -> list[object]:
        return [[t.cpu() for t in found] for found in postprocess_raw_torch(raw_device)]

    timed = {"iters": args.iters, "warmup": args.warmup}
    cpu_pre = median_ms(cpu_preprocess, sync=sync, **timed)
    cpu_post = median_ms(lambda: postprocess_raw(raw_device.cpu().numpy()), sync=sync, **timed)
    dev_pre = median_ms(lambda: preprocess_batch_torch(frames, args.imgsz, device), sync=sync, **timed)
    dev_post = median_ms(device_postprocess, sync=sync, **timed)
    same = [len(a.scores) for a in postprocess_raw(raw)] == [len(b.scores) for b in postprocess_raw_torch(raw_device)]
    figures = [cpu_pre, cpu_post, cpu_pre + cpu_post, dev_pre, dev_post, dev_pre + dev_post]
    return [str(batch), *(f"{value:.2f}" for value in figures), "yes" if same else "NO"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.imgsz <= 0 or args.imgsz % 32 or args.iters < 1 or args.warmup < 3 or any(b < 1 for b in args.bs):
        print("imgsz must be a positive multiple of 32, iters and batch sizes >= 1, warmup >= 3", file=sys.stderr)
        return 2
    rows = [measure(args, batch) for batch in args.bs]
    header = ["batch", "CPU pre ms", "CPU post ms", "CPU pre+post ms", f"{args.device} pre ms",
              f"{args.device} post ms", f"{args.device} pre+post ms", "same detections"]  # fmt: skip
    lines = [
        f"# Pre/post-processing: numpy CPU vs torch on {args.device}",
        "",
        f"Command: `python benchmarks/gpu_prepost.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"{FRAME_SHAPE[1]}x{FRAME_SHAPE[0]} BGR frames on the host -> [B, 3, {args.imgsz}, {args.imgsz}] float32 on "
        f"{args.device} (CPU pre includes the pinned upload of the float batch); synthetic raw output on "
        f"{args.device} with {args.candidates} boxes above conf 0.25 per image -> detections on the host (CPU post "
        f"includes the download of the raw output); median of {args.iters} runs after {args.warmup} warm-ups, ms "
        "per batch.",
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
