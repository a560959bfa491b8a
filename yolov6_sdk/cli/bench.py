"""``yolov6-bench``: time models or artifacts per backend, precision and batch size; print one table.

Example: ``yolov6-bench --bs 1 32 --models yolov6n yolov6s --backends torch onnxruntime --imgsz 640 --json out.json``
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from yolov6_sdk.artifact.spec import BACKENDS, PRECISIONS
from yolov6_sdk.errors import YOLOv6Error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolov6-bench",
        description="Benchmark YOLOv6 models or artifacts: model-only and end-to-end latency, FPS, pre+post time.",
    )
    parser.add_argument("artifacts", nargs="*", type=Path, help=".pt/.onnx/.engine files (instead of --models)")
    parser.add_argument("--bs", type=int, nargs="+", default=[1, 32], help="batch sizes (default 1 32)")
    parser.add_argument("--models", nargs="+", default=None, help="zoo models to build and time (default yolov6n)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS), dest="precisions")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640], help="H [W], multiples of 32 (default 640)")
    parser.add_argument("--iters", type=int, default=None, help="timed runs (default: adaptive, 5..200 or ~10 s)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up runs (default: adaptive, 1..10 or ~3 s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the bench's own folder for the checkpoints and artifacts it builds and reuses "
        "(default $XDG_CACHE_HOME or ~/.cache, then yolov6-sdk/bench); given artifact files are only read",
    )
    parser.add_argument("--calib", type=Path, default=None, help="int8 calibration images (default calib/)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows (and machine) as JSON")
    parser.add_argument("--md", type=Path, default=None, help="write the table as markdown")
    parser.add_argument("--cuda-graph", action="store_true", help="replay CUDA graphs (torch/TensorRT on CUDA)")
    parser.add_argument("--note", action="append", default=[], help="a note to print above the table (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if len(args.imgsz) > 2:
        parser.error(f"--imgsz takes one or two values, got {args.imgsz}")
    if args.artifacts and args.models:
        parser.error("give either --models or artifact files, not both")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from tqdm import tqdm

    from yolov6_sdk.bench import BenchOptions, BenchRow, Job, plan_jobs, run_benchmark, to_markdown

    try:
        options = BenchOptions(
            batch_sizes=tuple(args.bs),
            models=tuple(args.models or ("yolov6n",)),
            artifacts=tuple(args.artifacts),
            backends=tuple(args.backends),
            precisions=tuple(args.precisions),
            imgsz=(args.imgsz[0], args.imgsz[-1]),
            iters=args.iters,
            warmup=args.warmup,
            device=args.device,
            cache=args.cache,
            calib=args.calib,
            cuda_graph=args.cuda_graph,
        )
        jobs = plan_jobs(options)
    except YOLOv6Error as exc:
        parser.error(str(exc))
    with tqdm(total=len(jobs), desc="yolov6-bench", unit="run", file=sys.stderr) as bar:

        def advance(job: Job, row: BenchRow) -> None:
            bar.set_postfix_str(f"{job.model} {job.backend} {job.precision} bs{job.batch}: {row.status}")
            bar.update(1)

        report = run_benchmark(options, tuple(args.note), advance)
    command = shlex.join(["yolov6-bench", *(argv if argv is not None else sys.argv[1:])])
    text = to_markdown(report, command=command)
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text, encoding="utf-8")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, **report.to_dict()}, indent=2) + "\n", encoding="utf-8")
    return 0 if all(row.status != "failed" for row in report.rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
