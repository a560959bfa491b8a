"""Training throughput on the CPU: this checkout against an earlier commit, side by side in one run.

Each variant trains yolov6n on the same generated images for two epochs in its own process (one data-loading
worker, ``--threads`` torch threads) and reports images per second over each full epoch, data loading, the
assigner, the loss, the optimiser and the EMA included (the epoch-end evaluation excluded). The first epoch
decodes every image from disk; the second is what the rest of a run looks like (decoded images cached in
memory where the code does that). Variants alternate, ``--repeats`` times, so load from other processes falls
on both alike; the table gives medians. The earlier commit is checked out into a temporary git worktree.

    python benchmarks/bench_train_cpu.py --baseline ce2c3bb --repeats 2   # writes benchmarks/train_speed_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Runs inside each variant's process: argv = data, imgsz, batch, threads, workers
_CHILD = r"""
import json, sys, tempfile, time
import torch
data, imgsz, batch, threads, workers = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(threads)
from yolov6_sdk.training.augment import AugmentConfig
from yolov6_sdk.training.trainer import TrainConfig, Trainer
config = TrainConfig(model="yolov6n", data=data, epochs=10, batch=batch, imgsz=imgsz, workers=workers,
                     device="cpu", out=tempfile.mkdtemp(), min_warmup_iters=0, warmup_epochs=1, ema_tau=200,
                     nominal_batch=batch, lr0=0.02, augment=AugmentConfig(mosaic=0, scale=0.3))
trainer = Trainer(config)
rates = []
for epoch in range(2):
    started = time.perf_counter()
    trainer._train_epoch(epoch)
    rates.append(len(trainer.dataset) / (time.perf_counter() - started))
precision = getattr(trainer, "precision", None)
print(json.dumps({"rates": rates, "precision": precision.name if precision else "float32"}))
"""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="ce2c3bb", help="git revision to compare against (default ce2c3bb)")
    parser.add_argument("--images", type=int, default=400, help="generated training images (default 400)")
    parser.add_argument("--data-imgsz", type=int, nargs=2, default=(256, 320), metavar=("MIN", "MAX"),
                        help="generated image sides in px (default 256 320, the demo set's)")  # fmt: skip
    parser.add_argument("--imgsz", type=int, default=128, help="training size (default 128)")
    parser.add_argument("--batch", type=int, default=8, help="batch (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="data-loading processes (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating passes over both variants (default 2)")
    parser.add_argument("--out", type=Path, default=HERE / "train_speed_cpu.md", help="markdown report to write")
    return parser.parse_args(argv)


def _baseline_tree(revision: str, folder: Path) -> Path:
    """Check ``revision`` out under ``folder`` and make ``yolov6_sdk.training`` importable from it."""
    tree = folder / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision], check=True,
                   capture_output=True)  # fmt: skip
    (tree / "yolov6_sdk" / "training").symlink_to(tree / "training", target_is_directory=True)
    return tree


def _run_variant(tree: Path | None, args: argparse.Namespace, data: Path) -> dict:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)  # ahead of the installed checkout
    argv = [str(data), str(args.imgsz), str(args.batch), str(args.threads), str(args.workers)]
    done = subprocess.run([sys.executable, "-c", _CHILD, *argv], env=env, capture_output=True, text=True,
                          check=False, cwd=tree or ROOT)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"variant {'baseline' if tree else 'current'} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    from yolov6_sdk.machine import machine_info
    from yolov6_sdk.training.datagen import generate_dataset
    from yolov6_sdk.training.precision import cpu_has_native_bf16

    machine, isa, bf16 = machine_info(), torch.backends.cpu.get_cpu_capability(), cpu_has_native_bf16()
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        data = generate_dataset(work / "data", args.images, 1, tuple(args.data_imgsz), seed=0)
        tree = _baseline_tree(args.baseline, work)
        try:
            results: dict[str, list[dict]] = {"baseline": [], "current": []}
            for _ in range(args.repeats):
                results["baseline"].append(_run_variant(tree, args, data))
                results["current"].append(_run_variant(None, args, data))
                print(results["baseline"][-1], results["current"][-1], flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    lines = [
        "# Training throughput on the CPU",
        "",
        f"Machine: {machine['cpu']}, torch {machine['torch'].split(' ')[0]}, CPU capability "
        f"{isa}, native bfloat16: {'yes' if bf16 else 'no'}; {args.threads} torch threads, "
        f"{args.workers} data worker(s); load average at start {machine.get('load average at start', '?')}.",
        f"yolov6n, {args.imgsz} px, batch {args.batch}, {args.images} generated images of "
        f"{args.data_imgsz[0]}-{args.data_imgsz[1]} px, no mosaic; images/s over a full epoch (data loading, "
        f"assigner, loss, optimiser and EMA included), median of {args.repeats} alternating passes.",
        "",
        f"    python benchmarks/bench_train_cpu.py --baseline {args.baseline} --repeats {args.repeats}",
        "",
        "| code | step precision | epoch 1 (decode from disk) img/s | epoch 2 img/s | speed-up (epoch 2) |",
        "|---|---|---|---|---|",
    ]
    base = statistics.median(r["rates"][1] for r in results["baseline"])
    for name, runs in results.items():
        first = statistics.median(r["rates"][0] for r in runs)
        second = statistics.median(r["rates"][1] for r in runs)
        label = f"{args.baseline} (before)" if name == "baseline" else "this checkout"
        lines.append(f"| {label} | {runs[0]['precision']} | {first:.1f} | {second:.1f} | {second / base:.2f}x |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
