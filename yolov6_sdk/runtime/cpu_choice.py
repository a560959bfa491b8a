"""The CPU runtime that wins on this machine for one ONNX artifact, chosen by a short timed probe.

Neither ONNX Runtime nor OpenVINO is faster everywhere: on Intel CPUs with AMX OpenVINO runs the SDK's int8
graphs about twice as fast, on AMD CPUs with AVX2 only it can be slower. :func:`probe` loads the artifact in
each candidate runtime and times interleaved batch-1 runs on a gray image; the faster median wins.

The choice is recorded in the artifact's sidecar (``extra["cpu_runtime"]``: the backend, this CPU's
:func:`~yolov6_sdk.machine.cpu_identity` and the timings), by ``yolov6-build`` after a build and by the first
``Detector(backend="auto")`` on a CPU the record does not name; the artifact itself is not touched. An
artifact in a read-only folder is probed once per process; an ONNX file without a sidecar (not built by
``yolov6-build``) is not probed and runs in ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk.artifact.sidecar import read_sidecar, sidecar_path, write_sidecar
from yolov6_sdk.errors import YOLOv6Error
from yolov6_sdk.machine import cpu_identity
from yolov6_sdk.runtime.backends.registry import backend_class, parse_device

LOGGER = logging.getLogger(__name__)

RECORD_KEY = "cpu_runtime"
WARMUP_RUNS = 2
TIMED_ROUNDS = 7  # interleaved rounds: one run of each candidate per round
SETTLE_S = 0.05  # pause before each timed run: a runtime's threads spin a while after a run and slow the next
# runtime's run by up to 1.7x (two ONNX Runtime sessions back to back: 90 ms each; 50 ms apart: 52 ms, as alone)

_probed: dict[tuple[str, int, int, str], CpuChoice] = {}  # (path, size, mtime_ns, cpu) -> choice, this process


@dataclass(frozen=True)
class CpuChoice:
    """The runtime chosen for an artifact on one CPU.

    Attributes:
        backend: the backend name, e.g. "openvino".
        cpu: :func:`~yolov6_sdk.machine.cpu_identity` of the CPU measured.
        timings_ms: median batch-1 model-only milliseconds per candidate backend.
    """

    backend: str
    cpu: str
    timings_ms: dict[str, float]

    def reason(self) -> str:
        """One line saying what was measured, e.g. "openvino 4.1 ms vs onnxruntime 8.3 ms per image (batch 1)"."""
        ranked = sorted(self.timings_ms.items(), key=lambda item: item[1])
        figures = " vs ".join(f"{name} {ms:.1f} ms" for name, ms in ranked)
        return f"{figures} per image (batch 1, model only) on {self.cpu}"


def probe(path: str | Path, candidates: Sequence[str]) -> CpuChoice:
    """Time ``path`` in each backend of ``candidates`` on the CPU and return the faster one.

    Raises:
        YOLOv6Error: no candidate can load the artifact (the first one's error).
    """
    backends: dict[str, Any] = {}
    failure: YOLOv6Error | None = None
    for name in candidates:
        try:
            cls = backend_class(name)
            quiet = {"cache": False} if "cache" in cls.spec.options else {}  # a measurement leaves no files
            backends[name] = cls(path, device="cpu", **quiet)
        except YOLOv6Error as exc:  # e.g. an operator one runtime lacks: the other one wins
            LOGGER.info("%s cannot run %s (%s); not a candidate", name, path, exc)
            failure = failure or exc
    if not backends:
        raise failure or YOLOv6Error(f"no CPU backend among {list(candidates)} loads {path}")
    try:
        timings = _time_interleaved(backends)
    finally:
        for backend in backends.values():
            backend.close()
    winner = min(timings, key=timings.__getitem__)
    return CpuChoice(winner, cpu_identity(), timings)


def _time_interleaved(backends: dict[str, Any]) -> dict[str, float]:
    """Median ms of one batch-1 run of a gray image, per backend, over :data:`TIMED_ROUNDS` interleaved rounds."""
    feeds = {}
    for name, backend in backends.items():
        info = backend.info
        feeds[name] = np.full((info.min_batch, 3, *info.imgsz), 114 / 255, np.float32)
        for _ in range(WARMUP_RUNS):
            backend.infer(feeds[name])
    samples: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(TIMED_ROUNDS):
        for name, backend in backends.items():
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            backend.infer(feeds[name])
            samples[name].append((time.perf_counter() - start) * 1000 / len(feeds[name]))
    return {name: round(statistics.median(values), 3) for name, values in samples.items()}


def recorded_choice(path: str | Path) -> CpuChoice | None:
    """The choice recorded in ``path``'s sidecar, or None (no sidecar, or no record)."""
    if not sidecar_path(path).is_file():
        return None
    try:
        record = read_sidecar(path).extra.get(RECORD_KEY)
    except YOLOv6Error:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("timings_ms"), dict):
        return None
    return CpuChoice(str(record.get("backend")), str(record.get("cpu")), dict(record["timings_ms"]))


def record_choice(path: str | Path, choice: CpuChoice) -> bool:
    """Write ``choice`` into ``path``'s sidecar (atomically); False when there is none or it is read-only."""
    if not sidecar_path(path).is_file():
        return False
    try:
        sidecar = read_sidecar(path)
        extra = {**sidecar.extra, RECORD_KEY: dataclasses.asdict(choice)}
        write_sidecar(sidecar.replaced(extra=extra), path)
    except (OSError, YOLOv6Error) as exc:
        LOGGER.info("cannot record the CPU runtime choice for %s: %s", path, exc)
        return False
    return True


def choose_for_cpu(path: str | Path, candidates: Sequence[str]) -> CpuChoice:
    """The recorded choice when it names this CPU and one of ``candidates``; else a fresh :func:`probe`,
    recorded in the sidecar."""
    path = Path(path)
    cpu = cpu_identity()
    recorded = recorded_choice(path)
    if recorded is not None and recorded.cpu == cpu and recorded.backend in candidates:
        return recorded
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, cpu)
    if key not in _probed:
        choice = probe(path, candidates)
        if recorded is not None:
            LOGGER.warning("%s was measured on %s; re-measured here: %s", path, recorded.cpu, choice.reason())
        record_choice(path, choice)
        _probed[key] = choice
    return _probed[key]


def preferred_cpu_backend(path: str | Path, device: str, candidates: Sequence[str]) -> str | None:
    """The backend ``backend="auto"`` should take for ``path`` among ``candidates`` on ``device``, or None
    to leave the registry's default (a GPU is used, or the file cannot be probed)."""
    if not sidecar_path(path).is_file() or (parse_device(device)[0] != "cpu" and _onnxruntime_has_gpu()):
        return None  # an ONNX file from elsewhere (no sidecar) runs in the first reader, ONNX Runtime
    try:
        return choose_for_cpu(path, candidates).backend
    except YOLOv6Error as exc:
        LOGGER.debug("no CPU runtime probe for %s: %s", path, exc)
        return None


def _onnxruntime_has_gpu() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
