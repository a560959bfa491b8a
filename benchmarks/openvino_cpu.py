"""ONNX Runtime against OpenVINO on this CPU, as ratios to the official deploy path, measured side by side.

Rows (one untrained seeded model, 640x640, 2 threads unless --threads, batch 1, interleaved rounds):
- the official deploy path: the official-style fp32 ONNX in ONNX Runtime, model only (the 1.00x row);
- OpenVINO's default route: that same ONNX in OpenVINO with its defaults (bf16 on CPUs with AMX);
- the SDK's fp32, bf16 and int8 artifacts on each runtime that runs them, model only;
- the SDK's Q/DQ flavours in OpenVINO: ONNX Runtime's (uint8 asymmetric) and the "openvino" one (int8 symmetric);
- end to end: ``Detector.stream`` over a folder of 640x480 JPEGs, per picture, for the int8 artifacts.

Usage: ``python benchmarks/openvino_cpu.py --models yolov6n yolov6s [--rounds 15] [--json out.json]``. Prints a
markdown table with the CPU model and its instruction-set features. Time only an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import openvino as ov
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_deploy import export_official_onnx  # noqa: E402

from yolov6_sdk.export import calibration, ort_quant  # noqa: E402
from yolov6_sdk.export.onnx import ExportOptions, export_onnx  # noqa: E402
from yolov6_sdk.export.openvino import write_ir  # noqa: E402
from yolov6_sdk.machine import cpu_features, cpu_model  # noqa: E402
from yolov6_sdk.models import build_model, fuse  # noqa: E402
from yolov6_sdk.runtime.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from yolov6_sdk.runtime.backends.openvino import OpenVINOBackend  # noqa: E402
from yolov6_sdk.runtime.detector import Detector  # noqa: E402
from yolov6_sdk.training.datagen import make_image  # noqa: E402

CALIB = Path(__file__).resolve().parents[1] / "calib"
IMGSZ = 640


def artifacts(name: str, work: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    model = fuse(build_model(name).eval())
    paths = {"official": export_official_onnx(model, work / f"{name}-official.onnx", IMGSZ)}
    paths["fp32"] = export_onnx(model, work / f"{name}.onnx", ExportOptions((IMGSZ, IMGSZ), dynamic_hw=True))
    calib = calibration.load_calibration_set(CALIB, (IMGSZ, IMGSZ), 32, 8)
    ranges = ort_quant.calibrate(onnx.load(str(paths["fp32"])), calib)
    for target in ("onnxruntime-cpu", "openvino"):
        out = work / f"{name}-int8-{target}.onnx"
        ort_quant.quantize_model(paths["fp32"], out, ranges, target)
        paths[f"int8-{target}"] = out
    paths["ir-int8"] = work / f"{name}-int8.xml"
    write_ir(paths["int8-openvino"], paths["ir-int8"], "int8")
    return paths


def model_only_cells(paths: dict[str, Path], threads: int) -> dict[str, object]:
    """Row label -> a zero-argument callable running one batch-1 inference."""
    core = ov.Core()
    default_route = core.compile_model(str(paths["official"]), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = default_route.create_infer_request()
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    backends = {
        "official deploy path (ORT fp32)": OnnxRuntimeBackend(paths["official"], "cpu", threads=threads),
        "SDK fp32, ONNX Runtime": OnnxRuntimeBackend(paths["fp32"], "cpu", threads=threads),
        "SDK fp32, OpenVINO (fp32)": OpenVINOBackend(paths["fp32"], "cpu", threads=threads),
        "SDK fp32, OpenVINO bf16": OpenVINOBackend(paths["fp32"], "cpu", threads=threads, precision="bf16"),
        "SDK int8 (ORT flavour), ONNX Runtime": OnnxRuntimeBackend(
            paths["int8-onnxruntime-cpu"], "cpu", threads=threads
        ),
        "SDK int8 (ORT flavour), OpenVINO": OpenVINOBackend(paths["int8-onnxruntime-cpu"], "cpu", threads=threads),
        "SDK int8 (openvino flavour), OpenVINO": OpenVINOBackend(paths["int8-openvino"], "cpu", threads=threads),
    }
    cells: dict[str, object] = {"official ONNX, OpenVINO defaults": lambda: request.infer({0: x})}
    for label, backend in backends.items():
        cells[label] = lambda b=backend: b.infer(x)
    return cells


def end_to_end_cells(paths: dict[str, Path], folder: Path, threads: int) -> dict[str, object]:
    runs = {
        "end to end, int8 ONNX Runtime": Detector(paths["int8-onnxruntime-cpu"], device="cpu", backend="onnxruntime",
                                                  threads=threads, rect=True),
        "end to end, int8 OpenVINO IR": Detector(paths["ir-int8"], device="cpu", threads=threads, rect=True),
    }  # fmt: skip
    pictures = sorted(folder.glob("*.jpg"))
    return {label: lambda d=d: [None for _ in d.stream(pictures)] for label, d in runs.items()}, len(pictures)


def interleaved(cells: dict[str, object], rounds: int, per_call: int = 1) -> dict[str, float]:
    samples: dict[str, list[float]] = {key: [] for key in cells}
    for run in cells.values():
        run()  # warm-up
    for _ in range(rounds):
        for key, run in cells.items():
            start = time.perf_counter()
            run()
            samples[key].append((time.perf_counter() - start) * 1e3 / per_call)
    return {key: statistics.median(values) for key, values in samples.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["yolov6n"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pictures", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="yolov6-ov-bench-") as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        folder = work / "pictures"
        folder.mkdir()
        for i in range(args.pictures):
            cv2.imwrite(str(folder / f"p{i:03d}.jpg"), cv2.resize(make_image(rng, 400, 8)[0], (640, 480)))
        for name in args.models:
            paths = artifacts(name, work / name) if (work / name).mkdir() is None else {}
            figures = interleaved(model_only_cells(paths, args.threads), args.rounds)
            e2e, count = end_to_end_cells(paths, folder, args.threads)
            figures.update(interleaved(e2e, max(3, args.rounds // 5), per_call=count))
            results[name] = figures
    print(f"CPU: {cpu_model()} [{' '.join(cpu_features())}], {args.threads} threads, {IMGSZ}x{IMGSZ} model input, "
          f"640x480 JPEGs end to end (rect), OpenVINO {ov.__version__}\n")  # fmt: skip
    print("| row | " + " | ".join(f"{m} ms | {m} x official" for m in results) + " |")
    print("|---|" + "---|---|" * len(results))
    for row in next(iter(results.values())):
        cells = []
        for figures in results.values():
            base = figures["official deploy path (ORT fp32)"]
            cells += [f"{figures[row]:.1f}", f"{base / figures[row]:.2f}x"]
        print(f"| {row} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "features": cpu_features(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
