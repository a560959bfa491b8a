"""The SDK's TensorRT calls against the strict TensorRT 10 and 11 stand-in (tests/tensorrt_double.py).

Every build option (fp32/fp16/int8 from PTQ and QAT, end-to-end, dynamic batch and height/width, hardware
compatibility, timing caches) goes through :func:`build_engine` on both major versions; the tests check what the
SDK asked of TensorRT (call order, flags, profiles, parse rules) and never any output values, which the stand-in
does not compute. The backend's shape, binding and execution calls go against the stand-in's engine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import onnx
import pytest
import torch
from conftest import randomize_model
from tensorrt_double import make_tensorrt, parse_problems

from yolov6_sdk.artifact import trt_compat
from yolov6_sdk.artifact.sidecar import read_sidecar
from yolov6_sdk.errors import BuildError, YOLOv6Error
from yolov6_sdk.export import calibration, fake_quant, ort_quant
from yolov6_sdk.export import tensorrt as builder
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.export.tensorrt import BuildConfig, build_engine
from yolov6_sdk.export.trt_timing_cache import save_timing_cache
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.backends import tensorrt as backend
from yolov6_sdk.runtime.backends.base import Backend
from yolov6_sdk.runtime.backends.cuda_graphs import ShapeCache
from yolov6_sdk.training.datagen import write_calibration_images

HW = (64, 96)
MAJORS = (10, 11)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every ONNX form the builder takes: raw (dynamic batch, fixed batch, dynamic H/W, fp16), end-to-end, and
    int8 Q/DQ for TensorRT from post-training quantisation and from quantisation-aware training."""
    folder = tmp_path_factory.mktemp("contract")
    model = fuse(randomize_model(build_model("yolov6n", num_classes=2).eval(), seed=1))
    out = {
        "raw": export_onnx(model, folder / "raw.onnx", ExportOptions(imgsz=HW)),
        "static": export_onnx(model, folder / "b2.onnx", ExportOptions(imgsz=HW, dynamic_batch=False, batch=2)),
        "hw": export_onnx(model, folder / "hw.onnx", ExportOptions(imgsz=HW, dynamic_hw=True)),
        "half": export_onnx(model, folder / "half.onnx", ExportOptions(imgsz=HW, half=True)),
        "trt": export_onnx(model, folder / "trt.onnx", ExportOptions(imgsz=HW, nms="trt", max_det=20)),
    }
    write_calibration_images(folder / "calib", 4, seed=1, imgsz=(80, 120))
    calib = calibration.load_calibration_set(folder / "calib", HW, size=4, batch=2)
    ranges = ort_quant.calibrate(onnx.load(str(out["raw"])), calib, "minmax")
    out["ptq"] = ort_quant.quantize_model(out["raw"], folder / "ptq.onnx", ranges, "tensorrt").path
    plan = fake_quant.plan_from_qdq(model, onnx.load(str(out["ptq"])), "tensorrt")
    qat = fake_quant.attach(model, plan)
    out["qat"] = fake_quant.export_qat_onnx(qat, folder / "qat.onnx", ExportOptions(imgsz=HW))
    return out


@pytest.fixture(params=MAJORS, ids=lambda m: f"trt{m}")
def trt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh stand-in module of one major version, installed as the SDK's TensorRT, on a stand-in H100."""
    module = make_tensorrt(request.param)
    monkeypatch.setattr(trt_compat, "load_tensorrt", lambda: module)
    monkeypatch.setattr(builder, "current_gpu", lambda: (module.recorder.gpu, "9.0"))
    return module


def engine_of(trt: Any, path: Path) -> Any:
    runtime = trt.Runtime(trt_compat.trt_logger(trt))
    return runtime.deserialize_cuda_engine(path.read_bytes())


def calls(trt: Any, name: str) -> list[tuple[Any, ...]]:
    return [args for call, args in trt.recorder.calls if call == name]


# --------------------------------------------------------------------------------------------------- build matrix

STRONG = 1 << 1  # 1 << STRONGLY_TYPED
MATRIX = [  # (case, ONNX, config, flags set, TF32 cleared)
    ("fp32", "raw", BuildConfig("fp32", (1, 2, 4), HW), [], True),
    ("fp16", "half", BuildConfig("fp16", (1, 4), HW), [], False),
    ("int8-ptq", "ptq", BuildConfig("int8", (1, 4), HW), [], False),
    ("int8-qat", "qat", BuildConfig("int8", (1, 4), HW), [], False),
    ("end2end", "trt", BuildConfig("fp32", (1, 2), HW, end2end=True), [], True),
    ("dynamic-hw", "hw", BuildConfig("fp32", (1, 2), HW), [], True),
    ("static", "static", BuildConfig("fp32", (2,), HW), [], True),
    ("ampere-plus", "raw", BuildConfig("fp32", (1,), HW, hardware_compatibility="ampere_plus"), [], True),
]


