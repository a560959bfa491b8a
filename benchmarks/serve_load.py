"""Load test of ``yolov6-serve`` on localhost: concurrent clients, throughput, latency, batches, and no wrong answers.

Starts ``yolov6-serve`` on 127.0.0.1 with an INT8 yolov6n at 640 (built here with random weights unless
``--model`` names one), sends 640x480 JPEGs from 1, 4 and 16 concurrent HTTP clients for ``--seconds`` each
(at most ``--max-requests`` per level), and checks every answer against a direct ``Detector`` call on the same
picture made beforehand: same number of boxes, boxes within 0.01 px, same classes (a lost, duplicated or
swapped answer fails the check). Beside it, in the same run, the Detector's own folder throughput on the same
artifact (``Detector(folder)``, its default batching) is the reference for the serving throughput.

Reports per level: requests, images/s, p50 / p99 latency (ms), mean batch Triton formed (from its
``nv_inference_count`` / ``nv_inference_exec_count`` metrics), wrong and lost answers; and the batch sizes the
model ran over the whole run (the server's log at shutdown). Bounded: localhost only, ``--seconds`` and
``--max-requests`` per level, a timeout per request.

    python benchmarks/serve_load.py --seconds 30 --out benchmarks/serve.md
    python benchmarks/serve_load.py --clients 1 4 --seconds 3 --max-requests 40 --pictures 8   # a quick check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from yolov6_sdk import Detector
from yolov6_sdk.export.build import build
from yolov6_sdk.machine import machine_info
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.serve import Client
from yolov6_sdk.training.datagen import write_calibration_images

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from serve_helpers import ServerProcess, free_port_block  # noqa: E402

REQUEST_TIMEOUT_S = 60.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="artifact to serve (default: build an INT8 yolov6n at 640)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each level (default 20)")
    parser.add_argument("--max-requests", type=int, default=5000, help="requests per level at most (default 5000)")
    parser.add_argument("--pictures", type=int, default=32, help="distinct 640x480 JPEGs (default 32)")
    parser.add_argument("--max-batch", type=int, default=16, help="yolov6-serve --max-batch (default 16)")
    parser.add_argument("--queue-delay-us", type=int, default=2000, help="yolov6-serve --max-queue-delay-us")
    parser.add_argument("--instances", type=int, default=1, help="yolov6-serve --instances (default 1)")
    parser.add_argument("--work", type=Path, help="folder for the artifact, pictures and log (default: temporary)")
    parser.add_argument("--out", type=Path, help="markdown report to write (default: print only)")
    return parser.parse_args(argv)


def int8_model(work: Path) -> Path:
    calib = work / "calib"
    write_calibration_images(calib, 16, seed=0)
    options = {"random_weights": True, "model": "yolov6n", "imgsz": 640, "backend": "onnxruntime"}
    return build(precision="int8", calib=calib, calib_size=16, output=work / "engines", **options).artifact


def write_pictures(folder: Path, count: int) -> list[Path]:
    """``count`` seeded 640x480 JPEGs of shapes on noise (different content, so a swapped answer shows)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        for _ in range(6):
            x, y = int(rng.integers(0, 560)), int(rng.integers(0, 400))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.rectangle(image, (x, y), (x + int(rng.integers(20, 80)), y + int(rng.integers(20, 80))), colour, -1)
        path = folder / f"{index:04d}.jpg"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def same(served: Results, expected: Results) -> bool:
    return (
        served.orig_shape == expected.orig_shape
        and len(served) == len(expected)
        and np.allclose(served.boxes.xyxy, expected.boxes.xyxy, atol=1e-2)
        and np.array_equal(served.class_ids, expected.class_ids)
    )


def folder_throughput(model: Path, folder: Path, count: int) -> float:
    """Images/s of ``Detector(model)(folder)`` (the Detector's own batching), after one warm-up pass."""
    with Detector(model) as detector:
        detector(folder)
        start = time.perf_counter()
        detector(folder)
        return count / (time.perf_counter() - start)


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + '{model="yolov6"'))


