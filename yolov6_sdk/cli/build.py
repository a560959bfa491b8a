"""``yolov6-build``: export, quantise and build a deployable artifact (argument parsing and printing only)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.spec import BUILD_BACKENDS, PRECISIONS
from yolov6_sdk.artifact.trt_compat import HARDWARE_LEVELS
from yolov6_sdk.cli.options import image_size, parse

EPILOG = """examples:
  yolov6-build --weights best.pt --precision int8 --calib calib/ -o engines/
  yolov6-build --weights best.pt --precision int8 --name best-int8   # engines/best-int8.onnx, for scripts
  yolov6-build --onnx model.onnx --precision fp16 --backend tensorrt --batch 1 32 --workspace 8
  yolov6-build --weights best.pt --precision int8 --calib calib/ --val data/ --exclude auto --max-ap-drop 0.01
  yolov6-build --qat runs/qat/best.pt   # int8 from a yolov6-train --qat checkpoint, no calibration
"""


def _add_int8_options(calib: argparse._ArgumentGroup) -> None:
    """Calibration, sensitivity and float-layer options of an int8 build."""
    calib.add_argument("--calib", type=Path, help="folder of calibration images, searched recursively (default calib/)")
    calib.add_argument("--calib-method", default="minmax", choices=("minmax", "entropy", "percentile"),
                       help="how activation ranges are chosen from the calibration images (default minmax)")  # fmt: skip
    calib.add_argument("--calib-size", type=int, default=500, help="images used, evenly sampled (default 500)")
    calib.add_argument("--calib-batch", type=int, default=8, help="images per calibration batch (default 8)")
    calib.add_argument("--sensitivity", action="store_true", help="rank layers by INT8 sensitivity and print them")
    calib.add_argument("--exclude", nargs="+", default=[], metavar="NAME",
                       help="layers kept float: module paths (wildcards allowed) or 'auto'")  # fmt: skip
    calib.add_argument("--max-ap-drop", type=float, default=0.01, metavar="FRACTION",
                       help="--exclude auto budget with --val: mAP50-95 the artifact may lose, as a fraction like "
                       "every mAP the SDK prints (default 0.01, one point)")  # fmt: skip
    calib.add_argument("--max-error", type=float, default=0.02,
                       help="--exclude auto budget without --val: output error against fp32, as --sensitivity "
                       "measures it (default 0.02)")  # fmt: skip


def _add_tensorrt_options(trt: argparse._ArgumentGroup) -> None:
    """Engine-builder settings of a TensorRT build, and the ONNX opset of the export it starts from."""
    trt.add_argument("--workspace", type=float, default=None, metavar="GIB",
                     help="builder workspace memory pool limit in GiB (default 4)")  # fmt: skip
    trt.add_argument("--timing-cache", type=Path, default=None, metavar="FILE",
                     help="timing cache to read and update (default: timing-trt<version>-sm<cc>.cache beside the "
                     "engine)")  # fmt: skip
    trt.add_argument("--hardware-compat", default="none", choices=("none", *HARDWARE_LEVELS),
                     help="engine runs on other GPUs too: ampere_plus (any Ampere or newer) or "
                     "same_compute_capability (default none: this GPU's kind only)")  # fmt: skip
    trt.add_argument("--opset", type=int, default=None, metavar="N",
                     help="ONNX opset of the export from --weights (default 13; 13 or newer)")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolov6-build",
        description="Build a YOLOv6 artifact: fp32/int8 ONNX for ONNX Runtime, or a TensorRT engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("source")
    source.add_argument(
        "--weights", type=Path, help="checkpoint (.pt, SDK or official); default weights/yolov6n-shapes.pt"
    )
    source.add_argument("--onnx", type=Path, help="an fp32 ONNX export (or a QAT Q/DQ export) instead of a checkpoint")
    source.add_argument("--qat", type=Path, metavar="CKPT",
                        help="a yolov6-train --qat checkpoint: int8 from its trained ranges, no calibration")  # fmt: skip
    source.add_argument("--model", help="zoo name (with --random-weights; checked against the checkpoint otherwise)")
    source.add_argument("--random-weights", action="store_true", help="untrained network, for timing only")
    what = parser.add_argument_group("artifact")
    what.add_argument("--precision", default="fp32", choices=PRECISIONS,
                      help="numeric precision of the artifact; int8 calibrates on --calib (default fp32)")  # fmt: skip
    what.add_argument("--backend", default="auto", choices=("auto", *BUILD_BACKENDS),
                      help="runtime the artifact is for: onnxruntime (.onnx) or tensorrt (.engine) (default auto: "
                      "tensorrt when TensorRT and a GPU are here, else onnxruntime)")  # fmt: skip
    what.add_argument("--batch", "--bs", type=int, nargs="+", default=[1], metavar="N",
                      help="batch sizes to serve: N, or MIN [OPT] MAX for a TensorRT profile (default 1)")  # fmt: skip
    what.add_argument(
        "--imgsz",
        type=int,
        nargs="+",
        default=None,
        metavar="PX",
        help="H [W], multiples of 32 (default: the checkpoint's training size, else 640)",
    )
    what.add_argument("--end2end", action="store_true", help="NMS inside the graph (EfficientNMS outputs)")
    what.add_argument(
        "--multi-label",
        action="store_true",
        help="NMS keeps a box once per class above conf (COCO evaluation); default: each box's best class only "
        "(an --onnx source keeps what it records)",
    )
    what.add_argument(
        "--dynamic-hw",
        action="store_true",
        help="dynamic input height and width up to --imgsz: the Detector letterboxes each batch to the smallest "
        "multiple-of-32 rectangle (a 640x480 picture runs on 480x640); TensorRT gets a min/opt/max profile",
    )
    what.add_argument(
        "--triton", metavar="DIR", help="also write a Triton Inference Server model repository for the artifact"
    )
    what.add_argument("-o", "--output", type=Path, default=Path("engines"), metavar="DIR",
                      help="output folder (default engines/)")  # fmt: skip
    what.add_argument(
        "--name",
        help="artifact file name in the output folder, suffix optional (default: from what it holds, e.g. "
        "yolov6n-3f2a9c1d-640-int8.onnx: model, weights digest, imgsz, precision[, batch profile][, NMS][, -ml])",
    )
    what.add_argument(
        "--force", action="store_true", help="replace an existing artifact of that name built from other weights"
    )
    _add_tensorrt_options(parser.add_argument_group("export opset and TensorRT builder (trtexec's settings)"))
    _add_int8_options(parser.add_argument_group("int8"))
    parser.add_argument(
        "--val",
        type=Path,
        help="dataset (COCO root or YOLO data.yaml) to report mAP of fp32 and the artifact on; with --sensitivity "
        "it also measures mAP once per layer (slow on a large set)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every stage")
    return parser


class _Bars:
    """tqdm bars per build stage, created on first report."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        unit = "img" if stage == "calibrate" else "layer"
        bar = self._bars.get(stage) or self._bars.setdefault(
            stage, self._tqdm(total=total, desc=stage, unit=unit, disable=None, leave=True)
        )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def _plan_lines(plan: Any) -> list[str]:
    """The plan in a few lines: source, what is built, calibration, budget, validation and output."""
    source = plan.onnx or plan.weights or f"randomly initialised {plan.model} (--random-weights)"
    batch = " ".join(map(str, plan.batch_sizes))
    lines = [
        f"source     {source}",
        f"build      {plan.model} {plan.precision} on {plan.backend} ({plan.backend_reason}), imgsz "
        f"{plan.imgsz[0]}x{plan.imgsz[1]}, batch {batch}"
        + (", end-to-end NMS" if plan.end2end else "")
        + (", multi-label NMS" if plan.multi_label else "")
        + (", dynamic height and width" if plan.dynamic_hw else ""),
    ]
    if plan.qat_target is not None:
        lines.append(f"quantise   trained ranges of the QAT source (no calibration), target {plan.target}")
    elif plan.precision == "int8":
        lines.append(
            f"calibrate  up to {plan.calib_size} images from {plan.calib} ({plan.calib_method}), target {plan.target}"
        )
        if plan.sensitivity or plan.exclude:
            budget = f"mAP drop <= {plan.max_ap_drop}" if plan.val else f"output error <= {plan.max_error}"
            lines.append(f"float      exclude {' '.join(plan.exclude) or '-'}; budget {budget}")
    if plan.val:
        lines.append(f"validate   {plan.val} (fp32 vs {plan.precision})")
    return [*lines, f"output     {plan.artifact}"]


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB"