@pytest.mark.parametrize(("case", "onnx_key", "config", "flags", "tf32_cleared"), MATRIX, ids=[m[0] for m in MATRIX])
def test_every_build_option_calls_tensorrt_by_its_rules(
    trt: Any, exports: dict[str, Path], tmp_path: Path, case: str, onnx_key: str, config: BuildConfig,
    flags: list[str], tf32_cleared: bool,
) -> None:  # fmt: skip
    engine_path = build_engine(exports[onnx_key], tmp_path / f"{case}.engine", config)
    names = trt.recorder.names()
    assert (
        names.index("init_libnvinfer_plugins")
        < names.index("parse_from_file")
        < names.index("build_serialized_network")
    )
    assert calls(trt, "create_network") == [(STRONG,)]  # strongly typed on 10 and 11
    assert [a[0] for a in calls(trt, "set_flag")] == flags
    assert (calls(trt, "clear_flag") == [("TF32",)]) is tf32_cleared  # fp32 computes in fp32
    assert calls(trt, "set_memory_pool_limit") == [("WORKSPACE", 4 << 30)]
    engine = engine_of(trt, engine_path)
    profiles = engine.description["profiles"]
    low, opt, high = builder.input_profile(config, (-1, 3, -1, -1) if onnx_key == "hw" else (-1, 3, *HW))
    assert profiles == ([] if onnx_key == "static" else [{"images": [list(low), list(opt), list(high)]}])
    level = trt.HardwareCompatibilityLevel.AMPERE_PLUS if case == "ampere-plus" else 0
    assert engine.description["hardware_compatibility"] == level
    car = read_sidecar(engine_path)
    assert (car.precision, car.batch_profile, car.tensorrt_version) == (
        config.precision,
        config.profile,
        trt.__version__,
    )
    assert car.extra["builder_flags"] == flags and car.extra["strongly_typed"] is True


@pytest.mark.parametrize("onnx_key", ["raw", "ptq", "qat"])
def test_legacy_weak_typing_takes_flags_on_10_and_is_refused_on_11(
    trt: Any, exports: dict[str, Path], tmp_path: Path, onnx_key: str
) -> None:
    precision = "fp16" if onnx_key == "raw" else "int8"
    config = BuildConfig(precision, (1, 2), HW, strongly_typed=False)
    if trt.__version__.startswith("11."):
        with pytest.raises(BuildError, match="no weak typing"):
            build_engine(exports[onnx_key], tmp_path / "m.engine", config)
        assert "build_serialized_network" not in trt.recorder.names()
        return
    build_engine(exports[onnx_key], tmp_path / "m.engine", config)
    assert calls(trt, "create_network") == [(0,)]
    expected = ["FP16"] if precision == "fp16" else ["INT8", "FP16"]
    assert [a[0] for a in calls(trt, "set_flag")] == expected and calls(trt, "clear_flag") == []


def test_fp32_onnx_is_not_built_as_fp16_by_a_flag_on_11(trt: Any, exports: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="half=True"):
        build_engine(exports["raw"], tmp_path / "m.engine", BuildConfig("fp16", (1,), HW))
    assert "Builder" not in trt.recorder.names()


# --------------------------------------------------------------------------------------------------- parse rules


