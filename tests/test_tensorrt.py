"""TensorRT engine building and the engine backend.

Without TensorRT: BuildConfig validation, the ONNX checks, the TensorRT 10-vs-11 feature probes and the build
path chosen for each (against stand-in ``tensorrt`` modules made of SimpleNamespace: they test our probe and
configure logic, never TensorRT's results), log routing, and the backend's sidecar checks. Tests marked
``tensorrt`` build and run real engines and skip without TensorRT and a CUDA GPU.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from yolov6_sdk._optional import available
from yolov6_sdk.artifact import trt_compat
from yolov6_sdk.artifact.meta import ArtifactMeta
from yolov6_sdk.artifact.sidecar import Sidecar, write_sidecar
from yolov6_sdk.artifact.spec import IOSpec
from yolov6_sdk.errors import ArtifactError, BuildError, ConfigError, MissingDependencyError, YOLOv6Error
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.export.tensorrt import (
    BuildConfig,
    OnnxInfo,
    PrecisionPlan,
    build_engine,
    check_onnx,
    configure,
    create_network,
    inspect_onnx,
    plan_precision,
)
from yolov6_sdk.models import build_model
from yolov6_sdk.runtime.backends.tensorrt import TensorRTBackend, preflight

# ------------------------------------------------------------------------------------ stand-in modules


def fake_trt(version: str, weak_typing: bool, strongly_typed_flag: bool = True) -> SimpleNamespace:
    """A stand-in with the attributes TensorRT 10 (weak_typing=True) or 11 (False) exposes."""
    flags = {"TF32": "TF32", **({"FP16": "FP16", "INT8": "INT8"} if weak_typing else {})}
    config_api = {"create_timing_cache": None, "set_memory_pool_limit": None}
    if weak_typing:
        config_api["int8_calibrator"] = None
    return SimpleNamespace(
        __version__=version,
        BuilderFlag=SimpleNamespace(**flags),
        NetworkDefinitionCreationFlag=SimpleNamespace(**({"STRONGLY_TYPED": 1} if strongly_typed_flag else {})),
        IBuilderConfig=SimpleNamespace(**config_api),
        ICudaEngine=SimpleNamespace(num_io_tensors=0, device_memory_size_v2=0),
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        HardwareCompatibilityLevel=SimpleNamespace(NONE=0, AMPERE_PLUS=1, SAME_COMPUTE_CAPABILITY=2),
    )


TRT10 = fake_trt("10.16.1.11", weak_typing=True)
TRT11 = fake_trt("11.4.0.106", weak_typing=False)


class RecordingConfig:
    def __init__(self) -> None:
        self.flags: list[str] = []
        self.cleared: list[str] = []
        self.pools: dict[str, int] = {}
        self.profiles: list[RecordingProfile] = []
        self.timing_cache: tuple[Any, bool] | None = None
        self.hardware_compatibility_level: int | None = None

    def set_flag(self, flag: str) -> None:
        self.flags.append(flag)

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self.pools[pool] = size

    def add_optimization_profile(self, profile: RecordingProfile) -> None:
        self.profiles.append(profile)

    def create_timing_cache(self, data: bytes) -> tuple[str, bytes]:
        return ("cache", data)

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        self.timing_cache = (cache, ignore_mismatch)
        return True  # taken, as TensorRT reports it

    def clear_flag(self, flag: str) -> None:
        self.cleared.append(flag)


class RecordingProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, low: tuple[int, ...], opt: tuple[int, ...], high: tuple[int, ...]) -> None:
        self.shapes[name] = (low, opt, high)


class RecordingBuilder:
    def __init__(self) -> None:
        self.network_flags: int | None = None

    def create_network(self, flags: int) -> str:
        self.network_flags = flags
        return "network"

    def create_builder_config(self) -> RecordingConfig:
        return RecordingConfig()

    def create_optimization_profile(self) -> RecordingProfile:
        return RecordingProfile()


def network(shape: tuple[int, ...] = (-1, 3, 160, 160)) -> SimpleNamespace:
    return SimpleNamespace(get_input=lambda index: SimpleNamespace(name="images", shape=shape))


def onnx_info(dtype: str = "float32", has_qdq: bool = False, batch: int | None = None, nms: str = "") -> OnnxInfo:
    return OnnxInfo(
        path=Path("m.onnx"),
        inputs=(IOSpec("images", (batch, 3, 160, 160), dtype),),
        outputs=(IOSpec("outputs", (batch, 525, 85), dtype),),
        has_qdq=has_qdq,
        nms=nms,
        meta=ArtifactMeta(),
        sha256="",
    )


# ------------------------------------------------------------------------------------ BuildConfig


@pytest.mark.parametrize(
    ("sizes", "profile"), [((1,), (1, 1, 1)), ((8,), (8, 8, 8)), ((1, 32), (1, 32, 32)), ((1, 8, 32), (1, 8, 32))]
)
def test_batch_list_gives_min_opt_max_profile(sizes: tuple[int, ...], profile: tuple[int, int, int]) -> None:
    assert BuildConfig(batch_sizes=sizes).profile == profile


@pytest.mark.parametrize(
    ("sizes", "message"),
    [((32, 1), "ascending"), ((1, 32, 8), "ascending"), ((), "one to three"), ((1, 2, 4, 8), "one to three"),
     ((0, 4), "positive"), ((1.5,), "positive"), ((True,), "positive")],
)  # fmt: skip
def test_bad_batch_lists_are_refused(sizes: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BuildConfig(batch_sizes=sizes)


@pytest.mark.parametrize("imgsz", [(640, 600), (0, 640), (-32, 640), (640,), 100])
def test_imgsz_must_be_multiples_of_32(imgsz: Any) -> None:
    with pytest.raises(ConfigError, match="multiples of 32"):
        BuildConfig(imgsz=imgsz)


def test_build_config_normalises_and_checks_options() -> None:
    config = BuildConfig(imgsz=320, batch_sizes=[1, 4], timing_cache="engines/t.cache")  # type: ignore[arg-type]
    assert (config.imgsz, config.batch_sizes, config.timing_cache) == ((320, 320), (1, 4), Path("engines/t.cache"))
    for bad in ({"precision": "int4"}, {"hardware_compatibility": "turing"}, {"workspace_gib": 0}):
        with pytest.raises(ConfigError):
            BuildConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.precision = "fp32"  # type: ignore[misc]


# ------------------------------------------------------------------------------------ feature probes


def test_probes_tell_tensorrt_10_from_11() -> None:
    ten, eleven = trt_compat.probe(TRT10), trt_compat.probe(TRT11)
    assert (ten.fp16_flag, ten.int8_flag, ten.implicit_calibrator, ten.strongly_typed_only) == (True, True, True, False)
    assert (eleven.fp16_flag, eleven.int8_flag, eleven.implicit_calibrator) == (False, False, False)
    assert eleven.strongly_typed_only and eleven.strongly_typed_flag
    for features in (ten, eleven):
        assert features.name_based_io and features.timing_cache and features.memory_pool_limit
        assert features.hardware_levels == ("ampere_plus", "same_compute_capability")
    assert trt_compat.probe(SimpleNamespace()).name_based_io is False  # TensorRT 8: binding API only


def test_network_flags_follow_the_probe() -> None:
    ten, eleven = trt_compat.probe(TRT10), trt_compat.probe(TRT11)
    assert trt_compat.network_flags(TRT10, ten, strongly_typed=True) == 1 << 1
    assert trt_compat.network_flags(TRT10, ten, strongly_typed=False) == 0
    assert trt_compat.network_flags(TRT11, eleven, strongly_typed=True) == 1 << 1
    with pytest.raises(BuildError, match="strongly typed networks only"):
        trt_compat.network_flags(TRT11, eleven, strongly_typed=False)


def test_precision_flags_missing_from_tensorrt_11_raise_build_error() -> None:
    with pytest.raises(BuildError, match="no BuilderFlag.FP16"):
        trt_compat.set_precision_flags(TRT11, RecordingConfig(), trt_compat.probe(TRT11), ("FP16",))


def test_tensorrt_dtype_names_map_to_numpy() -> None:
    names = [trt_compat.dtype_name(SimpleNamespace(name=n)) for n in ("FLOAT", "HALF", "INT32", "INT8", "BOOL")]
    assert names == ["float32", "float16", "int32", "int8", "bool"]


def test_tensorrt_log_is_routed_into_the_library_logger(caplog: pytest.LogCaptureFixture) -> None:
    severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)
    registered: list[Any] = []

    class ILogger:
        Severity = severity

        def __init__(self) -> None:
            pass

    fake = SimpleNamespace(ILogger=ILogger, init_libnvinfer_plugins=lambda logger, ns: registered.append(ns))
    logger = trt_compat.trt_logger(fake)
    assert trt_compat.trt_logger(fake) is logger and registered == [""]  # one logger, plugins registered once
    with caplog.at_level(logging.DEBUG, logger="yolov6_sdk.tensorrt"):
        logger.log(severity.ERROR, "parse failed")
        logger.log(severity.INFO, "building")
        logger.log(severity.VERBOSE, "tactic 7")
    got = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert got == [
        ("yolov6_sdk.tensorrt", logging.ERROR, "parse failed"),
        ("yolov6_sdk.tensorrt", logging.DEBUG, "building"),
    ]


# ------------------------------------------------------------------------------------ precision plans


def test_fp16_from_a_half_onnx_is_strongly_typed_on_10_and_11() -> None:
    for trt in (TRT10, TRT11):
        plan = plan_precision(trt_compat.probe(trt), BuildConfig("fp16"), onnx_info("float16"))
        assert plan == PrecisionPlan(strongly_typed=True)


def test_fp16_from_an_fp32_onnx_needs_a_half_export_or_the_legacy_flag() -> None:
    with pytest.raises(BuildError, match=r"half=True.*strongly_typed=False"):
        plan_precision(trt_compat.probe(TRT10), BuildConfig("fp16"), onnx_info())
    with pytest.raises(BuildError, match="half=True") as info:
        plan_precision(trt_compat.probe(TRT11), BuildConfig("fp16"), onnx_info())
    assert "FP16 flag" not in str(info.value)  # TensorRT 11 has none to offer
    legacy = plan_precision(trt_compat.probe(TRT10), BuildConfig("fp16", strongly_typed=False), onnx_info())
    assert legacy == PrecisionPlan(strongly_typed=False, flags=("FP16",))
    with pytest.raises(BuildError, match="no weak typing"):
        plan_precision(trt_compat.probe(TRT11), BuildConfig("fp16", strongly_typed=False), onnx_info())


def test_tensorrt_without_strong_typing_falls_back_to_the_fp16_flag() -> None:
    old = trt_compat.probe(fake_trt("10.0.1.6", weak_typing=True, strongly_typed_flag=False))
    assert plan_precision(old, BuildConfig("fp16"), onnx_info()) == PrecisionPlan(False, ("FP16",))
    assert plan_precision(old, BuildConfig("int8"), onnx_info(has_qdq=True)) == PrecisionPlan(False, ("INT8", "FP16"))


def test_int8_needs_a_qdq_onnx_and_never_uses_the_implicit_calibrator() -> None:
    for trt in (TRT10, TRT11):
        with pytest.raises(BuildError, match="implicit INT8 calibrators are not used"):
            plan_precision(trt_compat.probe(trt), BuildConfig("int8"), onnx_info())
        plan = plan_precision(trt_compat.probe(trt), BuildConfig("int8"), onnx_info(has_qdq=True))
        assert plan == PrecisionPlan(strongly_typed=True)


def test_precision_must_agree_with_the_onnx() -> None:
    with pytest.raises(BuildError, match="exported in fp16"):
        plan_precision(trt_compat.probe(TRT11), BuildConfig("fp32"), onnx_info("float16"))
    with pytest.raises(BuildError, match="Q/DQ"):
        plan_precision(trt_compat.probe(TRT11), BuildConfig("fp32"), onnx_info(has_qdq=True))
    assert plan_precision(trt_compat.probe(TRT11), BuildConfig("fp32"), onnx_info()) == PrecisionPlan(True)


# ------------------------------------------------------------------------------------ configure step


def test_configure_takes_the_legacy_fp16_flag_path_on_tensorrt_10() -> None:
    features, config = trt_compat.probe(TRT10), BuildConfig("fp16", (1, 8, 32), 160, strongly_typed=False)
    plan = plan_precision(features, config, onnx_info())
    builder = RecordingBuilder()
    create_network(TRT10, builder, features, plan)
    built = configure(TRT10, builder, network(), config, features, plan, timing_cache=b"")
    assert builder.network_flags == 0 and built.flags == ["FP16"]
    assert built.pools == {"WORKSPACE": 4 << 30}
    assert built.profiles[0].shapes == {"images": ((1, 3, 160, 160), (8, 3, 160, 160), (32, 3, 160, 160))}
    assert built.timing_cache == (("cache", b""), False)


def test_configure_builds_strongly_typed_without_flags_on_tensorrt_11() -> None:
    features = trt_compat.probe(TRT11)
    config = BuildConfig("fp16", (1, 32), 160, workspace_gib=1.5, hardware_compatibility="ampere_plus")
    plan = plan_precision(features, config, onnx_info("float16"))
    builder = RecordingBuilder()
    create_network(TRT11, builder, features, plan)
    built = configure(TRT11, builder, network(), config, features, plan, timing_cache=b"cached")
    assert builder.network_flags == 1 << 1 and built.flags == []
    assert built.pools == {"WORKSPACE": int(1.5 * (1 << 30))}
    assert built.profiles[0].shapes["images"][2] == (32, 3, 160, 160)
    assert built.timing_cache == (("cache", b"cached"), False)
    assert built.hardware_compatibility_level == TRT11.HardwareCompatibilityLevel.AMPERE_PLUS


def test_configure_adds_no_profile_to_a_static_network() -> None:
    features = trt_compat.probe(TRT11)
    built = configure(TRT11, RecordingBuilder(), network((4, 3, 160, 160)), BuildConfig("fp32", (4,), 160), features,
                      PrecisionPlan(True), timing_cache=None)  # fmt: skip
    assert built.profiles == [] and built.timing_cache is None


def test_unoffered_hardware_level_is_a_build_error() -> None:
    bare = fake_trt("10.0.1.6", weak_typing=True)
    bare.HardwareCompatibilityLevel = SimpleNamespace(NONE=0)
    features = trt_compat.probe(bare)
    with pytest.raises(BuildError, match="no hardware-compatibility level 'ampere_plus'"):
        configure(bare, RecordingBuilder(), network(), BuildConfig("fp32", hardware_compatibility="ampere_plus"),
                  features, PrecisionPlan(True), None)  # fmt: skip


# ------------------------------------------------------------------------------------ ONNX checks


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    model = build_model("yolov6n", num_classes=2).eval()
    return {
        "raw": export_onnx(model, folder / "raw.onnx", ExportOptions(imgsz=(64, 96))),
        "trt": export_onnx(model, folder / "trt.onnx", ExportOptions(imgsz=(64, 96), nms="trt", max_det=20)),
        "static": export_onnx(model, folder / "b2.onnx", ExportOptions(imgsz=(64, 96), dynamic_batch=False, batch=2)),
    }


def qdq_onnx(path: Path) -> Path:
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.02])
    zero = helper.make_tensor("zero", TensorProto.INT8, [], [0])
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["images", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["outputs"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 96])],
        [helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", 3, 64, 96])],
        [scale, zero],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_inspect_onnx_reads_io_nms_and_qdq(exports: dict[str, Path], tmp_path: Path) -> None:
    raw, trt = inspect_onnx(exports["raw"]), inspect_onnx(exports["trt"])
    assert raw.inputs[0] == IOSpec("images", (None, 3, 64, 96), "float32") and (raw.nms, raw.has_qdq) == ("", False)
    assert raw.meta.model == "yolov6n" and len(raw.sha256) == 64
    assert trt.nms == "trt" and [o.name for o in trt.outputs] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert inspect_onnx(qdq_onnx(tmp_path / "q.onnx")).has_qdq
    with pytest.raises(ArtifactError, match="does not exist"):
        inspect_onnx(tmp_path / "missing.onnx")


def test_check_onnx_matches_size_batch_and_nms(exports: dict[str, Path]) -> None:
    raw, trt, static = (inspect_onnx(exports[k]) for k in ("raw", "trt", "static"))
    check_onnx(BuildConfig("fp32", (1, 16), (64, 96)), raw)
    check_onnx(BuildConfig("fp32", (2,), (64, 96)), static)
    check_onnx(BuildConfig("fp32", (1, 4), (64, 96), end2end=True), trt)
    cases = [
        (BuildConfig("fp32", (1,), (64, 64)), raw, "takes 64x96 images"),
        (BuildConfig("fp32", (1, 4), (64, 96)), static, "fixed batch of 2"),
        (BuildConfig("fp32", (1,), (64, 96), end2end=True), raw, "end2end=True needs"),
        (BuildConfig("fp32", (1,), (64, 96)), trt, "end2end=False needs"),
        (BuildConfig("fp32", (1,), (160, 160)), onnx_info(nms="ort"), "NonMaxSuppression"),
    ]
    for config, info, message in cases:
        with pytest.raises(BuildError, match=message):
            check_onnx(config, info)


@pytest.mark.skipif(available("tensorrt"), reason="TensorRT is installed here")
def test_build_without_tensorrt_names_the_extra(exports: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError, match=r"yolov6-sdk\[trt\]"):
        build_engine(exports["raw"], tmp_path / "m.engine", BuildConfig("fp32", (1,), (64, 96)))


# ------------------------------------------------------------------------------------ backend checks


def write_engine_with_sidecar(folder: Path, **changes: Any) -> Path:
    engine = folder / "yolov6n-fp16-bs1.engine"
    engine.write_bytes(b"serialized engine bytes")
    car = Sidecar.make(
        artifact=engine.name,
        kind="engine",
        model="yolov6n",
        precision="fp16",
        imgsz=(640, 640),
        batch_profile=(1, 1, 1),
        tensorrt_version="10.16.1.11",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
    )
    write_sidecar(car.replaced(**changes), engine)
    return engine


def test_backend_preflight_refuses_engines_built_elsewhere(tmp_path: Path) -> None:
    engine = write_engine_with_sidecar(tmp_path)
    assert preflight(engine, "10.16.1.11", "NVIDIA H100 80GB HBM3", "9.0").model == "yolov6n"
    with pytest.raises(ArtifactError, match="rebuild") as info:
        preflight(engine, "11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0")
    assert "built with TensorRT 10.16.1.11, running TensorRT 11.4.0.106" in str(info.value)
    with pytest.raises(ArtifactError, match="rebuild"):
        preflight(engine, "10.16.1.11", "NVIDIA L4", "8.9")


def test_backend_preflight_needs_an_engine_sidecar(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        preflight(tmp_path / "none.engine", "10.16.1.11", "GPU", "9.0")
    bare = tmp_path / "bare.engine"
    bare.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="sidecar bare.json is missing.*rebuild"):
        preflight(bare, "10.16.1.11", "GPU", "9.0")
    onnx_kind = write_engine_with_sidecar(tmp_path, kind="onnx")
    with pytest.raises(ArtifactError, match="not a TensorRT engine"):
        preflight(onnx_kind, "10.16.1.11", "NVIDIA H100 80GB HBM3", "9.0")


def test_backend_on_a_machine_without_gpu_or_tensorrt_says_why(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available() and available("tensorrt"):
        pytest.skip("this machine can run engines")
    with pytest.raises((ArtifactError, MissingDependencyError), match="CUDA GPU|yolov6-sdk\\[trt\\]"):
        TensorRTBackend(write_engine_with_sidecar(tmp_path))


# ------------------------------------------------------------------------------------ real TensorRT


def _gpu_and_tensorrt() -> bool:
    if not available("tensorrt") or not available("torch"):
        return False
    import torch

    return torch.cuda.is_available()


needs_trt = pytest.mark.skipif(not _gpu_and_tensorrt(), reason="needs TensorRT and a CUDA GPU")


@pytest.mark.tensorrt
@needs_trt
def test_fp32_engine_matches_onnxruntime_and_reuses_its_timing_cache(exports: dict[str, Path], tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    config = BuildConfig("fp32", (1, 2, 4), (64, 96))
    engine = build_engine(exports["raw"], tmp_path / "m.engine", config)
    caches = list(tmp_path.glob("timing-trt*.cache"))
    assert len(caches) == 1 and caches[0].stat().st_size > 0
    images = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    expected = ort.InferenceSession(str(exports["raw"]), providers=["CPUExecutionProvider"]).run(
        None, {"images": images}
    )
    for graph in (False, True):
        with TensorRTBackend(engine, cuda_graph=graph) as backend:
            assert backend.info.min_batch == 1 and backend.info.max_batch == 4
            got = backend.infer(torch.from_numpy(images).cuda())["outputs"].cpu().numpy()
            np.testing.assert_allclose(got, expected[0], rtol=1e-3, atol=1e-2)  # met with TF32 cleared only
            got_np = backend.infer(images)["outputs"].cpu().numpy()
            np.testing.assert_allclose(got_np, expected[0], rtol=1e-3, atol=1e-2)
    build_engine(exports["raw"], tmp_path / "again.engine", config)  # loads the cache written above
    assert list(tmp_path.glob("timing-trt*.cache")) == caches


@pytest.mark.tensorrt
@needs_trt
def test_end2end_engine_emits_efficientnms_outputs(exports: dict[str, Path], tmp_path: Path) -> None:
    import torch

    engine = build_engine(exports["trt"], tmp_path / "e2e.engine", BuildConfig("fp32", (1, 2), (64, 96), end2end=True))
    with TensorRTBackend(engine) as backend:
        out = backend.infer(torch.rand(2, 3, 64, 96, device="cuda"))
    assert out["num_dets"].shape == (2, 1) and out["num_dets"].dtype == torch.int32
    assert out["det_boxes"].shape == (2, 20, 4) and out["det_classes"].dtype == torch.int32


@pytest.mark.tensorrt
@needs_trt
def test_graphs_of_alternating_shapes_keep_their_own_results(tmp_path: Path) -> None:
    """Rectangular inference alternates input sizes: each shape's graph replays its own context, so A after B
    still gives A's outputs; a size outside the profile is one clear error naming the profile's range."""
    import onnxruntime as ort
    import torch

    model = build_model("yolov6n", num_classes=2).eval()
    onnx_path = export_onnx(model, tmp_path / "hw.onnx", ExportOptions(imgsz=(96, 96), dynamic_hw=True))
    engine = build_engine(onnx_path, tmp_path / "hw.engine", BuildConfig("fp32", (1, 2), (96, 96)))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    batches = [rng.random(shape, dtype=np.float32) for shape in ((1, 3, 96, 64), (2, 3, 64, 96), (1, 3, 96, 64))]
    with TensorRTBackend(engine, cuda_graph=True) as backend:
        for images in batches + batches:
            got = backend.infer(torch.from_numpy(images).cuda())["outputs"].cpu().numpy()
            np.testing.assert_allclose(got, session.run(None, {"images": images})[0], rtol=1e-3, atol=1e-2)
        with pytest.raises(YOLOv6Error, match=r"outside the engine's profile \[1, 3, 32, 32\] \.\. \[2, 3, 96, 96\]"):
            backend.infer(torch.rand(1, 3, 128, 96, device="cuda"))


@pytest.mark.tensorrt
@needs_trt
def test_int8_engine_from_the_tensorrt_qdq_model_parses_and_runs(exports: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from yolov6_sdk.export import calibration, ort_quant
    from yolov6_sdk.training.datagen import write_calibration_images

    write_calibration_images(tmp_path / "calib", 4, seed=1, imgsz=(80, 120))
    calib = calibration.load_calibration_set(tmp_path / "calib", (64, 96), size=4, batch=2)
    ranges = ort_quant.calibrate(onnx.load(str(exports["raw"])), calib, "minmax")
    qdq_path = ort_quant.quantize_model(exports["raw"], tmp_path / "q.onnx", ranges, "tensorrt").path
    engine = build_engine(qdq_path, tmp_path / "q.engine", BuildConfig("int8", (1, 2), (64, 96)))
    with TensorRTBackend(engine) as backend:
        assert backend.infer(torch.rand(2, 3, 64, 96, device="cuda"))["outputs"].shape == (2, 126, 7)
