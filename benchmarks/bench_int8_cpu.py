"""INT8 vs fp32 throughput on the CPU with ONNX Runtime, for artifacts made by ``yolov6-build``.

For each model, builds the fp32 ONNX and the int8 Q/DQ ONNX (``target onnxruntime-cpu``: uint8 activations,
int8 per-channel weights) through :func:`yolov6_sdk.export.build.build` with an untrained network (speed does
not depend on the weights) and synthetic calibration images, then times both at each batch size. fp32 and
int8 alternate in short blocks, so load from other processes falls on both alike; medians are reported. Each
block starts with one untimed batch: with more than one thread, the worker threads of the session that ran
last keep spinning for a moment after its run, and would otherwise slow the first batch of the other one (a
deployment runs one session, so that cost is not part of either figure). ``--repeats`` makes several passes
over all cells with fresh sessions; the table gives the median over the passes and each pass's speed-up, since
a shared 2-core machine drifts by 10 % within minutes. The goal is int8 >= 1.6x fp32 images/s.

    python benchmarks/bench_int8_cpu.py --runs 20 --repeats 3   # yolov6n, yolov6s; 640; bs 1, 8; 1 and all threads
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from yolov6_sdk.export.build import build
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.machine import machine_info
from yolov6_sdk.training.datagen import write_calibration_images

HERE = Path(__file__).resolve().parent


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["yolov6n", "yolov6s"], help="zoo names")
    parser.add_argument("--imgsz", type=int, default=640, help="square input size (default 640)")
    parser.add_argument("--bs", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--runs", type=int, default=10, help="timed batches per precision and batch (default 10)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 0],
        help="intra-op thread counts to run (0: ONNX Runtime's default)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="passes over all cells, each with fresh sessions (default 1)"
    )
    parser.add_argument("--calib-size", type=int, default=32, help="synthetic calibration images (default 32)")
    parser.add_argument("--work", type=Path, help="folder for the built artifacts (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=HERE / "int8_cpu.md", help="markdown report to write")
    return parser.parse_args(argv)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _time_pair(
    paths: dict[str, Path], batch: int, imgsz: int, runs: int, threads: int, block: int = 4
) -> dict[str, list[float]]:
    """Milliseconds per batch of each artifact: ``runs`` batches each, in alternating blocks of up to ``block``
    timed batches, each block after one untimed batch that lets the other session's threads go idle."""
    sessions = {name: _session(path, threads) for name, path in paths.items()}
    images = np.random.default_rng(0).random((batch, 3, imgsz, imgsz), dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for done in range(0, runs, block):
        timed = min(block, runs - done)
        for name, session in sessions.items():
            session.run(None, {"images": images})
            for _ in range(timed):
                start = time.perf_counter()
                session.run(None, {"images": images})
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _build_pair(model: str, imgsz: int, calib: Path, calib_size: int, out: Path) -> dict[str, Path]:
    common = {"random_weights": True, "model": model, "imgsz": imgsz, "backend": "onnxruntime", "output": out}
    fp32 = build(precision="fp32", **common).artifact
    int8 = build(precision="int8", calib=calib, calib_size=calib_size, **common).artifact
    return {"fp32": fp32, "int8": int8}


def _report(rows: list[list[str]], info: dict[str, str], args: argparse.Namespace, argv: list[str]) -> str:
    command = " ".join(["python benchmarks/bench_int8_cpu.py", *argv])
    lines = [
        "# INT8 vs fp32 on the CPU (ONNX Runtime)",
        "",
        f"Command: `{command}`",
        "",
        "Untrained networks (speed does not depend on the weights), int8 = `yolov6-build --precision int8` "
        "(Q/DQ ONNX, uint8 activations, int8 per-channel weights, target onnxruntime-cpu). Model time only "
        f"(no pre/post-processing), {args.runs} batches per cell, timed in blocks of up to 4 that alternate with "
        "fp32, each block after one untimed batch (so the idle threads of one session do not slow the other), "
        f"median ms per batch; {args.repeats} pass(es) over all cells with fresh sessions, figures are medians over "
        "the passes and 'per pass' lists each pass's speed-up. Threads: 1, or ONNX Runtime's default (one per "
        "core). The load average above says how busy the CPU was when the run started; absolute times drift "
        "between passes by up to 10 %, the ratio is the figure to read.",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
        "| model | imgsz | batch | threads | fp32 ms | int8 ms | fp32 img/s | int8 img/s | int8 speed-up | per pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    return "\n".join(lines)


def _row(model: str, imgsz: int, batch: int, threads: int, medians: list[tuple[float, float]]) -> list[str]:
    """One table row from the (fp32 ms, int8 ms) medians of each repeat: medians over the repeats, and the
    speed-up of each repeat so the spread shows."""
    fp32, int8 = statistics.median(m[0] for m in medians), statistics.median(m[1] for m in medians)
    ratios = [f / i for f, i in medians]
    return [model, str(imgsz), str(batch), str(threads or "default"), f"{fp32:.1f}", f"{int8:.1f}",
            f"{batch * 1e3 / fp32:.1f}", f"{batch * 1e3 / int8:.1f}", f"{statistics.median(ratios):.2f}x",
            " / ".join(f"{r:.2f}" for r in ratios)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    info = machine_info()
    cells = list(itertools.product(args.models, args.threads, args.bs))
    medians: dict[tuple[str, int, int], list[tuple[float, float]]] = {cell: [] for cell in cells}
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        calib = Path(tmp) / "calib"
        write_calibration_images(calib, args.calib_size, seed=0)
        out = args.work or Path(tmp) / "engines"
        paths = {model: _build_pair(model, args.imgsz, calib, args.calib_size, out) for model in args.models}
        for repeat in range(args.repeats):  # whole passes, so each cell's repeats lie minutes apart
            for model, threads, batch in cells:
                times = _time_pair(paths[model], batch, args.imgsz, args.runs, threads)
                fp32, int8 = statistics.median(times["fp32"]), statistics.median(times["int8"])
                medians[model, threads, batch].append((fp32, int8))
                print(f"pass {repeat + 1}: {model} bs{batch} threads {threads or 'default'}: "
                      f"fp32 {fp32:.1f} ms, int8 {int8:.1f} ms, {fp32 / int8:.2f}x", flush=True)  # fmt: skip
    rows = [_row(model, args.imgsz, batch, threads, medians[model, threads, batch]) for model, threads, batch in cells]
    with atomic_path(args.out) as tmp_out:
        tmp_out.write_text(_report(rows, info, args, argv), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
