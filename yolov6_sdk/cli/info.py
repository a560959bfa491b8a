"""``yolov6-info``: the model table (fused params and GFLOPs of every zoo config)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from yolov6_sdk.cli.options import CommandParser, parse, parse_imgsz_option
from yolov6_sdk.cli.signals import command


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="yolov6-info", description="Fused params and GFLOPs of the YOLOv6 zoo.")
    parser.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="PX",
                        help="input size H [W], multiples of 32 (default each model's: 640, P6 1280, Lite 320)")  # fmt: skip
    return parser


@command("yolov6-info")
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parse(parser, argv)
    size = parse_imgsz_option(parser, args.imgsz)
    imgsz = (size, size) if isinstance(size, int) else size

    from yolov6_sdk.models.info import zoo_table

    print(f"{'model':<16} {'line':<6} {'params (M)':>10} {'GFLOPs':>8}  at H x W")
    for row in zoo_table(imgsz):
        print(f"{row.name:<16} {row.line:<6} {row.params_m:>10.2f} {row.gflops:>8.2f}  {row.imgsz[0]}x{row.imgsz[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
