"""``yolov6-datagen ROOT --train N --val N --seed S``: write a seeded synthetic COCO-layout dataset.

Argument parsing only; the work is :func:`yolov6_sdk.training.datagen.generate_dataset`. Every value is checked
before anything is written (exit 2 with one line naming the option).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from yolov6_sdk.cli.options import CommandParser, parse
from yolov6_sdk.cli.outputs import check_outputs
from yolov6_sdk.cli.signals import command, interrupt_note

MIN_SIDE = 64  # px: the smallest picture the generator draws objects on
CLASS_COUNT = 12  # names the generator has (training.datagen.CLASS_NAMES)


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="yolov6-datagen", description="Write a seeded synthetic detection dataset in "
                           "COCO 2017 layout (shapes and glyphs on textured backgrounds).")  # fmt: skip
    parser.add_argument("root", type=Path, help="output folder (images/ and annotations/ are created in it)")
    parser.add_argument("--train", type=int, default=200, help="number of training images (default 200)")
    parser.add_argument("--val", type=int, default=50, help="number of validation images (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    parser.add_argument("--classes", type=int, default=8, help=f"number of classes, 1..{CLASS_COUNT} (default 8)")
    parser.add_argument("--imgsz", type=int, nargs=2, default=(320, 640), metavar=("MIN", "MAX"),
                        help=f"range of image heights and widths in px, {MIN_SIDE} <= MIN <= MAX "
                        "(default 320 640)")  # fmt: skip
    parser.add_argument("--calib", type=int, default=0, help="also write N calibration images to ROOT/calib")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors for values the generator cannot take, before anything is written."""
    if not 1 <= args.classes <= CLASS_COUNT:
        parser.error(f"--classes {args.classes}: expected 1..{CLASS_COUNT}")
    low, high = args.imgsz
    if low < MIN_SIDE or low > high:
        parser.error(f"--imgsz {low} {high}: expected MIN MAX with {MIN_SIDE} <= MIN <= MAX")
    for option in ("train", "val", "calib"):
        if getattr(args, option) < 0:
            parser.error(f"--{option} {getattr(args, option)}: expected a number of images >= 0")


@command("yolov6-datagen")
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parse(parser, argv)
    _check(parser, args)
    check_outputs(folders={"ROOT": args.root})
    from yolov6_sdk.training.datagen import generate_dataset, write_calibration_images

    interrupt_note(f"{args.root} may hold part of the images; its annotation files appear only when complete")
    imgsz = (args.imgsz[0], args.imgsz[1])
    root = generate_dataset(args.root, args.train, args.val, imgsz, args.seed, args.classes)
    if args.calib:
        write_calibration_images(root / "calib", args.calib, args.seed, imgsz, args.classes)
    print(f"synthetic dataset written to {root} ({args.train} train, {args.val} val, {args.classes} classes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
