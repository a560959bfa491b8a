"""CPU figures of the release families, measured side by side in one run.

1. Speed: fp32 and INT8 (ONNX Runtime, the SDK's Q/DQ rules) model-only latency at batch 1 of YOLOv6Lite-S/M/L at
   320x320 and YOLOv6-N6 at 1280x1280, against YOLOv6-N at 640x640; untrained seeded weights (speed does not depend
   on them), rounds interleaved so that a busy moment hits every model alike.
2. Accuracy: the INT8 mAP change of a base model (ReLU, plain convolutions) against its v3.0 counterpart after the
   same short training on the generated demo set (the official claim: base models quantise with almost no loss).

Usage (an idle machine; the CPU is named in the report):

    python benchmarks/zoo_cpu.py --json benchmarks/zoo_cpu.json --md benchmarks/zoo_cpu.md
    python benchmarks/zoo_cpu.py --quick          # tiny sizes and budgets: shows the script works, figures mean nothing
    python benchmarks/zoo_cpu.py --speed-only     # point 1 only
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from yolov6_sdk.export.build import build
from yolov6_sdk.machine import cpu_model
from yolov6_sdk.models import build_model
from yolov6_sdk.runtime.backends.onnxruntime import OnnxRuntimeBackend
from yolov6_sdk.runtime.cpu_choice import SETTLE_S
from yolov6_sdk.scoring import evaluate_artifact
from yolov6_sdk.training.datagen import generate_dataset, write_calibration_images
from yolov6_sdk.weights import save_checkpoint

SPEED_MODELS = {"yolov6lite-s": 320, "yolov6lite-m": 320, "yolov6lite-l": 320, "yolov6n6": 1280, "yolov6n": 640}
QUICK_SIZES = {"yolov6lite-s": 64, "yolov6lite-m": 64, "yolov6lite-l": 64, "yolov6n6": 128, "yolov6n": 64}
BASELINE = "yolov6n"
PAIRS = (("yolov6n-base", "yolov6n"),)
"""(base model, its v3.0 counterpart) trained alike for the accuracy rows."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round, one epoch: a smoke run")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    p.add_argument("--iters", type=int, default=20, help="timed runs per model and round (default 20)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.add_argument("--calib-size", type=int, default=64, help="INT8 calibration images (default 64)")
    p.add_argument("--speed-only", action="store_true", help="the speed rows only (no training)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs of each accuracy model (default 30)")
    p.add_argument("--train-imgsz", type=int, default=160, help="training and evaluation size (default 160)")
    p.add_argument("--data", type=Path, help="COCO-layout demo set (default: generated in the work folder)")
    p.add_argument("--work", type=Path, help="work folder (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the figures as JSON")
    p.add_argument("--md", type=Path, help="write the report as markdown")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.iters, args.calib_size, args.epochs, args.train_imgsz = 1, 2, 2, 1, 64
    return args


def _artifacts(name: str, imgsz: int, calib: Path, work: Path, calib_size: int) -> dict[str, Path]:
    """fp32 and int8 ONNX of a seeded untrained ``name`` at ``imgsz``."""
    torch.manual_seed(0)
    weights = save_checkpoint(work / f"{name}-{imgsz}.pt", build_model(name).eval(), imgsz=imgsz)
    common = {"weights": weights, "backend": "onnxruntime", "output": work / "engines", "batch_sizes": [1]}
    return {
        "fp32": build(**common, precision="fp32").artifact,
        "int8": build(**common, precision="int8", calib=calib, calib_size=calib_size).artifact,
    }


def speed_rows(args: argparse.Namespace, work: Path, calib: Path) -> list[dict[str, object]]:
    """Median model-only latency (ms, batch 1) per model and precision, rounds interleaved over all of them."""
    sizes = QUICK_SIZES if args.quick else SPEED_MODELS
    runs = {}
    for name, imgsz in sizes.items():
        for precision, path in _artifacts(name, imgsz, calib, work, args.calib_size).items():
            backend = OnnxRuntimeBackend(path, "cpu", threads=args.threads)
            x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
            backend.infer(x)  # warm-up
            runs[name, precision] = (backend, x, [])
    for _ in range(args.rounds):
        for backend, x, times in runs.values():
            time.sleep(SETTLE_S)  # the previous model's runtime threads stop spinning first
            for _ in range(args.iters):
                start = time.perf_counter()
                backend.infer(x)
                times.append((time.perf_counter() - start) * 1e3)
    base = statistics.median(runs[BASELINE, "fp32"][2])
    rows = []
    for (name, precision), (backend, _, times) in runs.items():
        ms = statistics.median(times)
        rows.append({"model": name, "imgsz": sizes[name], "precision": precision, "ms": ms, "vs_n_fp32": ms / base})
        backend.close()
    return rows


def accuracy_rows(args: argparse.Namespace, work: Path, calib: Path) -> list[dict[str, object]]:
    """fp32 and INT8 mAP50-95 of each pair after the same training run (the yolov6-train defaults of the model,
    shortened to ``--epochs``)."""
    from yolov6_sdk.cli.train import main as train

    data = args.data or generate_dataset(work / "shapes", 16 if args.quick else 400, 4 if args.quick else 100,
                                         imgsz=(args.train_imgsz, args.train_imgsz), seed=0, num_classes=3)  # fmt: skip
    rows = []
    for name in (model for pair in PAIRS for model in pair):
        out = work / f"train-{name}"
        recipe = ["--epochs", str(args.epochs), "--imgsz", str(args.train_imgsz), "--batch", "8", "--workers", "0",
                  "--device", "cpu", "--min-warmup-iters", "0", "--eval-interval", str(args.epochs)]  # fmt: skip
        if train(["--model", name, "--data", str(data), *recipe, "-o", str(out)]) != 0:
            raise SystemExit(f"training {name} failed")
        common = {"weights": out / "best.pt", "backend": "onnxruntime", "output": work / "engines"}
        maps = {}
        for precision in ("fp32", "int8"):
            extra = {"calib": calib, "calib_size": args.calib_size} if precision == "int8" else {}
            artifact = build(**common, precision=precision, **extra).artifact
            maps[precision] = evaluate_artifact(artifact, data, imgsz=args.train_imgsz, device="cpu")["mAP50-95"]
        rows.append({"model": name, "fp32_map": maps["fp32"], "int8_map": maps["int8"],
                     "change": maps["int8"] - maps["fp32"]})  # fmt: skip
    return rows


def report(speed: list[dict[str, object]], accuracy: list[dict[str, object]], args: argparse.Namespace) -> str:
    lines = [f"# Release families on the CPU ({cpu_model()}, {args.threads} ONNX Runtime threads)", ""]
    if args.quick:
        lines += ["Smoke run (--quick): tiny sizes and budgets, the figures mean nothing.", ""]
    lines += [
        "| model | size | fp32 ms | int8 ms | fp32 vs yolov6n fp32 | int8 vs yolov6n fp32 |",
        "|---|---|---|---|---|---|",
    ]
    by_model: dict[str, dict[str, dict[str, object]]] = {}
    for row in speed:
        by_model.setdefault(str(row["model"]), {})[str(row["precision"])] = row
    for name, cells in by_model.items():
        fp32, int8 = cells["fp32"], cells["int8"]
        lines.append(f"| {name} | {fp32['imgsz']} | {fp32['ms']:.2f} | {int8['ms']:.2f} | "
                     f"{fp32['vs_n_fp32']:.2f}x | {int8['vs_n_fp32']:.2f}x |")  # fmt: skip
    if not accuracy:
        return "\n".join(lines) + "\n"
    lines += ["", f"INT8 accuracy after {args.epochs} epochs at {args.train_imgsz} px on the demo set (mAP50-95):", "",
              "| model | fp32 | int8 | change |", "|---|---|---|---|"]  # fmt: skip
    for row in accuracy:
        lines.append(f"| {row['model']} | {row['fp32_map']:.4f} | {row['int8_map']:.4f} | {row['change']:+.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        calib = work / "calib"
        write_calibration_images(calib, max(args.calib_size, 2), seed=1, imgsz=(480, 640))
        speed = speed_rows(args, work, calib)
        accuracy = [] if args.speed_only else accuracy_rows(args, work, calib)
    text = report(speed, accuracy, args)
    print(text)
    if args.md:
        args.md.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "speed": speed, "accuracy": accuracy}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
