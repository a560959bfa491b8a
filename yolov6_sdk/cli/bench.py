"""``yolov6-bench``: time models or artifacts per backend, precision and batch size; print one table.

Example: ``yolov6-bench --batch 1 32 --models yolov6n yolov6s --backends torch onnxruntime --csv out.csv``

The artifact files and the ``--json`` / ``--csv`` / ``--md`` files are checked before any timing; a given artifact
runs at its own input size (a note above the table says which), ``--imgsz`` sizes the ``--models`` builds.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from yolov6_sdk.artifact.spec import ARTIFACT_SUFFIXES, BACKENDS, PRECISIONS
from yolov6_sdk.cli.options import (
    CommandParser,
    ListThenPositionals,
    add_device,
    did_you_mean,
    parse,
    parse_imgsz_option,
)
from yolov6_sdk.cli.outputs import check_outputs
from yolov6_sdk.cli.signals import command
from yolov6_sdk.errors import YOLOv6Error


def _model_name(text: str) -> str:
    """A zoo name for ``--models``; an artifact file name is refused (it belongs to the positionals), and so is
    a name the zoo does not hold (with the closest one)."""
    from yolov6_sdk.models.zoo import ZOO

    if Path(text).suffix.lower() in ARTIFACT_SUFFIXES:
        raise ValueError(f"{text!r} is an artifact file, not a model name")
    if text not in ZOO:
        raise ValueError(f"unknown model {text!r}{did_you_mean(text, list(ZOO))}; valid names: {', '.join(ZOO)}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="yolov6-bench",
        description="Benchmark YOLOv6 models or artifacts: model-only and end-to-end latency, FPS, pre+post time. "
        "Options may come before or after the artifact files.",
    )
    parser.add_argument("artifacts", nargs="*", type=Path, metavar="ARTIFACT",
                        help=".pt/.onnx/.engine files to time (instead of --models)")  # fmt: skip
    parser.add_argument("--batch", "--bs", action=ListThenPositionals, convert=int, default=[1, 32], metavar="N",
                        help="batch sizes (default 1 32)")  # fmt: skip
    parser.add_argument("--models", action=ListThenPositionals, convert=_model_name, default=None, metavar="NAME",
                        help="zoo models to build and time, e.g. yolov6n yolov6s (default yolov6n)")  # fmt: skip
    parser.add_argument("--backends", action=ListThenPositionals, valid=BACKENDS, default=list(BACKENDS),
                        help="runtimes to time --models on (default: all)")  # fmt: skip
    parser.add_argument("--precision", action=ListThenPositionals, valid=PRECISIONS, default=list(PRECISIONS),
                        dest="precisions", help="precisions to build --models in (default: all)")  # fmt: skip
    parser.add_argument("--imgsz", action=ListThenPositionals, convert=int, default=None, metavar="PX",
                        help="input size H [W] of --models builds, multiples of 32 (default each model's: 640, P6 1280, "
                        "Lite 320); artifact files run at their own size")  # fmt: skip
    parser.add_argument("--iters", type=int, default=None, help="timed runs (default: adaptive, 5..200 or ~10 s)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up runs (default: adaptive, 1..10 or ~3 s)")
    add_device(parser)
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="the bench's own folder for the checkpoints and artifacts it builds and reuses "
        "(default $XDG_CACHE_HOME or ~/.cache, then yolov6-sdk/bench); given artifact files are only read",
    )
    parser.add_argument("--calib", type=Path, default=None, metavar="DIR",
                        help="int8 calibration images (default calib/)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="write the rows (and machine) as JSON")  # fmt: skip
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE", help="write the rows as CSV")
    parser.add_argument("--md", type=Path, default=None, metavar="FILE", help="write the table as markdown")
    parser.add_argument("--cuda-graph", action="store_true", help="replay CUDA graphs (torch/TensorRT on CUDA)")
    parser.add_argument("--note", action="append", default=[], help="a note to print above the table (repeatable)")
    return parser


@command("yolov6-bench")
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parse(parser, argv, positionals="artifacts")
    args.artifacts = [Path(a) for a in args.artifacts]
    imgsz = parse_imgsz_option(parser, args.imgsz)
    if args.artifacts and args.models:
        parser.error("give either --models or artifact files, not both")
    missing = [str(a) for a in args.artifacts if not a.is_file()]
    if missing:
        parser.error(f"artifact file {missing[0]!r} does not exist; build one with yolov6-build or check the path")
    check_outputs(folders={"--cache": args.cache}, files={"--json": args.json, "--csv": args.csv, "--md": args.md})
    if args.artifacts and args.imgsz:
        print("yolov6-bench: note: --imgsz sizes --models builds; artifact files run at their own input size",
              file=sys.stderr)  # fmt: skip
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from tqdm import tqdm

    from yolov6_sdk.bench import BenchOptions, BenchRow, Job, bench_jobs, run_benchmark, to_csv, to_markdown
    from yolov6_sdk.fileio import write_text

    try:
        options = BenchOptions(
            batch_sizes=tuple(args.batch),
            models=tuple(args.models or ("yolov6n",)),
            artifacts=tuple(args.artifacts),
            backends=tuple(args.backends),
            precisions=tuple(args.precisions),
            imgsz=(imgsz, imgsz) if isinstance(imgsz, int) else imgsz,  # None: each model's own size
            iters=args.iters,
            warmup=args.warmup,
            device=args.device,
            cache=args.cache,
            calib=args.calib,
            cuda_graph=args.cuda_graph,
        )
        jobs = bench_jobs(options)
    except YOLOv6Error as exc:
        parser.error(str(exc))
    with tqdm(total=len(jobs), desc="yolov6-bench", unit="run", file=sys.stderr) as bar:

        def advance(job: Job, row: BenchRow) -> None:
            bar.set_postfix_str(f"{job.model} {job.backend} {job.precision} bs{job.batch}: {row.status}")
            bar.update(1)

        report = run_benchmark(options, tuple(args.note), advance)
    command_line = shlex.join(["yolov6-bench", *(argv if argv is not None else sys.argv[1:])])
    text = to_markdown(report, command=command_line)
    print(text)
    if args.md:
        write_text(args.md, text)
    if args.json:
        write_text(args.json, json.dumps({"command": command_line, **report.to_dict()}, indent=2) + "\n")
    if args.csv:
        write_text(args.csv, to_csv(report))
    return 0 if all(row.status != "failed" for row in report.rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