def _summary(result: Any) -> list[str]:
    from yolov6_sdk.export.sensitivity import format_table

    lines = []
    if result.sensitivity is not None:
        report = result.sensitivity
        lines += ["", "INT8 sensitivity (leaving one layer float; most sensitive first):", format_table(report)]
        final = f"output error {report.int8_error:.4f} all-int8 -> {report.final_error:.4f}"
        met = "met" if report.budget_met else "NOT met"
        lines.append(f"{len(report.float_nodes)} layer(s) left float; {final}; budget {met}")
    took = ", ".join(f"{stage} {sec:.1f}s" for stage, sec in result.seconds.items()) or "none"
    cached = f" (reused: {', '.join(result.cached)})" if result.cached else ""
    lines += [
        "",
        f"{'artifact':<40} {'size':>9} {'precision':>9} {'backend':>12} {'float layers':>12}",
        f"{str(result.artifact):<40} {_size(result.size_bytes):>9} {result.precision:>9} {result.backend:>12} "
        f"{len(result.float_layers):>12}",
        f"sidecar {result.sidecar}; time: {took}{cached}",
    ]
    if result.maps:
        lines.append("mAP50-95: " + "  ".join(f"{k} {v:.4f}" for k, v in result.maps.items()))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parse(parser, argv)
    imgsz = image_size(parser, args.imgsz)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    from yolov6_sdk.errors import YOLOv6Error
    from yolov6_sdk.export.build import run_build
    from yolov6_sdk.export.plan import plan_build

    options = dict(
        weights=args.weights, onnx=args.onnx, model=args.model, precision=args.precision, calib=args.calib,
        calib_method=args.calib_method, calib_size=args.calib_size, calib_batch=args.calib_batch,
        backend=args.backend, batch_sizes=args.batch, imgsz=imgsz,
        end2end=args.end2end, output=args.output, val=args.val, sensitivity=args.sensitivity, exclude=args.exclude,
        max_ap_drop=args.max_ap_drop, max_error=args.max_error, random_weights=args.random_weights,
        name=args.name, force=args.force, multi_label=True if args.multi_label else None,
        workspace_gib=args.workspace, timing_cache=args.timing_cache, hardware_compat=args.hardware_compat,
        opset=args.opset, qat=args.qat, dynamic_hw=args.dynamic_hw,
    )  # fmt: skip
    bars = _Bars()
    try:
        plan = plan_build(**options)
        print("\n".join(["yolov6-build plan:", *(f"  {line}" for line in _plan_lines(plan))]), flush=True)
        if args.triton:  # an unwritable repository folder fails before the build, not after it
            from yolov6_sdk.export.triton import check_repository_folder, write_triton_repository

            check_repository_folder(args.triton)
        result = run_build(plan, progress=bars)
        if args.triton:
            largest = max(plan.batch_sizes)  # a dynamic-batch artifact without --bs: the repository picks its own cap
            repo = write_triton_repository(result.artifact, args.triton, max_batch=largest if largest > 1 else None)
    except YOLOv6Error as exc:
        bars.close()
        print(f"yolov6-build: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bars.close()
        print("yolov6-build: interrupted; no artifact was written", file=sys.stderr)
        return 130
    print("\n".join(_summary(result)))
    if args.triton:
        print(f"Triton model repository: {repo} (serve with: tritonserver --model-repository {args.triton})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
