"""``yolov6-serve``: serve a model on a Triton Inference Server until SIGTERM or SIGINT.

Argument parsing and printing only; the work is :class:`yolov6_sdk.serve.server.Server`. Exit status: 0 after a
shutdown on SIGTERM / SIGINT (requests in flight answered), 1 when the server stopped on its own, 2 for a
usage error (bad option, unusable model, a port in use, the ``serve`` extra missing).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from yolov6_sdk.artifact.spec import BACKENDS
from yolov6_sdk.cli.options import add_device, parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolov6-serve",
        description="Serve a YOLOv6 model on a Triton Inference Server (HTTP, gRPC, Prometheus metrics) with "
        "dynamic batching, until SIGTERM or SIGINT.",
    )
    parser.add_argument("model", metavar="MODEL", help="model file: .onnx, .xml, .engine/.plan or .pt")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: every one)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: --port + 1)")
    parser.add_argument("--metrics-port", type=int, default=None, help="Prometheus metrics port (default: --port + 2)")
    parser.add_argument("--max-batch", type=int, default=8, metavar="N",
                        help="largest batch Triton forms from concurrent requests (default 8)")  # fmt: skip
    parser.add_argument("--max-queue-delay-us", type=int, default=2000, metavar="N",
                        help="how long a request may wait for others to batch with, in us (default 2000)")  # fmt: skip
    parser.add_argument("--instances", type=int, default=1, metavar="N",
                        help="model instances, each with its own detector, running batches in parallel (default 1)")  # fmt: skip
    parser.add_argument("--conf", type=float, default=0.25, help="default score threshold, 0..1 (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.45, help="default NMS IoU threshold, 0..1 (default 0.45)")
    add_device(parser)
    parser.add_argument("--backend", default="auto", choices=("auto", *sorted(BACKENDS)),
                        help="runtime that runs the model (default auto: from the model file's suffix)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse(_parser(), argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("pytriton").setLevel(logging.WARNING)

    from yolov6_sdk.errors import YOLOv6Error
    from yolov6_sdk.serve.server import ServeOptions, Server

    options = ServeOptions(
        model=Path(args.model),
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_batch=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        backend=args.backend,
        device=args.device,
        conf=args.conf,
        iou=args.iou,
    )
    try:
        server = Server(options)
        server.start()
    except YOLOv6Error as exc:
        print(f"yolov6-serve: error: {exc}", file=sys.stderr)
        return 2
    ports = options.ports()
    print(
        f"yolov6-serve: ready: HTTP {args.host}:{ports['HTTP']}, gRPC {args.host}:{ports['gRPC']}, "
        f"metrics http://{args.host}:{ports['metrics']}/metrics (model 'yolov6'); SIGTERM or Ctrl-C stops",
        flush=True,
    )
    return 0 if server.wait() else 1


if __name__ == "__main__":
    raise SystemExit(main())