def run_level(server: ServerProcess, clients: int, seconds: float, max_requests: int,
              payloads: list[bytes], expected: list[Results]) -> dict[str, float]:  # fmt: skip
    """``clients`` threads, each with its own connection, sending until the time or request budget is spent."""
    latencies: list[float] = []
    counts = {"wrong": 0, "lost": 0, "sent": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with Client(server.http, timeout_s=REQUEST_TIMEOUT_S) as client:
            while time.monotonic() < deadline:
                with lock:
                    if counts["sent"] >= max_requests:
                        return
                    counts["sent"] += 1
                index = int(rng.integers(len(payloads)))
                start = time.perf_counter()
                try:
                    answer = client(payloads[index])
                except Exception:  # counted as lost; the table reports it
                    with lock:
                        counts["lost"] += 1
                    continue
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    counts["wrong"] += not same(answer, expected[index])

    before = (metric(server.port + 2, "nv_inference_count"), metric(server.port + 2, "nv_inference_exec_count"))
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 2 * REQUEST_TIMEOUT_S)
    wall = time.perf_counter() - started
    requests = metric(server.port + 2, "nv_inference_count") - before[0]
    runs = metric(server.port + 2, "nv_inference_exec_count") - before[1]
    ms = sorted(t * 1e3 for t in latencies) or [float("nan")]
    return {
        "clients": clients, "requests": counts["sent"], "images/s": len(latencies) / wall,
        "p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "mean batch": requests / runs if runs else float("nan"), "wrong": counts["wrong"], "lost": counts["lost"],
    }  # fmt: skip


def report(
    rows: list[dict[str, float]], reference: float, model: Path, args: argparse.Namespace, batches: str, boxes: str
) -> str:
    machine = machine_info()
    lines = [
        "# yolov6-serve load test (localhost)",
        "",
        f"Command: `python benchmarks/serve_load.py {' '.join(sys.argv[1:])}`",
        f"Model: `{model.name}`; server: `--max-batch {args.max_batch} --max-queue-delay-us {args.queue_delay_us} "
        f"--instances {args.instances}`; {args.pictures} distinct 640x480 JPEGs.",
        f"Machine: {machine['cpu']}; load when started: {machine.get('load average at start', 'n/a')}.",
        f"Reference: `Detector(folder)` on the same artifact: {reference:.1f} images/s. Boxes per picture in the "
        f"direct Detector answers every response is checked against: {boxes}.",
        "",
        "| clients | requests | images/s | vs Detector | p50 ms | p99 ms | p99/p50 | mean batch | wrong | lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['clients']} | {row['requests']} | {row['images/s']:.1f} | {row['images/s'] / reference:.2f}x | "
            f"{row['p50']:.1f} | {row['p99']:.1f} | {row['p99'] / row['p50']:.2f} | {row['mean batch']:.2f} | "
            f"{row['wrong']} | {row['lost']} |"
        )
    lines += ["", f"Batch sizes the model ran (size: batches), whole run: {batches}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        model = args.model or int8_model(work)
        pictures = write_pictures(work / "pictures", args.pictures)
        payloads = [path.read_bytes() for path in pictures]
        with Detector(model) as detector:
            expected = [detector(path)[0] for path in pictures]
        reference = folder_throughput(model, work / "pictures", len(pictures))
        server = ServerProcess(model, free_port_block(), work / "server.log",
                               "--max-batch", str(args.max_batch), "--max-queue-delay-us", str(args.queue_delay_us),
                               "--instances", str(args.instances))  # fmt: skip
        try:
            server.wait_ready()
            rows = [run_level(server, n, args.seconds, args.max_requests, payloads, expected) for n in args.clients]
        finally:
            code = server.stop()
        batches = next((line.split("batch sizes run: ")[1] for line in server.log().splitlines()
                        if "batch sizes run: " in line), "n/a")  # fmt: skip
        counts = sorted(len(result) for result in expected)
        text = report(rows, reference, model, args, batches, f"{counts[0]}..{counts[-1]}")
    print(text)
    if args.out:
        args.out.write_text(text)
    failed = sum(row["wrong"] + row["lost"] for row in rows)
    return 1 if failed or code != 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
