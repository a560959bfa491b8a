"""INT8 accuracy of a RepVGG-trained and a RepOpt-trained model: fp32, PTQ and QAT with channel-wise distillation.

For each checkpoint (same model size and training budget), on the generated dataset's validation split:

* fp32: ``yolov6-build --precision fp32`` (ONNX Runtime), scored by ``yolov6-eval``;
* PTQ INT8: ``yolov6-build --precision int8`` (MinMax calibration on training images, the SDK's Q/DQ rules);
* QAT+CWD INT8: ``yolov6-train --qat --teacher CKPT`` (fake quantisation with the PTQ placement and initial ranges,
  channel-wise distillation of the neck outputs from the fp32 checkpoint), then ``yolov6-build --qat``.

It writes ``benchmarks/quantization.md`` with mAP50-95, the drops, the layers left in float and the commands that
made each row. A missing RepOpt checkpoint is reported as missing. ``--budget EPOCHS`` first trains both models
from scratch for that many epochs each (RepOpt: hyper-search, then the RepOpt stage, the same epochs).

    python benchmarks/quantization.py --repvgg weights/yolov6n-shapes.pt --repopt runs/repopt/best.pt --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from yolov6_sdk.evaluate import EvalSet, load_eval_set
from yolov6_sdk.export import calibration, qdq
from yolov6_sdk.export.build import build
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.machine import machine_info
from yolov6_sdk.scoring import evaluate_artifact

HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    """One model's figures (mAP50-95 as a fraction) and the commands that made them."""

    name: str
    checkpoint: Path | None
    maps: dict[str, float] = field(default_factory=dict)
    float_layers: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    note: str = ""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repvgg", type=Path, default=Path("weights/yolov6n-shapes.pt"), help="RepVGG-trained checkpoint")
    p.add_argument("--repopt", type=Path, help="RepOpt-trained checkpoint of the same size and budget")
    p.add_argument("--budget", type=int, metavar="EPOCHS", help="train both models first, EPOCHS each")
    p.add_argument("--data", type=Path, default=Path("data/shapes"), help="COCO-layout dataset (default data/shapes)")
    p.add_argument("--imgsz", type=int, default=160, help="input size (default 160, the demo model's)")
    p.add_argument("--target", default="onnxruntime-cpu", choices=("onnxruntime-cpu", "tensorrt"),
                   help="quantisation target of PTQ and QAT (default onnxruntime-cpu: uint8 activations)")  # fmt: skip
    p.add_argument("--calib-size", type=int, default=128, help="PTQ / QAT calibration images (default 128)")
    p.add_argument("--qat-epochs", type=int, default=1, help="QAT fine-tuning epochs (default 1)")
    p.add_argument("--qat-images", type=int, default=400, help="training images QAT sees per epoch (default 400)")
    p.add_argument("--qat-batch", type=int, default=16, help="QAT batch (default 16)")
    p.add_argument("--qat-lr0", type=float, default=1e-5, help="QAT lr0 before batch scaling (default 1e-5)")
    p.add_argument("--qat-mosaic", type=float, default=0.0, help="QAT mosaic probability (default 0: fine-tuning)")
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads (default 1)")
    p.add_argument("--work", type=Path, default=Path("runs/quantization"), help="work folder")
    p.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line printed under the table, e.g. how the given checkpoints were trained (repeatable)",
    )
    p.add_argument("--out", type=Path, default=HERE / "quantization.md", help="report (default %(default)s)")
    return p.parse_args(argv)


