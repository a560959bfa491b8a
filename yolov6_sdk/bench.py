"""The benchmark engine behind ``yolov6-bench``.

For every model (or given artifact) x backend x precision x batch size it gets the artifact from the one build
path (:func:`yolov6_sdk.export.build.build`, into the bench's own cache folder, ``~/.cache/yolov6-sdk/bench`` by
default; an artifact built there before from the same source and settings is reused as it is), warms up, then
runs ``Detector.predict_batch`` on B 1280x720 BGR images -> Results and times, per call of B images:

* model only: the Detector's inference time (the backend run on the pre-processed ``[B, 3, H, W]`` batch, device
  synchronised), read from each result's ``speed`` (p50/p99 latency per batch, FPS = B x 1000 / p50 latency);
* end to end: the whole call (letterbox, inference, decode and NMS, boxes mapped back), with the Detector's own
  pre- plus post-processing time apart.

Combinations this machine cannot run (TensorRT without TensorRT or without a GPU, fp16 on the CPU, int8 on the
torch backend) become rows with status "skipped" and the reason; every figure is measured here, never filled in.
Zoo models run with untrained weights: one seeded checkpoint per model and input size in the cache, which the
torch rows run and every other artifact is built from (a fresh model's predictors are zero, so its scores are
0.01 and post-processing at conf 0.25 sees no candidates): timings only, no accuracy.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk._optional import available, require
from yolov6_sdk.artifact.naming import RANDOM_SOURCE, artifact_name
from yolov6_sdk.artifact.spec import ARTIFACT_SUFFIXES, BACKENDS, PRECISIONS, BackendKind, Precision
from yolov6_sdk.errors import ConfigError, YOLOv6Error
from yolov6_sdk.machine import machine_info
from yolov6_sdk.runtime.backends.registry import backend_classes, backend_specs, installed

LOGGER = logging.getLogger(__name__)

FRAME_SHAPE = (720, 1280)  # end-to-end input images, h x w
MIN_ITERS, MAX_ITERS, ITER_BUDGET_S = 5, 200, 10.0
MIN_WARMUP, MAX_WARMUP, WARMUP_BUDGET_S = 1, 10, 3.0


@dataclass(frozen=True)
class BenchOptions:
    """What to benchmark.

    Attributes:
        batch_sizes: batch sizes to time, e.g. (1, 32).
        models: zoo names (used when ``artifacts`` is empty).
        artifacts: existing .pt/.onnx/.engine files; backend from the suffix, precision from the file.
        backends, precisions: combinations to try for ``models``.
        imgsz: (H, W) model input of ``models``, multiples of 32; None: each model's own size (1280 for P6, 320
            for Lite, 640 otherwise).
        iters, warmup: timed and warm-up runs per measurement; None = adaptive (5..200 runs or ~10 s; 1..10 or ~3 s).
        device: "auto" (CUDA when torch sees one), "cpu", "cuda" or "cuda:N".
        cache: the bench's own folder, where ``models``' checkpoints and artifacts are built and reused; None =
            :func:`default_cache`. Never a folder of the user's artifacts: given ``artifacts`` are only read.
        calib: calibration image folder for int8 (None: the build's default, the shipped ``calib/``).
        conf: score threshold of the end-to-end runs.
        cuda_graph: replay CUDA graphs in the torch and TensorRT runs on CUDA (the CPU runs ignore it).
    """

    batch_sizes: tuple[int, ...] = (1, 32)
    models: tuple[str, ...] = ("yolov6n",)
    artifacts: tuple[Path, ...] = ()
    backends: tuple[BackendKind, ...] = BACKENDS
    precisions: tuple[Precision, ...] = PRECISIONS
    imgsz: tuple[int, int] | None = None
    iters: int | None = None
    warmup: int | None = None
    device: str = "auto"
    cache: Path | None = None
    calib: Path | None = None
    conf: float = 0.25
    cuda_graph: bool = False

    def model_imgsz(self, model: str) -> tuple[int, int]:
        """(H, W) the zoo model ``model`` is timed at: :attr:`imgsz`, else the model's own size."""
        if self.imgsz is not None:
            return self.imgsz
        from yolov6_sdk.models import get_config

        side = get_config(model).imgsz
        return side, side

    def __post_init__(self) -> None:
        object.__setattr__(self, "artifacts", tuple(Path(a) for a in self.artifacts))
        object.__setattr__(self, "cache", default_cache() if self.cache is None else Path(self.cache))
        object.__setattr__(self, "calib", None if self.calib is None else Path(self.calib))
        if not self.batch_sizes or any(
            isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batch_sizes
        ):
            raise ConfigError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        for label, values, known in (
            ("backend", self.backends, tuple(backend_classes())),
            ("precision", self.precisions, PRECISIONS),
        ):
            unknown = [v for v in values if v not in known]
            if unknown or not values:
                raise ConfigError(f"{label}s must be some of {', '.join(known)}, got {list(values)}")
        if self.imgsz is not None and (
            len(self.imgsz) != 2 or any(not isinstance(v, int) or v <= 0 or v % 32 for v in self.imgsz)
        ):
            raise ConfigError(f"imgsz must be (H, W) positive multiples of 32, got {self.imgsz}")
        for label, value in (("iters", self.iters), ("warmup", self.warmup)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{label} must be a positive int or None (adaptive), got {value!r}")
        if not self.artifacts and not self.models:
            raise ConfigError("name models (e.g. yolov6n yolov6s) or artifact files to benchmark")
        bad = [a for a in self.artifacts if a.suffix not in ARTIFACT_SUFFIXES]
        if bad:
            raise ConfigError(f"artifacts must be {', '.join(ARTIFACT_SUFFIXES)} files, got {[str(a) for a in bad]}")


@dataclass(frozen=True)
class Job:
    """One row to measure; ``artifact`` is set for user-given files."""

    model: str
    backend: BackendKind
    precision: str
    batch: int
    artifact: Path | None = None


@dataclass
class BenchRow:
    """One measured (or skipped) combination. Latencies in ms per batch; FPS in images per second."""

    model: str
    backend: str
    precision: str
    batch: int
    status: str = "ok"  # "ok", "skipped" or "failed"
    reason: str = ""
    p50_ms: float | None = None
    p99_ms: float | None = None
    fps: float | None = None
    e2e_p50_ms: float | None = None
    e2e_fps: float | None = None
    prepost_ms: float | None = None
    prepost_pct: float | None = None  # pre+post as a share of the model-only p50, percent
    iters: int = 0
    artifact: str = ""


@dataclass
class BenchReport:
    """Machine description, notes and rows of one benchmark run."""

    machine: dict[str, str]
    notes: list[str]
    rows: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "notes": self.notes, "rows": [dataclasses.asdict(r) for r in self.rows]}


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/yolov6-sdk/bench``, else ``~/.cache/yolov6-sdk/bench``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yolov6-sdk" / "bench"


# ------------------------------------------------------------------------------------------- machine


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when torch sees a GPU, else "cpu"; other values are kept."""
    if device != "auto":
        return device
    return "cuda" if available("torch") and require("torch").cuda.is_available() else "cpu"


def busy_machine_note(load: float | None = None, cores: int | None = None) -> str | None:
    """A warning when the 1-minute load average (``load``; default: the machine's) exceeds the logical core
    count (``cores``; default: the machine's), else None. Other work then shares the cores and the timings."""
    if load is None:
        if not hasattr(os, "getloadavg"):
            return None
        load = os.getloadavg()[0]
    cores = cores or os.cpu_count() or 1
    if load <= cores:
        return None
    return (
        f"the machine was busy when the run started: load average {load:.1f} on {cores} cores; other work shares "
        "the cores, so these timings are slower and noisier than on an idle machine: rerun when it is idle"
    )


# ------------------------------------------------------------------------------------------- planning


def bench_jobs(options: BenchOptions) -> list[Job]:
    """Every combination to run, in table order (model, backend, precision, batch)."""
    if options.artifacts:
        jobs = []
        for path in options.artifacts:
            precision = _artifact_precision(path)
            readers = [spec.name for spec in backend_specs() if path.suffix.lower() in spec.suffixes]
            for backend in [name for name in readers if name in options.backends] or readers[:1]:
                jobs += [Job(path.stem, backend, precision, b, path) for b in options.batch_sizes]
        return jobs
    return [
        Job(model, backend, precision, batch)
        for model in options.models
        for backend in options.backends
        for precision in options.precisions
        for batch in options.batch_sizes
    ]


def _artifact_precision(path: Path) -> str:
    from yolov6_sdk.artifact.meta import onnx_meta
    from yolov6_sdk.artifact.sidecar import read_sidecar, sidecar_path

    if sidecar_path(path).is_file():
        return read_sidecar(path).precision
    if path.suffix == ".onnx":
        proto = require("onnx").load(str(path), load_external_data=False)
        if any(node.op_type == "QuantizeLinear" for node in proto.graph.node):
            return "int8"
        return onnx_meta(proto, str(path)).precision or "fp32"
    return "fp32"


def skip_reason(job: Job, device: str) -> str:
    """Why this machine cannot run ``job`` ("" when it can), from the backend's declaration."""
    spec = backend_classes()[job.backend].spec
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if not installed(spec):
        return f"{job.backend} is not installed ({spec.install})"
    if device_type not in spec.devices:
        return f"{job.backend} runs on {' or '.join(spec.devices)}; this run is on the {device_type}"
    if job.precision not in spec.precisions:
        return f"the {job.backend} backend runs {'/'.join(spec.precisions)} only"
    if job.precision == "fp16" and device_type == "cpu":
        return "fp16 needs a CUDA device; this run is on the CPU"
    if job.precision == "bf16" and not _cpu_has_bf16():
        return "bf16 needs a CPU with AVX512-BF16 or AMX"
    if job.precision == "fp16" and job.backend == "onnxruntime" and job.artifact is None:
        return "yolov6-build makes no fp16 ONNX for ONNX Runtime; fp16 runs on tensorrt or torch"
    return ""


def _cpu_has_bf16() -> bool:
    from yolov6_sdk.machine import cpu_features

    return "AVX512-BF16" in cpu_features() or "AMX" in cpu_features()


# ------------------------------------------------------------------------------------------- timing


def measure(run: Callable[[], Any], iters: int | None, warmup: int | None) -> list[float]:
    """Warm up, then time ``run``; returns latencies in ms. None counts are adaptive (see BenchOptions)."""
    _repeat(run, warmup, MIN_WARMUP, MAX_WARMUP, WARMUP_BUDGET_S)
    return _repeat(run, iters, MIN_ITERS, MAX_ITERS, ITER_BUDGET_S)


def _repeat(run: Callable[[], Any], count: int | None, least: int, most: int, budget_s: float) -> list[float]:
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t0) * 1e3)
        done = len(samples)
        if count is not None and done >= count:
            return samples
        if count is None and (done >= most or (done >= least and time.perf_counter() - start >= budget_s)):
            return samples


def _percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def _total(speeds: list[dict[str, float]], *stages: str) -> float:
    """Sum of the ``stages``' ms per image over one call's results: the call's time in those stages (ms)."""
    return sum(speed.get(stage, 0.0) for speed in speeds for stage in stages)


def synthetic_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` 1280x720 uint8 BGR noise images (one array, repeated)."""
    frame = np.random.default_rng(seed).integers(0, 256, (*FRAME_SHAPE, 3), dtype=np.uint8)
    return [frame] * count


# ------------------------------------------------------------------------------------------- running


class BenchRunner:
    """Gets artifacts from the build path (once per run) and measures jobs; see the module docstring."""

    def __init__(self, options: BenchOptions) -> None:
        self.options = options
        self.device = resolve_device(options.device)
        self.notes: list[str] = []
        self._artifacts: dict[tuple[Any, ...], Path] = {}

    def run(self, job: Job) -> BenchRow:
        """Measure one job; a job this machine cannot run comes back skipped, a crash as failed."""
        row = BenchRow(job.model, job.backend, job.precision, job.batch)
        reason = skip_reason(job, self.device)
        if reason:
            row.status, row.reason = "skipped", reason
            return row
        try:
            artifact = job.artifact or self.artifact(job)
            row.artifact = str(artifact)
            self._time(job, artifact, row)
        except YOLOv6Error as exc:  # cannot be prepared or loaded here: say why
            row.status, row.reason = "skipped", str(exc)
        except Exception as exc:
            LOGGER.exception("benchmark of %s failed", job)
            row.status, row.reason = "failed", f"{type(exc).__name__}: {exc}"
        return row

    def _time(self, job: Job, artifact: Path, row: BenchRow) -> None:
        """Time ``Detector.predict_batch`` on ``job.batch`` frames, run as one batch; fill ``row``'s figures (ms
        per batch)."""
        from yolov6_sdk.runtime.detector import Detector

        opts = self.options
        half = job.backend == "torch" and job.precision == "fp16"
        imgsz = None if job.artifact else opts.model_imgsz(job.model)  # a given artifact runs at its own size
        graph = opts.cuda_graph and job.backend in ("torch", "tensorrt") and self.device.startswith("cuda")
        # batch=job.batch: one backend run per call of B images (a batch the artifact cannot serve: ConfigError)
        with Detector(artifact, self.device, job.backend, conf=opts.conf, imgsz=imgsz, half=half,
                      cuda_graph=graph, batch=job.batch) as detector:  # fmt: skip
            if job.artifact is not None:
                size = f"{artifact.name}: timed at {detector.imgsz[0]}x{detector.imgsz[1]}, its input size"
                self.notes += [size] if size not in self.notes else []
            frames = synthetic_frames(job.batch)
            split: list[tuple[float, float]] = []  # (inference, pre + post) ms of each call

            def end_to_end() -> None:
                speeds = [result.speed for result in detector.predict_batch(frames)]  # ms per image
                split.append((_total(speeds, "inference"), _total(speeds, "preprocess", "postprocess")))

            e2e = measure(end_to_end, opts.iters, opts.warmup)
        model, prepost = zip(*split[-len(e2e) :], strict=True)  # the timed calls, after warm-up
        row.p50_ms, row.p99_ms = _percentile(list(model), 50), _percentile(list(model), 99)
        row.fps = job.batch * 1e3 / row.p50_ms  # FPS from the latency beside it in the table
        row.e2e_p50_ms = _percentile(e2e, 50)
        row.e2e_fps = job.batch * 1e3 / row.e2e_p50_ms
        row.prepost_ms, row.iters = _percentile(list(prepost), 50), len(e2e)
        row.prepost_pct = 100 * row.prepost_ms / row.p50_ms

    # --------------------------------------------------------------------------------------- artifacts

    def checkpoint(self, model: str) -> Path:
        """The untrained checkpoint of ``model`` in the cache (``<model>-random-<size>-fp32.pt``), made once.

        Its weights come from a fixed seed; the file is kept, so the artifacts built from it keep their names
        (their source digest) from run to run.
        """
        opts = self.options
        imgsz = opts.model_imgsz(model)
        path = opts.cache / artifact_name(model, RANDOM_SOURCE, imgsz, "fp32", ".pt")
        if not path.is_file():
            from yolov6_sdk.models import build_model
            from yolov6_sdk.weights import save_checkpoint

            torch = require("torch")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                network = build_model(model).eval()
            save_checkpoint(path, network, imgsz=max(imgsz))
            self.notes.append(f"{path.name}: created in {opts.cache} with random initial weights (timing only)")
        return path

    def artifact(self, job: Job) -> Path:
        """The artifact ``job`` runs: the checkpoint (torch), or what the build path makes from it in the cache.

        ONNX artifacts serve every batch size (dynamic batch); TensorRT engines are built per batch size (a
        static profile). The build reuses what it made before from the same checkpoint and settings.
        """
        key = (job.model, job.backend, job.precision, job.batch if job.backend == "tensorrt" else None)
        if key in self._artifacts:
            return self._artifacts[key]
        source = self.checkpoint(job.model)
        if job.backend == "torch":
            return self._artifacts.setdefault(key, source)
        from yolov6_sdk.export.build import build

        opts = self.options
        sizes = [job.batch] if job.backend == "tensorrt" else list(opts.batch_sizes)
        result = build(weights=source, precision=job.precision, backend=job.backend, calib=opts.calib,
                       batch_sizes=sizes, imgsz=opts.model_imgsz(job.model), output=opts.cache)  # fmt: skip
        how = "reused" if "artifact" in result.cached else "built"
        calib = f", calibrated on {result.calibration_images} images" if job.precision == "int8" else ""
        self.notes.append(f"{result.artifact.name}: {how} in {opts.cache}{calib}")
        return self._artifacts.setdefault(key, result.artifact)


def run_benchmark(
    options: BenchOptions,
    notes: tuple[str, ...] = (),
    on_row: Callable[[Job, BenchRow], None] | None = None,
) -> BenchReport:
    """Run every job of ``options``; ``notes`` go above the table; ``on_row(job, row)`` follows each job."""
    runner = BenchRunner(options)
    report = BenchReport(machine_info(), list(notes))
    busy = busy_machine_note()
    if busy:
        LOGGER.warning("%s", busy)
        report.notes.append(busy)
    for job in bench_jobs(options):
        report.rows.append(runner.run(job))
        if on_row is not None:
            on_row(job, report.rows[-1])
    report.notes.extend(runner.notes)
    return report


# fmt: off
COLUMNS = ("model", "backend", "precision", "batch", "p50 ms", "p99 ms", "FPS", "e2e p50 ms", "e2e FPS", "pre+post ms",
           "pre+post %", "runs", "note")
# fmt: on

LEGEND = (
    "e2e: Detector.predict_batch on B 1280x720 BGR images -> Results (letterbox, inference, decode + NMS, box "
    "mapping); p50/p99 ms: model-only latency per batch, the inference part of those calls (the backend run on "
    "the pre-processed [B, 3, H, W] batch); FPS: images/s = batch x 1000 / p50 (e2e FPS: / e2e p50); pre+post ms: "
    "the Detector's pre- plus post-processing time per batch (median; letterbox + decode/NMS + box mapping, no file "
    "decode: the frames are arrays); pre+post %: that time as a share of the model-only p50; runs: timed calls, after warm-up."
)


def _cell(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table_rows(report: BenchReport) -> list[list[str]]:
    """The table's cells, one list per row, in :data:`COLUMNS` order."""
    cells = []
    for r in report.rows:
        figures = [_cell(r.p50_ms, 2), _cell(r.p99_ms, 2), _cell(r.fps), _cell(r.e2e_p50_ms, 2), _cell(r.e2e_fps)]
        figures += [_cell(r.prepost_ms, 2), _cell(r.prepost_pct)]
        note = r.reason if r.status == "ok" else f"{r.status}: {r.reason}"
        cells.append([r.model, r.backend, r.precision, str(r.batch), *figures, str(r.iters or ""), note])
    return cells


def to_csv(report: BenchReport) -> str:
    """Every row's fields (:class:`BenchRow`, ms per batch, FPS in images/s) as CSV with a header line."""
    names = [f.name for f in dataclasses.fields(BenchRow)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: "" if v is None else v for k, v in dataclasses.asdict(row).items()})
    return buffer.getvalue()


def to_markdown(report: BenchReport, title: str = "yolov6-bench", command: str = "") -> str:
    """The machine description, notes and the one table, as markdown."""
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in report.machine.items()]
    lines += [""] + [f"> {note}" for note in report.notes] + ["", LEGEND, ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(report)]
    return "\n".join(lines) + "\n"