def test_int32_biases_behind_dequantize_fail_the_parse(
    trt: Any, exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TensorRT target quantised as ONNX Runtime does by default (int32 biases) does not parse."""
    monkeypatch.setitem(
        ort_quant.TARGETS, "tensorrt", dataclasses.replace(ort_quant.TARGETS["tensorrt"], float_bias=False)
    )
    model = onnx.load(str(exports["ptq"]))
    assert parse_problems(model, plugins=True, max_opset=22) == []  # the SDK's TensorRT Q/DQ model parses
    write_calibration_images(tmp_path / "calib", 2, seed=2, imgsz=(80, 120))
    calib = calibration.load_calibration_set(tmp_path / "calib", HW, size=2, batch=2)
    ranges = ort_quant.calibrate(onnx.load(str(exports["raw"])), calib, "minmax")
    int32 = ort_quant.quantize_model(exports["raw"], tmp_path / "int32.onnx", ranges, "tensorrt").path
    with pytest.raises(BuildError, match="only activation types allowed as input to this layer"):
        build_engine(int32, tmp_path / "m.engine", BuildConfig("int8", (1,), HW))


def test_parser_rules_of_the_double_are_strict(exports: dict[str, Path]) -> None:
    model = onnx.load(str(exports["trt"]))
    assert any("plugins not loaded" in p for p in parse_problems(model, plugins=False, max_opset=22))
    model.opset_import[0].version = 24
    assert any("unsupported opset 24" in p for p in parse_problems(model, plugins=True, max_opset=23))
    model.graph.node[0].op_type = "Einsum"
    assert any("No importer registered for op: Einsum" in p for p in parse_problems(model, True, 22))


# --------------------------------------------------------------------------------------------------- timing cache


def test_timing_cache_is_named_by_gpu_model_and_reused(trt: Any, exports: dict[str, Path], tmp_path: Path) -> None:
    config = BuildConfig("fp32", (1,), HW)
    build_engine(exports["raw"], tmp_path / "a.engine", config)
    cache = tmp_path / f"timing-trt{trt.__version__}-sm90-nvidia-h100-80gb-hbm3.cache"
    assert sorted(p.name for p in tmp_path.glob("timing-*.cache")) == [cache.name]
    assert calls(trt, "create_timing_cache") == [(0,)] and calls(trt, "set_timing_cache")[0][2] is True
    trt.recorder.calls.clear()
    saved = cache.stat().st_size
    build_engine(exports["raw"], tmp_path / "b.engine", config)
    assert calls(trt, "create_timing_cache") == [(saved,)]
    assert calls(trt, "set_timing_cache") == [(1, False, True)]  # the saved cache (one build's entries) is taken
    assert json.loads(cache.read_bytes())["entries"] == 2


def test_a_cache_from_another_gpu_or_damaged_is_replaced(
    trt: Any, exports: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared.cache"
    config = BuildConfig("fp32", (1,), HW, timing_cache=shared)
    trt.recorder.gpu = "NVIDIA L4"
    build_engine(exports["raw"], tmp_path / "l4.engine", config)
    trt.recorder.gpu = "NVIDIA H100 80GB HBM3"
    trt.recorder.calls.clear()
    with caplog.at_level(logging.WARNING, logger="yolov6_sdk.export.tensorrt"):
        build_engine(exports["raw"], tmp_path / "h100.engine", config)
    assert [a[2] for a in calls(trt, "set_timing_cache")] == [False, True]  # refused, then a new one taken
    assert "refused the timing cache" in caplog.text
    shared.write_bytes(b"not a cache")
    trt.recorder.calls.clear()
    build_engine(exports["raw"], tmp_path / "again.engine", config)
    assert calls(trt, "create_timing_cache") == [(11,), (0,)] and json.loads(shared.read_bytes())["entries"] == 1


def test_no_timing_cache_to_save_writes_nothing(tmp_path: Path) -> None:
    trt = make_tensorrt(11)
    config = trt.IBuilderConfig()  # no cache set: get_timing_cache() returns None
    assert save_timing_cache(config, tmp_path / "t.cache") is False and not (tmp_path / "t.cache").exists()


# --------------------------------------------------------------------------------------------------- EfficientNMS


def test_efficient_nms_limits_are_checked(exports: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    info = builder.inspect_onnx(exports["trt"])
    config = BuildConfig("fp32", (1,), HW, end2end=True)
    with pytest.raises(BuildError, match="top 4096"):
        builder.check_onnx(config, dataclasses.replace(info, meta=dataclasses.replace(info.meta, max_det=5000)))
    with caplog.at_level(logging.WARNING, logger="yolov6_sdk.export.tensorrt"):
        builder.check_onnx(config, dataclasses.replace(info, meta=dataclasses.replace(info.meta, conf=0.001)))
    assert "sorts only the top 4096" in caplog.text


# --------------------------------------------------------------------------------------------------- execution


def test_input_shape_outside_the_profile_names_the_range(trt: Any, exports: dict[str, Path], tmp_path: Path) -> None:
    engine = engine_of(trt, build_engine(exports["hw"], tmp_path / "hw.engine", BuildConfig("fp32", (1, 4), HW)))
    context = engine.create_execution_context()
    backend.set_input_shape(context, engine, "images", (4, 3, 32, 64), tmp_path / "hw.engine")
    with pytest.raises(YOLOv6Error, match=r"\[4, 3, 32, 128\] lies outside the engine's profile \[1, 3, 32, 32\] "
                       r"\.\. \[4, 3, 64, 96\]"):  # fmt: skip
        backend.set_input_shape(context, engine, "images", (4, 3, 32, 128), tmp_path / "hw.engine")


def test_execution_needs_every_address_and_a_stream_of_its_own(
    trt: Any, exports: dict[str, Path], tmp_path: Path
) -> None:
    engine = engine_of(
        trt, build_engine(exports["trt"], tmp_path / "e.engine", BuildConfig("fp32", (1, 2), HW, end2end=True))
    )
    context = engine.create_execution_context()
    backend.set_input_shape(context, engine, "images", (2, 3, *HW), tmp_path / "e.engine")
    assert context.get_tensor_shape("det_boxes") == (2, 20, 4)
    backend.bind_addresses(context, {"images": 0x1000, "num_dets": 0x2000})
    with pytest.raises(YOLOv6Error, match="execution failed"):
        backend.execute(context, 7, tmp_path / "e.engine")
    backend.bind_addresses(
        context, {name: 0x3000 + i for i, name in enumerate(["det_boxes", "det_scores", "det_classes"])}
    )
    backend.execute(context, 7, tmp_path / "e.engine")
    assert calls(trt, "execute_async_v3")[-1] == (7, True) and "warning" not in trt.recorder.names()


# --------------------------------------------------------------------------------------------------- backend state


def cpu_backend(trt: Any, engine_path: Path, cuda_graph: bool) -> backend.TensorRTBackend:
    """The TensorRT backend over the stand-in's engine with CPU torch buffers: its per-shape bookkeeping and its
    TensorRT calls run here; CUDA-only steps (streams, capture) are what the caller provides or what fails."""
    loaded = backend.TensorRTBackend.__new__(backend.TensorRTBackend)
    Backend.__init__(loaded, engine_path, "cpu")
    loaded._torch, loaded._dev, loaded._trt, loaded.cuda_graph = torch, torch.device("cpu"), trt, cuda_graph
    loaded._engine = engine_of(trt, engine_path)
    inputs, loaded._outputs = trt_compat.engine_io(trt, loaded._engine)
    loaded._input = inputs[0]
    loaded._min_batch, loaded._max_batch = loaded._batch_range()
    return loaded


def thread_state(loaded: backend.TensorRTBackend, released: list[Any]) -> backend._ThreadState:
    stream = SimpleNamespace(cuda_stream=7, synchronize=lambda: None)
    return backend._ThreadState(stream, loaded._new_context(), ShapeCache(2, release=released.append))


def run_shape(loaded: backend.TensorRTBackend, state: backend._ThreadState, batch: int) -> backend._ShapeState:
    images = torch.rand(batch, 3, *HW)
    shape = tuple(images.shape)
    entry = state.shapes.get_or_make(shape, lambda: loaded._new_shape(state, shape))
    outputs = loaded._run(state, entry, images)
    assert outputs["det_boxes"].shape == (batch, 20, 4)
    return entry


def test_each_graph_shape_gets_its_own_context_and_failed_captures_run_eagerly(
    trt: Any, exports: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = build_engine(exports["trt"], tmp_path / "e.engine", BuildConfig("fp32", (1, 4), HW, end2end=True))
    loaded, released = cpu_backend(trt, engine, cuda_graph=True), []
    state = thread_state(loaded, released)
    with caplog.at_level(logging.WARNING, logger="yolov6_sdk.runtime.backends.cuda_graphs"):
        one, two = run_shape(loaded, state, 1), run_shape(loaded, state, 2)
        again = run_shape(loaded, state, 1)  # no capture is tried again for a shape whose capture failed
    assert again is one and len({id(state.context), id(one.context), id(two.context)}) == 3
    assert one.context.shapes == {"images": (1, 3, *HW)} and two.context.shapes == {"images": (2, 3, *HW)}
    assert (one.captured, one.graph, two.captured) == (True, None, True)  # no CUDA here: every capture fails
    assert caplog.text.count("CUDA graph capture of input") == 2
    assert (
        calls(trt, "execute_async_v3") == [(7, True)] * 5
    )  # two warm-ups, three eager runs, all on the backend's stream
    run_shape(loaded, state, 3)  # a third shape drops the least recently used (two) from the bounded cache
    assert released == [two] and state.shapes.keys() == [(1, 3, *HW), (3, 3, *HW)]


def test_eager_runs_share_the_threads_context_and_set_its_shape_each_time(
    trt: Any, exports: dict[str, Path], tmp_path: Path
) -> None:
    engine = build_engine(exports["trt"], tmp_path / "e.engine", BuildConfig("fp32", (1, 4), HW, end2end=True))
    loaded = cpu_backend(trt, engine, cuda_graph=False)
    state = thread_state(loaded, [])
    trt.recorder.calls.clear()
    one, two = run_shape(loaded, state, 1), run_shape(loaded, state, 2)
    run_shape(loaded, state, 1)
    assert one.context is None and two.context is None and "create_execution_context" not in trt.recorder.names()
    assert [s for _, s, _ in calls(trt, "set_input_shape")] == [(1, 3, *HW)] * 2 + [(2, 3, *HW)] * 2 + [(1, 3, *HW)]
    with pytest.raises(YOLOv6Error, match="outside the engine's profile"):
        run_shape(loaded, state, 5)