def _run(command: list[str], row: Row | None) -> None:
    """Run a CLI command (logged in ``row``); a failure stops the benchmark with the command's output."""
    if row is not None:
        row.commands.append(shlex.join(command))
    print("$", shlex.join(command), flush=True)
    script = Path(sys.executable).parent / command[0]  # the console script of this environment
    done = subprocess.run([str(script), *command[1:]], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _subset(data: Path, images: int, dest: Path) -> Path:
    """A COCO-layout view of ``data`` with ``images`` evenly chosen training images (symlinks) and its val split."""
    train = json.loads((data / "annotations" / "instances_train.json").read_text())
    chosen = calibration.select_evenly(sorted(train["images"], key=lambda i: i["file_name"]), images)
    ids = {image["id"] for image in chosen}
    subset = {**train, "images": chosen, "annotations": [a for a in train["annotations"] if a["image_id"] in ids]}
    (dest / "images" / "train").mkdir(parents=True, exist_ok=True)
    (dest / "annotations").mkdir(exist_ok=True)
    for image in chosen:
        link = dest / "images" / "train" / image["file_name"]
        if not link.exists():
            link.symlink_to((data / "images" / "train" / image["file_name"]).resolve())
    if not (dest / "images" / "val").exists():
        (dest / "images" / "val").symlink_to((data / "images" / "val").resolve(), target_is_directory=True)
    with atomic_path(dest / "annotations" / "instances_train.json") as tmp:
        tmp.write_text(json.dumps(subset))
    with atomic_path(dest / "annotations" / "instances_val.json") as tmp:
        tmp.write_text((data / "annotations" / "instances_val.json").read_text())
    return dest


# the short-schedule demo recipe (README: demo weights) without its size, length and threads
DEMO_RECIPE = ["--batch", "16", "--workers", "1", "--warmup-epochs", "1", "--min-warmup-iters", "0", "--ema-decay",
               "0.999", "--ema-tau", "200", "--eval-interval", "2", "--nominal-batch", "16", "--lr0", "0.02",
               "--mosaic", "0", "--scale", "0.3", "--translate", "0.1"]  # fmt: skip


def _train(args: argparse.Namespace) -> tuple[Path, Path]:
    """Train the RepVGG and the RepOpt model from scratch with the same budget and the demo recipe (the same
    deployed network, paper-line yolov6n); returns their best.pt. The hyper-search run comes on top, as in the
    official RepOpt recipe."""
    common = ["--data", str(args.data), "--epochs", str(args.budget), "--imgsz", str(args.imgsz), "--device", "cpu",
              "--threads", str(args.threads), *DEMO_RECIPE]  # fmt: skip
    repvgg, hyper, repopt = (args.work / name for name in ("train-repvgg", "train-hs", "train-repopt"))
    _run(["yolov6-train", "--model", "yolov6n-v1", *common, "-o", str(repvgg)], None)
    _run(["yolov6-train", "--hyper-search", "--model", "yolov6n-hs", *common, "-o", str(hyper)], None)
    _run(["yolov6-train", "--repopt-scales", str(hyper / "last.pt"), "--model", "yolov6n-repopt", *common,
          "-o", str(repopt)], None)  # fmt: skip
    return repvgg / "best.pt", repopt / "best.pt"


def _float_layers(artifact: Path) -> str:
    """What stays float in an int8 artifact: the head's decode and the ReLUs left as float nodes (module paths)."""
    model = onnx.load(str(artifact))
    split = qdq.split_head(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    relus = [
        qdq.module_path(n.name)
        for n in model.graph.node
        if n.op_type == "Relu" and n.input[0] in producers and producers[n.input[0]].op_type == "DequantizeLinear"
    ]
    parts = ["head decode" if split.tail else "nothing"]
    if relus and len(relus) <= 6:
        parts.append("ReLU " + ", ".join(f"`{r}`" for r in relus))
    elif relus:
        parts.append(f"{len(relus)} ReLUs (TensorRT fuses them)")
    return "; ".join(parts)


def _evaluate(artifact: Path, args: argparse.Namespace, eval_set: EvalSet, row: Row, key: str) -> None:
    row.commands.append(shlex.join(["yolov6-eval", "--model", str(artifact), "--data", str(args.data), "--imgsz",
                                    str(args.imgsz), "--backend", "onnxruntime"]))  # fmt: skip
    metrics = evaluate_artifact(artifact, eval_set, imgsz=args.imgsz, backend="onnxruntime")
    row.maps[key] = float(metrics["mAP50-95"])
    print(f"  {row.name} {key}: mAP50-95 {row.maps[key]:.2f}", flush=True)


def _measure(row: Row, args: argparse.Namespace, eval_set: EvalSet, qat_data: Path, calib_dir: Path) -> None:
    """fp32, PTQ and QAT+CWD mAP50-95 of ``row.checkpoint``."""
    out = args.work / row.name
    ckpt = str(row.checkpoint)
    common = {"output": out, "backend": "onnxruntime", "imgsz": args.imgsz, "force": True}
    row.commands.append(f"yolov6-build --weights {ckpt} --precision fp32 --backend onnxruntime --imgsz {args.imgsz} "
                        f"-o {out} --force")  # fmt: skip
    _evaluate(build(weights=ckpt, precision="fp32", **common).artifact, args, eval_set, row, "fp32")
    row.commands.append(f"yolov6-build --weights {ckpt} --precision int8 --calib {calib_dir} --calib-size "
                        f"{args.calib_size} --backend onnxruntime --imgsz {args.imgsz} -o {out} --force")  # fmt: skip
    ptq = build(weights=ckpt, precision="int8", calib=calib_dir, calib_size=args.calib_size, **common).artifact
    _evaluate(ptq, args, eval_set, row, "ptq")
    row.float_layers["ptq"] = _float_layers(ptq)
    qat_run = out / "qat"
    shutil.rmtree(qat_run, ignore_errors=True)  # this script's own run folder from an earlier run
    _run(["yolov6-train", "--qat", "--teacher", ckpt, "--data", str(qat_data), "--epochs", str(args.qat_epochs),
          "--imgsz", str(args.imgsz), "--batch", str(args.qat_batch), "--qat-target", args.target,
          "--qat-calib", str(calib_dir), "--lr0", str(args.qat_lr0), "--optimizer", "adamw", "--warmup-epochs", "0",
          "--min-warmup-iters", "0", "--ema-tau", "20", "--mosaic", str(args.qat_mosaic), "--workers", "0",
          "--device", "cpu", "--threads", str(args.threads), "-o", str(qat_run)], row)  # fmt: skip
    row.commands.append(f"yolov6-build --qat {qat_run / 'last.pt'} --backend onnxruntime -o {out} --force")
    qat = build(qat=qat_run / "last.pt", **common).artifact
    _evaluate(qat, args, eval_set, row, "qat")
    row.float_layers["qat"] = _float_layers(qat)


def _cell(row: Row, key: str) -> str:
    return f"{row.maps[key]:.4f}" if key in row.maps else "-"


def _change(row: Row, key: str) -> str:
    return f"{row.maps[key] - row.maps['fp32']:+.4f}" if key in row.maps else "-"


def _report(rows: list[Row], args: argparse.Namespace, seconds: float) -> str:
    lines = [
        "# INT8 accuracy: RepVGG vs RepOpt, PTQ vs QAT + channel-wise distillation",
        "",
        f"Dataset `{args.data}` (validation split), input {args.imgsz}x{args.imgsz}, ONNX Runtime CPU, target "
        f"`{args.target}` (int8 symmetric per-channel weights; activations "
        f"{'uint8 asymmetric' if args.target == 'onnxruntime-cpu' else 'int8 symmetric'}, per tensor). PTQ: MinMax "
        f"on {args.calib_size} training images. QAT: {args.qat_epochs} epoch(s) on {args.qat_images} training images, "
        f"batch {args.qat_batch}, AdamW lr0 {args.qat_lr0}, mosaic {args.qat_mosaic}, CWD weight 10, temperature 1, starting from the PTQ "
        "ranges. mAP50-95 as a fraction (0.01 = one point); change = INT8 minus fp32 (negative: INT8 lost accuracy).",
        "",
        "| model | fp32 | PTQ INT8 | PTQ change | QAT+CWD INT8 | QAT change | left in float (PTQ / QAT) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.note:
            lines.append(f"| {row.name} | - | - | - | - | - | {row.note} |")
            continue
        floats = row.float_layers.get("ptq", "-")
        floats += "" if row.float_layers.get("qat") == row.float_layers.get("ptq") else f" / {row.float_layers['qat']}"
        lines.append(f"| {row.name} (`{row.checkpoint}`) | {_cell(row, 'fp32')} | {_cell(row, 'ptq')} | "
                     f"{_change(row, 'ptq')} | {_cell(row, 'qat')} | {_change(row, 'qat')} | {floats} |")  # fmt: skip
    lines += ["", *args.note, "", "## Commands", ""] if args.note else ["", "## Commands", ""]
    for row in rows:
        if row.commands:
            lines += [f"{row.name}:", "", "```", *row.commands, "```", ""]
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    machine = ", ".join(f"{key} {value}" for key, value in machine_info().items())
    lines += [f"Made by `python benchmarks/quantization.py {argv}` in {seconds / 60:.0f} min on {machine}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.budget:
        args.repvgg, args.repopt = _train(args)
    qat_data = _subset(args.data, args.qat_images, args.work / "qat-data")
    calib_dir = args.data / "images" / "train"
    eval_set = load_eval_set(args.data, "val")
    rows = [Row("RepVGG", args.repvgg), Row("RepOpt", args.repopt)]
    for row in rows:
        if row.checkpoint is None or not row.checkpoint.is_file():
            missing = f"{row.checkpoint} does not exist" if row.checkpoint else "none given"
            row.note = f"no {row.name}-trained checkpoint ({missing}): not measured"
            continue
        _measure(row, args, eval_set, qat_data, calib_dir)
    report = _report(rows, args, time.time() - started)
    with atomic_path(args.out) as tmp:
        tmp.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
