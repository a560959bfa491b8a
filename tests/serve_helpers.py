"""Starting and stopping a real ``yolov6-serve`` process on localhost for the serving tests and benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from yolov6_sdk.serve.client import Client

START_TIMEOUT_S = 180.0


def free_port_block(count: int = 3) -> int:
    """A port ``p`` with ``p .. p + count - 1`` free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no block of free ports on 127.0.0.1")


class ServerProcess:
    """``python -m yolov6_sdk.cli.serve MODEL --host 127.0.0.1 --port PORT ARGS...``, its log in ``log_path``."""

    def __init__(self, model: Path, port: int, log_path: Path, *args: str) -> None:
        self.port, self.log_path = port, log_path
        command = [sys.executable, "-m", "yolov6_sdk.cli.serve", str(model), "--host", "127.0.0.1",
                   "--port", str(port), *args]  # fmt: skip
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self.http = f"http://127.0.0.1:{port}"
        self.grpc = f"grpc://127.0.0.1:{port + 1}"

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> ServerProcess:
        deadline = time.monotonic() + timeout_s
        with Client(self.http, timeout_s=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
                if client.is_ready():
                    return self
                time.sleep(0.5)
        self.kill()
        raise TimeoutError(f"server not ready after {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout_s: float = 120.0) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()
