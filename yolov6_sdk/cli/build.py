"""``yolov6-build``: export, quantise and build a deployable artifact (argument parsing and printing only)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolov6_sdk.cli.options import CommandParser, parse
from yolov6_sdk.cli.outputs import check_outputs
from yolov6_sdk.cli.signals import command, interrupt_note
from yolov6_sdk.export.options import BuildOptions

EPILOG = """examples:
  yolov6-build --weights best.pt --precision int8 --calib calib/ -o engines/
  yolov6-build --weights best.pt --precision int8 --name best-int8   # engines/best-int8.onnx, for scripts
  yolov6-build --onnx model.onnx --precision fp16 --backend tensorrt --batch 1 32 --workspace 8
  yolov6-build --weights best.pt --precision int8 --calib calib/ --val data/ --exclude auto --max-ap-drop 0.01
  yolov6-build --qat runs/qat/best.pt   # int8 from a yolov6-train --qat checkpoint, no calibration
"""


GROUP_TITLES = {
    "source": "source",
    "artifact": "artifact",
    "tensorrt": "export opset and TensorRT builder (trtexec's settings)",
    "int8": "int8",
    "validation": "validation",
}


def _argparse_settings(option: dataclasses.Field) -> dict[str, Any]:
    """``add_argument`` keywords of one :class:`BuildOptions` field: its help with the default shown, a switch
    for a bool, else its own ``type`` / ``nargs`` / ``metavar`` / ``choices``."""
    meta, default = option.metadata, option.default
    settings: dict[str, Any] = {"dest": option.name, "help": meta["help"], **meta["cli"]}
    if isinstance(default, bool):
        return {**settings, "action": "store_true"}
    if option.name == "multi_label":  # True or unset: None lets an ONNX source keep what it records
        return {**settings, "action": "store_const", "const": True, "default": None}
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    if shown not in (None, ""):
        settings["help"] += f" (default {shown})"
    return {**settings, "default": list(default) if isinstance(default, tuple) else default}


def _parser() -> argparse.ArgumentParser:
    """The parser: every :class:`BuildOptions` field as its option, then --triton and --verbose."""
    parser = CommandParser(
        prog="yolov6-build",
        description="Build a YOLOv6 artifact: fp32/int8 ONNX for ONNX Runtime, or a TensorRT engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = {key: parser.add_argument_group(title) for key, title in GROUP_TITLES.items()}
    for option in dataclasses.fields(BuildOptions):
        flags = option.metadata["flags"] or ("--" + option.name.replace("_", "-"),)
        groups[option.metadata["group"]].add_argument(*flags, **_argparse_settings(option))
    groups["artifact"].add_argument(
        "--triton", metavar="DIR", help="also write a Triton Inference Server model repository for the artifact"
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
    options = plan.options
    source = plan.onnx or plan.weights or f"randomly initialised {plan.model} (--random-weights)"
    batch = " ".join(map(str, options.batch_sizes))
    if plan.backend != "tensorrt" and options.batch_sizes == (1,):
        batch = "any (dynamic batch axis)"
    lines = [
        f"source     {source}",
        f"build      {plan.model} {plan.precision} on {plan.backend} ({plan.backend_reason}), imgsz "
        f"{plan.imgsz[0]}x{plan.imgsz[1]}, batch {batch}"
        + (", end-to-end NMS" if options.end2end else "")
        + (", multi-label NMS" if plan.multi_label else "")
        + (", dynamic height and width" if plan.dynamic_hw else ""),
    ]
    if plan.qat_target is not None:
        lines.append(f"quantise   trained ranges of the QAT source (no calibration), target {plan.target}")
    elif plan.precision == "int8":
        lines.append(
            f"calibrate  up to {options.calib_size} images from {plan.calib} ({plan.calib_method}), target "
            f"{plan.target}"
        )
        if options.sensitivity or options.exclude:
            budget = f"mAP drop <= {options.max_ap_drop}" if options.val else f"output error <= {options.max_error}"
            lines.append(f"float      exclude {' '.join(options.exclude) or '-'}; budget {budget}")
    if options.val:
        lines.append(f"validate   {options.val} (fp32 vs {plan.precision})")
    return [*lines, f"output     {plan.artifact}", *(f"note       {note}" for note in _plan_notes(plan))]


def _plan_notes(plan: Any) -> list[str]:
    """What the plan does differently from what the options might suggest: a size other than the weights were
    trained at, a calibration folder a non-int8 build does not use."""
    from yolov6_sdk.artifact.preprocess import check_imgsz

    notes = []
    trained = getattr(plan.checkpoint, "imgsz", None)
    if trained and plan.options.imgsz is not None and check_imgsz(trained) != tuple(plan.imgsz):
        height, width = check_imgsz(trained)
        notes.append(f"the weights were trained at {height}x{width}; at {plan.imgsz[0]}x{plan.imgsz[1]} they usually "
                     "score lower (drop --imgsz to build at the trained size)")  # fmt: skip
    if plan.options.calib is not None and plan.calib is None:
        why = "trained ranges of the QAT source" if plan.qat_target else f"a {plan.precision} build"
        notes.append(f"--calib {plan.options.calib} is not used: {why} needs no calibration")
    return notes


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


def _evaluator(plan: Any) -> Any:
    """What measures mAP on ``--val`` (the Detector over the validation set), or None without ``--val``."""
    if plan.options.val is None:
        return None
    from yolov6_sdk.scoring import map_evaluator

    return map_evaluator(plan.options.val, plan.imgsz)


def _cpu_runtime_line(artifact: Path) -> str:
    """Which runtime ``Detector(artifact)`` takes on this CPU and why (measured now, recorded in the sidecar)."""
    from yolov6_sdk.runtime.backends.registry import backend_kind
    from yolov6_sdk.runtime.cpu_choice import recorded_choice

    chosen = backend_kind(artifact, "auto", "cpu")  # the Detector's own choice: probes and records it
    choice = recorded_choice(artifact)
    if choice is None or choice.backend != chosen:
        return f"CPU runtime: {chosen} (the default reader of .onnx; no measurement recorded)"
    return f"CPU runtime: {chosen}, measured fastest here: {choice.reason()} (recorded in the sidecar)"


@command("yolov6-build")
def main(argv: Sequence[str] | None = None) -> int:
    args = parse(_parser(), argv)
    check_outputs(folders={"-o/--output": args.output, "Triton repository folder (--triton)": args.triton})
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    from yolov6_sdk.export.build import run_build
    from yolov6_sdk.export.plan import plan_build

    bars = _Bars()
    try:
        plan = plan_build(
            BuildOptions(**{option.name: getattr(args, option.name) for option in dataclasses.fields(BuildOptions)})
        )
        print("\n".join(["yolov6-build plan:", *(f"  {line}" for line in _plan_lines(plan))]), flush=True)
        if args.triton:  # an unwritable repository folder fails before the build, not after it
            from yolov6_sdk.export.triton import check_repository_folder, write_triton_repository

            check_repository_folder(args.triton)
        interrupt_note(f"the previous {plan.artifact.name} (if any) is left as it was")
        result = run_build(plan, progress=bars, evaluate=_evaluator(plan))
        if args.triton:
            largest = max(plan.options.batch_sizes)  # default (1,) on a dynamic batch axis: the repository's cap
            repo = write_triton_repository(result.artifact, args.triton, max_batch=largest if largest > 1 else None)
    finally:
        bars.close()
    print("\n".join(_summary(result)))
    if result.artifact.suffix == ".onnx" and result.backend == "onnxruntime":
        print(_cpu_runtime_line(result.artifact))
    if args.triton:
        print(f"Triton model repository: {repo} ({_triton_batch(repo)}; serve with: tritonserver --model-repository "
              f"{args.triton})")  # fmt: skip
    return 0


def _triton_batch(repo: Path) -> str:
    """``max_batch_size N`` as written in the repository's config.pbtxt."""
    found = re.search(r"max_batch_size:\s*(\d+)", (Path(repo) / "config.pbtxt").read_text())
    return f"max_batch_size {found.group(1)}" if found else "max_batch_size unknown"


if __name__ == "__main__":
    raise SystemExit(main())
