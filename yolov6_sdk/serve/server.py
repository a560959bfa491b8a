"""``yolov6-serve``: the Detector inside a Triton Inference Server (pytriton), until SIGTERM or SIGINT.

:class:`ServeOptions` holds every setting once; :class:`Server` checks the ports, prepares the Python-backend
stub (:mod:`.interpreter`), starts a reaper that removes what the server leaves if it is killed
(:mod:`.reaper`), opens one Detector per model instance, binds them as the Triton model ``yolov6`` with
dynamic batching, and starts Triton (HTTP, gRPC and Prometheus metrics on three ports). Health and readiness
are Triton's: ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/yolov6/ready``; metrics at
``http://HOST:METRICS_PORT/metrics``.

Shutdown: SIGTERM or SIGINT stops accepting requests, lets Triton answer the requests in flight (up to
``exit_timeout_s``), then stops the model instances and removes the workspace.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.serve.interpreter import prepare_stub_environment
from yolov6_sdk.serve.model import DetectorModel
from yolov6_sdk.serve.protocol import IMAGE_INPUT, MODEL_NAME, PIXELS_INPUT

LOGGER = logging.getLogger(__name__)

WORKSPACE_ROOT = Path(tempfile.gettempdir()) / "yolov6-serve"
# pytriton moves tensors between Triton and this process in shared memory by default, which cannot hold a
# zero-size tensor (an empty picture would fail its whole batch with a traceback); its other transport copies
# them through its socket, for every size.
NO_TENSOR_STORE = "PYTRITON_NO_TENSORSTORE"


@dataclass(frozen=True)
class ServeOptions:
    """Settings of one server. Ports: HTTP ``port``, gRPC ``port + 1``, metrics ``port + 2`` unless given."""

    model: Path
    host: str = "0.0.0.0"
    port: int = 8000
    grpc_port: int | None = None
    metrics_port: int | None = None
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    backend: str = "auto"
    device: str = "auto"
    conf: float = 0.25
    iou: float = 0.45
    exit_timeout_s: int = 30

    def ports(self) -> dict[str, int]:
        """``{"HTTP": ..., "gRPC": ..., "metrics": ...}``."""
        return {
            "HTTP": self.port,
            "gRPC": self.grpc_port if self.grpc_port is not None else self.port + 1,
            "metrics": self.metrics_port if self.metrics_port is not None else self.port + 2,
        }

    def check(self) -> None:
        """Raises ConfigError naming the first bad setting and what it takes."""
        for name, low, high in (("max_batch", 1, 1024), ("max_queue_delay_us", 0, 10_000_000),
                                ("instances", 1, 64), ("exit_timeout_s", 1, 3600)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an int in {low}..{high}, got {value!r}")
        ports = self.ports()
        for label, port in ports.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ConfigError(f"the {label} port must be in 1..65535, got {port!r}")
        if len(set(ports.values())) != 3:
            raise ConfigError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")
        if not self.model.is_file():
            raise ConfigError(f"model {str(self.model)!r} does not exist; pass a built artifact (yolov6-build)")


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Raises ConfigError when another program listens on one of ``ports`` at ``host``."""
    for label, port in ports.items():
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve on {host}:{port} ({label}): {exc.strerror or exc}; another program uses that "
                    f"port: stop it, or pass other ports (--port, --grpc-port, --metrics-port)"
                ) from None


