"""Build a TensorRT engine from an ONNX file: a chain of plain functions (style rule S11).

``inspect_onnx -> check_onnx -> plan_precision -> create_network + parse_onnx -> configure -> serialize_engine``,
driven by :func:`make_engine` (the engine file, and the sidecar record made from the
:class:`~yolov6_sdk.artifact.meta.ArtifactMeta` it is given) with one frozen :class:`BuildConfig`;
:func:`build_engine` also writes that sidecar.

Precision comes from the ONNX graph, built as a strongly typed network wherever TensorRT offers one:

* fp32: an fp32 ONNX, with ``BuilderFlag.TF32`` cleared (TensorRT sets it by default, and TF32 rounds the inputs
  of convolutions to 10-bit mantissas): an fp32 engine computes in fp32.
* fp16: the ONNX exported with half weights and I/O (``ExportOptions(half=True)``). TensorRT 11 has no FP16
  builder flag; on TensorRT 10, ``strongly_typed=False`` (or a TensorRT without strong typing) takes the legacy
  weak-typing path instead: ``BuilderFlag.FP16`` on an fp32 or fp16 ONNX.
* int8: an ONNX with explicit Q/DQ nodes (from the SDK's quantiser, conv biases float: TensorRT's
  DequantizeLinear takes no int32). Strongly typed (the default on TensorRT 10, the only mode on 11), every layer
  outside the Q/DQ pairs (the head's float part, the decode) runs in the ONNX's type, fp32 (TF32 allowed), not
  fp16. What keeps int8 ahead of fp16 is a small float remainder: the quantiser leaves only the head's last
  layers float (``--exclude`` and the sensitivity fallback add more, each costing fp32 time); on TensorRT 10
  the legacy path (``strongly_typed=False``: weak typing with the INT8 and FP16 flags) runs that remainder in
  fp16 instead. Compare with ``yolov6-bench`` on the target GPU.

The implicit INT8 calibrator path (``IInt8EntropyCalibrator2`` and friends through ``config.int8_calibrator``)
is deliberately left out: TensorRT 10.1 deprecated it and TensorRT 11 removed it. Calibration happens when the
Q/DQ ONNX is made.

End-to-end engines end in ``EfficientNMS_TRT`` (deprecated since TensorRT 10.12, still registered in 11): it
sorts only the top 4096 scores of each image before NMS (the CPU path keeps up to 30000), so at a low ``conf``
(0.001-0.03, COCO evaluation) its detections and mAP can differ from the raw engine's; score thresholds below
0.01 also take its slower dense path. A build warns at such a ``conf`` and refuses ``max_det`` above 4096;
evaluate the raw engine for mAP. The ONNX ``NonMaxSuppression`` export (TensorRT's INMSLayer) has
data-dependent output shapes, which need an output allocator and cannot be captured in a CUDA graph, so it is
refused (see :func:`check_onnx`).

The batch profile is ``(min, opt, max)`` from the ``--bs`` list. A timing cache named after the TensorRT version,
GPU compute capability and GPU model is loaded from, and saved to, the engine's folder, so later builds there
reuse it; one that TensorRT will not take (another release or GPU, or damaged) is replaced by a new one.
TensorRT's own log goes to ``logging.getLogger("yolov6_sdk.tensorrt")``. Files are written atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from yolov6_sdk._optional import require
from yolov6_sdk.artifact import trt_compat
from yolov6_sdk.artifact.meta import ArtifactMeta, onnx_meta
from yolov6_sdk.artifact.preprocess import MIN_SIDE, check_imgsz
from yolov6_sdk.artifact.sidecar import Sidecar, current_gpu, file_sha256, onnx_io_specs, write_sidecar
from yolov6_sdk.artifact.spec import PRECISIONS, IOSpec, NmsMode, Precision
from yolov6_sdk.errors import ArtifactError, BuildError, ConfigError
from yolov6_sdk.export.options import HARDWARE_COMPAT
from yolov6_sdk.export.trt_timing_cache import attach_timing_cache, default_timing_cache, save_timing_cache
from yolov6_sdk.fileio import atomic_path

LOGGER = logging.getLogger(__name__)

HARDWARE_COMPATIBILITY = HARDWARE_COMPAT
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
EFFICIENT_NMS_TOPK = 4096  # scores per image that EfficientNMS_TRT sorts before NMS
EFFICIENT_NMS_DENSE_CONF = 0.01  # below this score threshold the plugin takes its slower dense path


@dataclass(frozen=True)
class BuildConfig:
    """Every setting of one engine build (validated on construction).

    Attributes:
        precision: "fp32", "fp16" or "int8" (see the module docstring for what each needs from the ONNX).
        batch_sizes: the ``--bs`` list, ascending: ``N`` -> profile (N, N, N); ``a b`` -> (a, b, b);
            ``a b c`` -> (min a, opt b, max c).
        imgsz: (H, W) input size in pixels, multiples of 32; an int means square.
        workspace_gib: builder workspace memory pool limit, GiB.
        timing_cache: timing cache file; None -> ``timing-trt<version>-sm<cc>-<gpu>.cache`` beside the engine.
        reuse_timing_cache: load an existing timing cache before building (it is always saved after).
        end2end: the ONNX ends in the ``EfficientNMS_TRT`` plugin (exported with ``nms="trt"``).
        hardware_compatibility: "none", "ampere_plus" or "same_compute_capability".
        strongly_typed: None = strongly typed when TensorRT offers it; False = TensorRT 10's weak typing.

    Raises:
        ConfigError: an unknown precision or level, a batch list that is empty, unordered, longer than three or
            not positive, an imgsz that is not made of positive multiples of 32, a workspace <= 0.
    """

    precision: Precision = "fp16"
    batch_sizes: tuple[int, ...] = (1,)
    imgsz: tuple[int, int] = (640, 640)
    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    reuse_timing_cache: bool = True
    end2end: bool = False
    hardware_compatibility: str = "none"
    strongly_typed: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "imgsz", check_imgsz(self.imgsz))  # the contract's one image-size rule
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise ConfigError(
                f"hardware_compatibility must be one of {HARDWARE_COMPATIBILITY}, got {self.hardware_compatibility!r}"
            )
        _check_batches(self.batch_sizes)
        if not self.workspace_gib > 0:
            raise ConfigError(f"workspace_gib must be > 0, got {self.workspace_gib}")

    @property
    def profile(self) -> tuple[int, int, int]:
        """(min, opt, max) batch sizes of the optimisation profile."""
        sizes = self.batch_sizes
        if len(sizes) == 1:
            return sizes[0], sizes[0], sizes[0]
        if len(sizes) == 2:
            return sizes[0], sizes[1], sizes[1]
        return sizes[0], sizes[1], sizes[2]


def _check_batches(sizes: tuple[Any, ...]) -> None:
    if not 1 <= len(sizes) <= 3:
        raise ConfigError(
            f"batch sizes take one to three values (N; min max; min opt max), got {list(sizes)}; e.g. --bs 1 32"
        )
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in sizes):
        raise ConfigError(f"batch sizes must be positive integers, got {list(sizes)}")
    if list(sizes) != sorted(sizes):
        raise ConfigError(f"batch sizes must be ascending (min [opt] max), got {list(sizes)}; e.g. --bs 1 8 32")


@dataclass(frozen=True)
class OnnxInfo:
    """What the builder needs to know about an ONNX file before TensorRT sees it.

    Attributes:
        path: the file.
        inputs, outputs: graph I/O (shape axes None when symbolic).
        has_qdq: the graph holds QuantizeLinear/DequantizeLinear nodes (explicit quantisation).
        nms: "trt" (EfficientNMS_TRT node), "ort" (NonMaxSuppression node) or "".
        meta: what the file records (:class:`~yolov6_sdk.artifact.meta.ArtifactMeta`).
        sha256: hex digest of the file.
    """

    path: Path
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    has_qdq: bool
    nms: NmsMode | Literal[""]
    meta: ArtifactMeta
    sha256: str


@dataclass(frozen=True)
class PrecisionPlan:
    """How the network is typed: strongly typed (precision from the graph) or weak typing with builder flags."""

    strongly_typed: bool
    flags: tuple[str, ...] = ()


def inspect_onnx(path: str | Path) -> OnnxInfo:
    """Read I/O, Q/DQ and NMS nodes and metadata of an ONNX file (weights are not loaded).

    Raises:
        ArtifactError: the file is missing or not ONNX.
    """
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {path} does not exist; export it first (yolov6-build --weights ...)")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX file ({exc})") from exc
    ops = {node.op_type for node in proto.graph.node}
    nms = "trt" if "EfficientNMS_TRT" in ops else "ort" if "NonMaxSuppression" in ops else ""
    inputs, outputs = onnx_io_specs(proto)
    return OnnxInfo(path, inputs, outputs, bool(ops & _QDQ_OPS), nms, onnx_meta(proto, str(path)), file_sha256(path))


def check_onnx(config: BuildConfig, info: OnnxInfo) -> None:
    """Check that the ONNX can be built with ``config``: one [B, 3, H, W] input, matching size, batch and NMS.

    Raises:
        BuildError: naming the mismatch and the fix.
    """
    if len(info.inputs) != 1 or len(info.inputs[0].shape) != 4:
        raise BuildError(
            f"{info.path}: expected one [B, 3, H, W] input, got {[(i.name, i.shape) for i in info.inputs]}"
        )
    batch, _, height, width = info.inputs[0].shape
    if (height, width) != config.imgsz and None not in (height, width):
        raise BuildError(
            f"{info.path} takes {height}x{width} images but imgsz is {config.imgsz}; re-export or fix imgsz"
        )
    if batch is not None and config.profile != (batch, batch, batch):
        raise BuildError(
            f"{info.path} has a fixed batch of {batch} but the batch profile is {config.profile}; "
            f"use --bs {batch} or export with a dynamic batch"
        )
    if info.nms == "ort":
        raise BuildError(
            f"{info.path} ends in ONNX NonMaxSuppression (nms='ort', data-dependent shapes); TensorRT engines need "
            "the EfficientNMS_TRT export (nms='trt') or the raw export"
        )
    if config.end2end != (info.nms == "trt"):
        want = "an end-to-end ONNX (nms='trt')" if config.end2end else "a raw ONNX (no NMS)"
        raise BuildError(
            f"end2end={config.end2end} needs {want}, but {info.path} {'has' if info.nms else 'has no'} NMS"
        )
    if info.nms == "trt":
        check_efficient_nms(info)


def check_efficient_nms(info: OnnxInfo) -> None:
    """The EfficientNMS_TRT limits: refuse ``max_det`` above its top-k, warn about a ``conf`` below 0.01.

    Raises:
        BuildError: ``max_det`` (ONNX metadata) > 4096.
    """
    max_det, conf = info.meta.max_det, info.meta.conf
    if isinstance(max_det, int) and max_det > EFFICIENT_NMS_TOPK:
        raise BuildError(
            f"{info.path} asks EfficientNMS_TRT for {max_det} detections per image, but the plugin keeps only the "
            f"top {EFFICIENT_NMS_TOPK} scores; re-export with max_det <= {EFFICIENT_NMS_TOPK} or build the raw ONNX"
        )
    if isinstance(conf, (int, float)) and conf < EFFICIENT_NMS_DENSE_CONF:
        LOGGER.warning(
            "%s: conf %g is below %g: EfficientNMS_TRT takes its slower dense path and sorts only the top %d scores "
            "per image (the CPU NMS keeps 30000), so detections at this threshold can differ; evaluate mAP on the "
            "raw engine",
            info.path,
            conf,
            EFFICIENT_NMS_DENSE_CONF,
            EFFICIENT_NMS_TOPK,
        )


def plan_precision(features: trt_compat.TrtFeatures, config: BuildConfig, info: OnnxInfo) -> PrecisionPlan:
    """Choose strong typing or weak-typing flags for ``config.precision`` on this TensorRT and ONNX.

    Raises:
        BuildError: the ONNX does not carry the precision asked for and TensorRT cannot add it.
    """
    if config.strongly_typed is False and features.strongly_typed_only:
        raise BuildError(f"TensorRT {features.version} has no weak typing (removed in 11); drop strongly_typed=False")
    if config.strongly_typed and not features.strongly_typed_flag:
        raise BuildError(f"TensorRT {features.version} cannot build strongly typed networks")
    strong = features.strongly_typed_flag if config.strongly_typed is None else config.strongly_typed
    half_input = info.inputs[0].dtype == "float16"
    if config.precision != "int8" and info.has_qdq:
        raise BuildError(f"{info.path} holds Q/DQ nodes (an INT8 model); build it with precision int8")
    if config.precision == "fp32":
        if half_input:
            raise BuildError(f"{info.path} was exported in fp16; build it with precision fp16 or export in fp32")
        return PrecisionPlan(strongly_typed=strong)
    if config.precision == "fp16":
        if not strong:
            return PrecisionPlan(strongly_typed=False, flags=("FP16",))
        if not half_input:
            legacy = " or pass strongly_typed=False for TensorRT 10's FP16 flag" if features.fp16_flag else ""
            raise BuildError(
                f"{info.path} is an fp32 ONNX; fp16 engines are built strongly typed from an ONNX exported with "
                f"half weights and I/O (ExportOptions(half=True)){legacy}"
            )
        return PrecisionPlan(strongly_typed=True)
    if not info.has_qdq:
        raise BuildError(
            f"{info.path} has no Q/DQ nodes; int8 engines are built from a quantised ONNX (yolov6-build --precision "
            "int8 --calib DIR makes one). TensorRT's implicit INT8 calibrators are not used: deprecated in 10.1, "
            "removed in 11"
        )
    return PrecisionPlan(strongly_typed=True) if strong else PrecisionPlan(strongly_typed=False, flags=("INT8", "FP16"))


def create_network(trt: Any, builder: Any, features: trt_compat.TrtFeatures, plan: PrecisionPlan) -> Any:
    """An empty network definition, strongly typed or not as ``plan`` says."""
    return builder.create_network(trt_compat.network_flags(trt, features, plan.strongly_typed))


def parse_onnx(trt: Any, network: Any, logger: Any, path: Path) -> Any:
    """Parse ``path`` into ``network``; returns the parser, which must outlive the build (it owns the weights).

    Raises:
        BuildError: with every error the ONNX parser reported.
    """
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT could not parse {path}: {errors or 'no detail given'}")
    return parser


def configure(
    trt: Any,
    builder: Any,
    network: Any,
    config: BuildConfig,
    features: trt_compat.TrtFeatures,
    plan: PrecisionPlan,
    timing_cache: bytes | None,
) -> Any:
    """A builder config: workspace, precision flags (TF32 cleared for fp32), batch profile, timing cache and
    hardware compatibility.

    ``timing_cache`` is a serialised cache to start from (b"" for a new one, None for none).
    """
    builder_config = builder.create_builder_config()
    trt_compat.set_workspace(trt, builder_config, features, int(config.workspace_gib * (1 << 30)))
    trt_compat.set_precision_flags(trt, builder_config, features, plan.flags)
    if config.precision == "fp32":
        trt_compat.clear_tf32(trt, builder_config, features)
    images = network.get_input(0)
    if any(int(d) < 0 for d in images.shape):
        profile = builder.create_optimization_profile()
        profile.set_shape(images.name, *input_profile(config, tuple(int(d) for d in images.shape)))
        builder_config.add_optimization_profile(profile)
    if timing_cache is not None and features.timing_cache:
        attach_timing_cache(builder_config, timing_cache)
    trt_compat.set_hardware_compatibility(trt, builder_config, features, config.hardware_compatibility)
    return builder_config


def input_profile(config: BuildConfig, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """``(min, opt, max)`` input shapes ``[B, 3, H, W]`` of the optimisation profile for an input of ``shape``.

    Batch from the batch profile. A dynamic height/width (-1, a rectangular-inference export) gets
    ``MIN_SIDE`` .. ``imgsz`` with ``imgsz`` as the optimum (every rectangle the Detector makes fits); a fixed
    one stays ``imgsz``.
    """
    low, opt, high = config.profile
    dynamic_hw = any(d < 0 for d in shape[2:])
    small = (MIN_SIDE, MIN_SIDE) if dynamic_hw else config.imgsz
    return (low, 3, *small), (opt, 3, *config.imgsz), (high, 3, *config.imgsz)


def serialize_engine(builder: Any, network: Any, builder_config: Any) -> bytes:
    """Run TensorRT's optimiser; the serialised engine.

    Raises:
        BuildError: TensorRT returned no engine (its reasons are in the ``yolov6_sdk.tensorrt`` log).
    """
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise BuildError("TensorRT could not build the engine; its errors are in the yolov6_sdk.tensorrt log")
    return bytes(memoryview(serialized))


def engine_sidecar(
    engine_path: Path,
    config: BuildConfig,
    meta: ArtifactMeta,
    environment: Mapping[str, str],
    io: tuple[tuple[IOSpec, ...], tuple[IOSpec, ...]],
    extra: Mapping[str, Any],
) -> Sidecar:
    """Sidecar of a built engine: the record ``meta`` with the engine's precision and input size, the build
    ``environment`` (tensorrt_version, gpu_name, compute_capability), batch profile, I/O and ``extra``."""
    return Sidecar(
        artifact=engine_path.name,
        kind="engine",
        meta=dataclasses.replace(
            meta,
            model=meta.model or engine_path.stem,
            precision=config.precision,
            imgsz=config.imgsz,
            multi_label=meta.multi_label_or(bool(meta.end2end)),
            extra=dict(extra),
        ),
        batch_profile=config.profile,
        tensorrt_version=environment["tensorrt_version"],
        gpu_name=environment["gpu_name"],
        compute_capability=environment["compute_capability"],
        hardware_compatibility="" if config.hardware_compatibility == "none" else config.hardware_compatibility,
        inputs=io[0],
        outputs=io[1],
    )


def make_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    config: BuildConfig,
    meta: ArtifactMeta | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Sidecar:
    """Build ``onnx_path`` into a TensorRT engine at ``engine_path`` (the engine file only); returns the sidecar
    to publish beside it: ``meta`` (what the artifact records; None: the ONNX's own record) plus the build's
    facts and ``extra``.

    Raises:
        MissingDependencyError: TensorRT (10 or 11) is not installed.
        BuildError: no CUDA GPU, an ONNX that does not fit ``config``, or a failed parse/build.
    """
    engine_path = Path(engine_path)
    info = inspect_onnx(onnx_path)
    check_onnx(config, info)
    trt = trt_compat.load_tensorrt()
    features = trt_compat.probe(trt)
    gpu = current_gpu()
    if gpu is None:
        raise BuildError("building a TensorRT engine needs a CUDA GPU, and none is visible")
    environment = {"tensorrt_version": features.version, "gpu_name": gpu[0], "compute_capability": gpu[1]}
    plan = plan_precision(features, config, info)
    cache_path = config.timing_cache or default_timing_cache(engine_path, features.version, gpu[1], gpu[0])
    serialized, seconds = _run_builder(trt, features, config, info, plan, cache_path)
    io = _engine_io(trt, serialized)
    facts = {
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.flags),
        "workspace_gib": config.workspace_gib,
        "timing_cache": cache_path.name,
        "build_seconds": round(seconds, 1),
    }
    record = meta or info.meta
    record = dataclasses.replace(
        record, end2end=record.end2end or info.nms, source_hashes={**record.source_hashes, "onnx": info.sha256}
    )
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(serialized)
    LOGGER.info("built %s (%s, profile %s) in %.1f s", engine_path, config.precision, config.profile, seconds)
    return engine_sidecar(engine_path, config, record, environment, io, {**facts, **(extra or {})})


def build_engine(
    onnx_path: str | Path, engine_path: str | Path, config: BuildConfig, meta: ArtifactMeta | None = None
) -> Path:
    """:func:`make_engine`, then its sidecar ``.json`` written beside the engine; returns the engine path."""
    write_sidecar(make_engine(onnx_path, engine_path, config, meta), engine_path)
    return Path(engine_path)


def _run_builder(
    trt: Any,
    features: trt_compat.TrtFeatures,
    config: BuildConfig,
    info: OnnxInfo,
    plan: PrecisionPlan,
    cache_path: Path,
) -> tuple[bytes, float]:
    logger = trt_compat.trt_logger(trt)
    builder = trt.Builder(logger)
    network = create_network(trt, builder, features, plan)
    parser = parse_onnx(trt, network, logger, info.path)
    cached = cache_path.read_bytes() if config.reuse_timing_cache and cache_path.is_file() else b""
    if cached:
        LOGGER.info("reusing timing cache %s", cache_path)
    builder_config = configure(trt, builder, network, config, features, plan, cached)
    start = time.perf_counter()
    serialized = serialize_engine(builder, network, builder_config)
    seconds = time.perf_counter() - start
    if features.timing_cache:
        save_timing_cache(builder_config, cache_path)
    del parser  # kept alive until here: the network refers to weights it owns
    return serialized, seconds


def _engine_io(trt: Any, serialized: bytes) -> tuple[tuple[IOSpec, ...], tuple[IOSpec, ...]]:
    runtime = trt.Runtime(trt_compat.trt_logger(trt))
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise BuildError("TensorRT could not read back the engine it just built")
    return trt_compat.engine_io(trt, engine)
