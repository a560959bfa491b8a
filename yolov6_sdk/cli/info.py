"""``yolov6-info``: the model table (fused params and GFLOPs of every zoo config)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yolov6-info", description="Fused params and GFLOPs of the YOLOv6 zoo.")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640], help="H [W], multiples of 32 (default 640)")
    args = parser.parse_args(argv)
    imgsz = (args.imgsz[0], args.imgsz[-1])
    if len(args.imgsz) > 2 or any(s <= 0 or s % 32 for s in imgsz):
        parser.error(f"--imgsz takes one or two positive multiples of 32, got {args.imgsz}")

    from yolov6_sdk.models.info import zoo_table

    print(f"{'model':<12} {'line':<6} {'params (M)':>10} {f'GFLOPs @{imgsz[0]}x{imgsz[1]}':>18}")
    for row in zoo_table(imgsz):
        print(f"{row.name:<12} {row.line:<6} {row.params_m:>10.2f} {row.gflops:>18.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