class Server:
    """A running Triton server with the ``yolov6`` model; ``start()``, then ``wait()`` or ``stop()``."""

    def __init__(self, options: ServeOptions) -> None:
        options.check()
        self.options = options
        self.models: list[DetectorModel] = []
        self.workspace = WORKSPACE_ROOT / f"{os.getpid()}-{options.port}"
        self._triton = None
        self._stop_requested = threading.Event()
        self._previous_handlers: dict[int, Any] = {}

    def start(self) -> None:
        """Open the detectors, start Triton and return once the model is ready.

        Raises:
            ConfigError: a port in use, or a setting the artifact cannot serve (e.g. ``max_batch`` beyond its
                batch profile).
            MissingDependencyError: the ``serve`` extra is missing, or this Python has no shared libpython.
        """
        check_ports_free(self.options.host, self.options.ports())
        self._catch_signals()
        try:
            self._start_triton()
        except BaseException:
            self.stop()
            raise
        LOGGER.info("serving %s as %r on %s, ports %s", self.options.model, MODEL_NAME, self.options.host,
                    self.options.ports())  # fmt: skip

    def _start_triton(self) -> None:
        prepare_stub_environment()
        os.environ[NO_TENSOR_STORE] = "1"
        pytriton_triton = require("pytriton.triton")
        model_config = require("pytriton.model_config")
        self.models = [DetectorModel(self._open_detector()) for _ in range(self.options.instances)]
        WORKSPACE_ROOT.mkdir(parents=True, exist_ok=True)
        start_reaper(self.workspace)
        self._triton = pytriton_triton.Triton(config=self._triton_config(pytriton_triton), workspace=self.workspace)
        self._triton.bind(
            model_name=MODEL_NAME,
            infer_func=self.models,
            inputs=_input_tensors(model_config),
            outputs=_output_tensors(model_config),
            config=model_config.ModelConfig(
                max_batch_size=self.options.max_batch,
                batcher=model_config.DynamicBatcher(max_queue_delay_microseconds=self.options.max_queue_delay_us),
            ),
            strict=False,
        )
        self._triton.run()

    def _open_detector(self) -> Detector:
        batch = self.options.max_batch if self.options.max_batch > 1 else None
        try:
            detector = Detector(self.options.model, device=self.options.device, backend=self.options.backend,
                                conf=self.options.conf, iou=self.options.iou, batch=batch)  # fmt: skip
        except ConfigError as exc:
            if not str(exc).startswith("batch must be"):
                raise
            raise ConfigError(
                f"--max-batch {self.options.max_batch} is more than {self.options.model} serves: {exc}; pass a "
                "--max-batch in that range, or build the model with a larger batch (yolov6-build --batch 1 N)"
            ) from None
        detector.warmup()
        return detector

    def _triton_config(self, pytriton_triton):  # noqa: ANN001, ANN202 - pytriton types are optional imports
        ports = self.options.ports()
        return pytriton_triton.TritonConfig(
            http_address=self.options.host,
            http_port=ports["HTTP"],
            grpc_address=self.options.host,
            grpc_port=ports["gRPC"],
            metrics_address=self.options.host,
            metrics_port=ports["metrics"],
            allow_gpu_metrics=False,
            exit_timeout_secs=self.options.exit_timeout_s,
            log_verbose=0,
        )

    def _catch_signals(self) -> None:
        """From now on SIGTERM and SIGINT ask :meth:`wait` to stop (main thread only: Python's rule)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def wait(self) -> bool:
        """Serve until SIGTERM or SIGINT (caught from :meth:`start` on, in the main thread), then :meth:`stop`.

        Returns:
            True after a stop on a signal, False when Triton stopped on its own.
        """
        try:
            while not self._stop_requested.wait(timeout=1.0):
                if self._triton is None or not self._triton.is_alive():
                    LOGGER.error("the Triton server stopped on its own; see its log above")
                    break
        finally:
            self.stop()
        return self._stop_requested.is_set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        LOGGER.info("%s received: answering the requests in flight, then stopping", signal.Signals(signum).name)
        self._stop_requested.set()

    def stop(self) -> None:
        """Stop Triton (in-flight requests answered first), close the detectors, remove the workspace."""
        if self._triton is not None:
            self._triton.stop()
            self._triton = None
        for index, model in enumerate(self.models):
            sizes = ", ".join(f"{size}: {count}" for size, count in sorted(model.batch_sizes.items()))
            LOGGER.info("instance %d: batch sizes run: %s", index, sizes or "none")
            model.detector.close()
        self.models = []
        while self._previous_handlers:
            signal.signal(*self._previous_handlers.popitem())

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_reaper(workspace: Path) -> subprocess.Popen:
    """Start :mod:`.reaper` watching this process: it removes ``workspace`` and the server's shared memory and
    stops what Triton left running, once this process ends, however it ends (SIGKILL included)."""
    command = [sys.executable, "-m", "yolov6_sdk.serve.reaper", str(os.getpid()), str(workspace)]
    return subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)


def _input_tensors(model_config) -> list:  # noqa: ANN001 - pytriton's module, imported lazily
    return [
        model_config.Tensor(name=IMAGE_INPUT, dtype=np.bytes_, shape=(1,), optional=True),
        model_config.Tensor(name=PIXELS_INPUT, dtype=np.uint8, shape=(-1, -1, 3), optional=True),
    ]


def _output_tensors(model_config) -> list:  # noqa: ANN001 - pytriton's module, imported lazily
    shapes = {"num_dets": (1,), "boxes": (-1, 4), "scores": (-1,), "class_ids": (-1,), "names": (-1,), "orig_shape": (2,),
              "error": (1,)}  # fmt: skip
    dtypes = {"num_dets": np.int32, "boxes": np.float32, "scores": np.float32, "class_ids": np.int32, "names": np.bytes_,
              "orig_shape": np.int32, "error": np.bytes_}  # fmt: skip
    return [model_config.Tensor(name=name, dtype=dtypes[name], shape=shape) for name, shape in shapes.items()]
