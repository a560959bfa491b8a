"""Which Q/DQ flavour OpenVINO runs fastest and most accurately: speed, convolutions left in float, and mAP.

Flavours (one calibration, the SDK's, per model; weights per-channel symmetric int8 in all):
- "int8 sym, TensorRT placement": symmetric int8 activations, Q/DQ on the inputs of the quantised ops;
- "uint8 asym, TensorRT placement": the same placement with uint8 asymmetric activations;
- "uint8 asym, ONNX Runtime placement": the ``onnxruntime-cpu`` target (ReLU, Sigmoid, Mul outputs quantised too);
- the NNCF route on the same fp32 ONNX (``nncf.quantize``, default preset), when nncf is installed.

Speed: an untrained seeded model at 640x640, batch 1, model only, OpenVINO in fp32 inference precision,
interleaved rounds. "float convs": convolutions OpenVINO's compiled model runs in a float precision instead of
int8 (what its low-precision transformations could not fold). Accuracy: the shipped demo weights at their 160 px,
mAP50-95 on the demo val set (``yolov6-datagen --val 100 --seed 0 --imgsz 256 320``) through the Detector in
OpenVINO, against the fp32 artifact.

Usage: ``python benchmarks/openvino_qdq_flavours.py [--models yolov6n yolov6s] [--rounds 20]``. Time only an
idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import torch
from onnxruntime.quantization import QuantType

from yolov6_sdk.evaluate import evaluate
from yolov6_sdk.export import calibration, ort_quant
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.machine import cpu_features, cpu_model
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.cpu_choice import SETTLE_S
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import generate_dataset
from yolov6_sdk.weights import load

ROOT = Path(__file__).resolve().parents[1]
DEMO_WEIGHTS = ROOT / "weights" / "yolov6n-shapes.pt"
_OPENVINO = ort_quant.TARGETS["openvino"]  # TensorRT's placement, uint8 asymmetric activations
FLAVOURS = {
    "int8 sym, TensorRT placement": dataclasses.replace(_OPENVINO, activation_type=QuantType.QInt8, symmetric=True),
    "uint8 asym, TensorRT placement (the openvino target)": _OPENVINO,
    "uint8 asym, ONNX Runtime placement": ort_quant.TARGETS["onnxruntime-cpu"],
}


@contextlib.contextmanager
def registered(flavour: ort_quant.QuantTarget) -> Iterator[str]:
    """``flavour`` registered for the duration under a name of its own; yields that name."""
    name = "candidate"
    ort_quant.TARGETS[name] = dataclasses.replace(flavour, name=name)
    try:
        yield name
    finally:
        del ort_quant.TARGETS[name]


def quantized(fp32: Path, imgsz: int, work: Path) -> dict[str, Path]:
    """Every flavour (and the NNCF route, when installed) of ``fp32``, calibrated once on calib/."""
    calib = calibration.load_calibration_set(ROOT / "calib", (imgsz, imgsz), 32, 8)
    ranges = ort_quant.calibrate(onnx.load(str(fp32)), calib)
    paths = {}
    for index, (label, flavour) in enumerate(FLAVOURS.items()):
        with registered(flavour) as target:
            paths[label] = ort_quant.quantize_model(fp32, work / f"{fp32.stem}-q{index}.onnx", ranges, target).path
    if importlib.util.find_spec("nncf") is not None:
        import nncf

        images = [image[None] for batch in calib.batches() for image in batch]
        route = nncf.quantize(ov.Core().read_model(str(fp32)), nncf.Dataset(images))
        paths["NNCF route"] = work / f"{fp32.stem}-nncf.xml"
        ov.save_model(route, str(paths["NNCF route"]))
    return paths


def float_convs(compiled: ov.CompiledModel) -> int:
    """Convolutions the compiled model runs in a float precision."""
    count = 0
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            count += info["runtimePrecision"].astype(str) not in ("u8", "i8")
    return count


def speed(name: str, work: Path, rounds: int, threads: int) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    model = fuse(build_model(name).eval())
    fp32 = export_onnx(model, work / f"{name}.onnx", ExportOptions((640, 640)))
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    compiled = {
        label: core.compile_model(str(path), "CPU", config) for label, path in quantized(fp32, 640, work).items()
    }
    requests = {label: c.create_infer_request() for label, c in compiled.items()}
    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    samples: dict[str, list[float]] = {label: [] for label in requests}
    for request in requests.values():
        request.infer({0: x})
    for _ in range(rounds):
        for label, request in requests.items():
            time.sleep(SETTLE_S)  # let the previous model's threads stop spinning
            start = time.perf_counter()
            request.infer({0: x})
            samples[label].append((time.perf_counter() - start) * 1e3)
    return {label: {"ms": statistics.median(samples[label]), "float_convs": float_convs(compiled[label])}
            for label in requests}  # fmt: skip


def accuracy(work: Path, threads: int) -> dict[str, float]:
    """mAP50-95 of the demo weights per flavour in OpenVINO (and fp32), on the demo val set."""
    data = generate_dataset(work / "shapes", num_train=0, num_val=100, imgsz=(256, 320), seed=0)
    fp32 = export_onnx(fuse(load(DEMO_WEIGHTS).model.eval()), work / "demo.onnx", ExportOptions((160, 160)))
    paths = {"fp32": fp32, **quantized(fp32, 160, work)}
    scores = {}
    for label, path in paths.items():
        backend = "openvino"
        with Detector(path, device="cpu", backend=backend, threads=threads, conf=0.03, iou=0.65) as detector:
            scores[label] = float(evaluate(detector, data)["mAP50-95"])
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["yolov6n"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="yolov6-ov-flavours-") as tmp:
        work = Path(tmp)
        speeds = {name: speed(name, work, args.rounds, args.threads) for name in args.models}
        maps = accuracy(work, args.threads)
    print(f"CPU: {cpu_model()} [{' '.join(cpu_features())}], {args.threads} threads, OpenVINO {ov.__version__}\n")
    print("| flavour | " + " | ".join(f"{m} 640 ms | {m} float convs" for m in speeds) + " | demo mAP50-95 |")
    print("|---|" + "---|---|" * len(speeds) + "---|")
    print("| fp32 | " + " | ".join("- | -" for _ in speeds) + f" | {maps['fp32']:.4f} |")
    for label in next(iter(speeds.values())):
        cells = [f"{s[label]['ms']:.1f} | {s[label]['float_convs']}" for s in speeds.values()]
        print(f"| {label} | " + " | ".join(cells) + f" | {maps.get(label, float('nan')):.4f} |")
    if args.json:
        record = {"cpu": cpu_model(), "features": cpu_features(), "speed": speeds, "map50_95": maps}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
