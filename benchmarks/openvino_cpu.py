"""ONNX Runtime against OpenVINO on this CPU, as ratios to the official deploy path, measured side by side.

Rows (one untrained seeded model, 640x640, 2 threads unless --threads, batch 1, interleaved rounds):
- the official deploy path: the official-style fp32 ONNX in ONNX Runtime, model only (the 1.00x row);
- OpenVINO's default route: that same ONNX in OpenVINO with its defaults (bf16 on CPUs with AMX);
- the NNCF route: that ONNX quantised by ``nncf.quantize`` (OpenVINO's own INT8 route), when nncf is installed;
- the SDK's fp32, bf16 and int8 artifacts on each runtime that runs them, model only;
- the SDK's Q/DQ flavours in OpenVINO: ONNX Runtime's (uint8 asymmetric) and the "openvino" one (int8 symmetric);
- the SDK's int8 IR at the 480x640 canvas rect mode gives a 640x480 picture (the model-only call end to end
  runs), and at batch 4 in OpenVINO's latency and throughput modes (per image);
- end to end: ``Detector.stream`` over folders of 640x480 and 4032x3024 JPEGs and one ``Detector(path)`` call
  per 640x480 JPEG, per picture.
After the table: what ``backend="auto"`` picks for each SDK ONNX artifact (its own short probe) and how far the
pick is from the faster runtime in the table.

Usage: ``python benchmarks/openvino_cpu.py --models yolov6n yolov6s [--rounds 15] [--json out.json]``. Prints a
markdown table with the CPU model and its instruction-set features. Time only an idle machine.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from yolov6_sdk.runtime.cpu_choice import SETTLE_S, probe  # noqa: E402
from yolov6_sdk.runtime.detector import Detector  # noqa: E402
from yolov6_sdk.training.datagen import make_image  # noqa: E402

CALIB = Path(__file__).resolve().parents[1] / "calib"
IMGSZ = 640
RECT = (480, 640)  # the canvas rect mode runs for a 640x480 (landscape) picture
BASELINE = "official deploy path (ORT fp32)"
AUTO_CANDIDATES = {  # SDK ONNX artifact -> its rows per runtime in the table
    "fp32": ("SDK fp32, ONNX Runtime", "SDK fp32, OpenVINO (fp32)"),
    "int8-onnxruntime-cpu": ("SDK int8 (ORT flavour), ONNX Runtime", "SDK int8 (ORT flavour), OpenVINO"),
}


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
    if importlib.util.find_spec("nncf") is not None:
        paths["nncf"] = nncf_route(paths["official"], calib, work / f"{name}-nncf.xml")
    return paths


def nncf_route(official: Path, calib: calibration.CalibrationSet, out: Path) -> Path:
    """The official ONNX quantised as OpenVINO documents it: ``nncf.quantize`` with the default preset."""
    import nncf

    images = [image[None] for batch in calib.batches() for image in batch]
    quantized = nncf.quantize(ov.Core().read_model(str(official)), nncf.Dataset(images))
    ov.save_model(quantized, str(out))
    return out


def model_only_cells(paths: dict[str, Path], threads: int) -> dict[str, object]:
    """Row label -> a zero-argument callable running one inference (per image: batch-4 rows divide by 4)."""
    core = ov.Core()
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    cells: dict[str, object] = {}
    routes = {"official ONNX, OpenVINO defaults": paths["official"], "NNCF route, OpenVINO": paths.get("nncf")}
    for label, path in routes.items():
        if path is not None:
            request = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads}).create_infer_request()
            cells[label] = lambda r=request: r.infer({0: x})
    backends = {
        BASELINE: OnnxRuntimeBackend(paths["official"], "cpu", threads=threads),
        "SDK fp32, ONNX Runtime": OnnxRuntimeBackend(paths["fp32"], "cpu", threads=threads),
        "SDK fp32, OpenVINO (fp32)": OpenVINOBackend(paths["fp32"], "cpu", threads=threads, cache=False),
        "SDK fp32, OpenVINO bf16": OpenVINOBackend(paths["fp32"], "cpu", threads=threads, precision="bf16",
                                                   cache=False),
        "SDK int8 (ORT flavour), ONNX Runtime": OnnxRuntimeBackend(
            paths["int8-onnxruntime-cpu"], "cpu", threads=threads
        ),
        "SDK int8 (ORT flavour), OpenVINO": OpenVINOBackend(paths["int8-onnxruntime-cpu"], "cpu", threads=threads,
                                                            cache=False),
        "SDK int8 (openvino flavour), OpenVINO": OpenVINOBackend(paths["int8-openvino"], "cpu", threads=threads,
                                                                 cache=False),
    }  # fmt: skip
    for label, backend in backends.items():
        cells[label] = lambda b=backend: b.infer(x)
    ir = OpenVINOBackend(paths["ir-int8"], "cpu", threads=threads, cache=False)
    rect = np.random.default_rng(0).random((1, 3, *RECT), dtype=np.float32)
    cells["SDK int8 IR, 480x640 canvas"] = lambda: ir.infer(rect)
    batch4 = np.repeat(x, 4, axis=0)
    for mode in ("latency", "throughput"):
        backend = OpenVINOBackend(paths["ir-int8"], "cpu", threads=threads, mode=mode, cache=False)
        cells[f"SDK int8 IR, batch 4, {mode} mode (per image)"] = lambda b=backend: b.infer(batch4)
    return cells


def pictures(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """``count`` JPEGs of ``size`` (w, h): demo-style scenes with sensor-like noise, so they compress as photos."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        scene = cv2.resize(make_image(rng, 400, 8)[0], size, interpolation=cv2.INTER_CUBIC).astype(np.int16)
        noisy = np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"p{i:03d}.jpg")
        cv2.imwrite(str(paths[-1]), noisy, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return paths


def end_to_end_cells(paths: dict[str, Path], folders: dict[str, list[Path]], threads: int) -> dict[str, object]:
    """Row label -> (callable over its pictures, number of pictures): per picture once divided."""
    onnx_int8 = Detector(paths["int8-onnxruntime-cpu"], device="cpu", backend="onnxruntime", threads=threads,
                         rect=True)  # fmt: skip
    ir_int8 = Detector(paths["ir-int8"], device="cpu", threads=threads, rect=True)
    ir_one = Detector(paths["ir-int8"], device="cpu", threads=threads, rect=True, batch=1)
    small, phone = folders["640x480"], folders["4032x3024"]

    def stream(detector: Detector, files: list[Path]) -> object:
        return lambda: [None for _ in detector.stream(files)]

    return {
        "end to end 640x480 folder, int8 ONNX Runtime": (stream(onnx_int8, small), len(small)),
        "end to end 640x480 folder, int8 OpenVINO IR": (stream(ir_int8, small), len(small)),
        "end to end 640x480 folder, one picture per run (stream, batch 1), int8 IR": (stream(ir_one, small),
                                                                                    len(small)),
        "end to end 640x480, one Detector(path) call each, int8 IR": (
            lambda: [ir_int8(str(f)) for f in small], len(small)),
        "end to end 4032x3024 folder, int8 OpenVINO IR": (stream(ir_int8, phone), len(phone)),
    }  # fmt: skip


def interleaved(cells: dict[str, object], rounds: int, per_call: dict[str, int] | None = None) -> dict[str, float]:
    """Median ms per call (divided by ``per_call[label]`` where given) of interleaved rounds after a warm-up."""
    per_call = per_call or {}
    samples: dict[str, list[float]] = {key: [] for key in cells}
    for run in cells.values():
        run()  # warm-up
    for _ in range(rounds):
        for key, run in cells.items():
            time.sleep(SETTLE_S)  # let the previous cell's runtime threads stop spinning
            start = time.perf_counter()
            run()
            samples[key].append((time.perf_counter() - start) * 1e3 / per_call.get(key, 1))
    return {key: statistics.median(values) for key, values in samples.items()}


def measure(name: str, work: Path, folders: dict[str, list[Path]], args: argparse.Namespace) -> dict:
    paths = artifacts(name, work)
    figures = interleaved(model_only_cells(paths, args.threads), args.rounds)
    figures = {key: value / 4 if "batch 4" in key else value for key, value in figures.items()}
    e2e = end_to_end_cells(paths, folders, args.threads)
    figures.update(interleaved({k: run for k, (run, _) in e2e.items()}, max(3, args.rounds // 5),
                               {k: count for k, (_, count) in e2e.items()}))  # fmt: skip
    auto = {}
    for artifact, rows in AUTO_CANDIDATES.items():
        choice = probe(paths[artifact], ("onnxruntime", "openvino"))
        picked = rows[0] if choice.backend == "onnxruntime" else rows[1]
        auto[artifact] = {"picked": choice.backend, "probe_ms": choice.timings_ms,
                          "vs_faster": figures[picked] / min(figures[row] for row in rows)}  # fmt: skip
    return {"ms": figures, "auto": auto}


def report(results: dict, threads: int) -> None:
    print(f"CPU: {cpu_model()} [{' '.join(cpu_features())}], {threads} threads, {IMGSZ}x{IMGSZ} model input unless "
          f"said, OpenVINO {ov.__version__}\n")  # fmt: skip
    print("| row | " + " | ".join(f"{m} ms | {m} x official" for m in results) + " |")
    print("|---|" + "---|---|" * len(results))
    for row in next(iter(results.values()))["ms"]:
        cells = []
        for figures in results.values():
            ms = figures["ms"]
            cells += [f"{ms[row]:.1f}", f"{ms[BASELINE] / ms[row]:.2f}x"] if row in ms else ["-", "-"]
        print(f"| {row} | " + " | ".join(cells) + " |")
    for name, figures in results.items():
        ms = figures["ms"]
        model_call = ms["SDK int8 IR, 480x640 canvas"]
        print(
            f"\n{name}: a 640x480 JPEG end to end / its model-only call: "
            f"{ms['end to end 640x480 folder, one picture per run (stream, batch 1), int8 IR'] / model_call:.2f}x "
            f"streamed one at a time, "
            f"{ms['end to end 640x480, one Detector(path) call each, int8 IR'] / model_call:.2f}x in its own call; "
            f"a 4032x3024 JPEG: {ms['end to end 4032x3024 folder, int8 OpenVINO IR'] / model_call:.2f}x"
        )
        if "NNCF route, OpenVINO" in ms:
            print(
                f"{name}: SDK int8 IR end to end (640x480 folder) / NNCF route model only: "
                f"{ms['NNCF route, OpenVINO'] / ms['end to end 640x480 folder, int8 OpenVINO IR']:.2f}x speed"
            )
        for artifact, auto in figures["auto"].items():
            print(
                f'{name}: backend="auto" on the {artifact} ONNX picks {auto["picked"]} (probe {auto["probe_ms"]}); '
                f"its table time is {auto['vs_faster']:.3f}x the faster runtime's"
            )


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
        folders = {
            "640x480": pictures(work / "small", args.pictures, (640, 480), 0),
            "4032x3024": pictures(work / "phone", max(2, args.pictures // 4), (4032, 3024), 1),
        }
        for name in args.models:
            (work / name).mkdir()
            results[name] = measure(name, work / name, folders, args)
    report(results, args.threads)
    if args.json:
        record = {"cpu": cpu_model(), "features": cpu_features(), "openvino": ov.__version__, "results": results}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
