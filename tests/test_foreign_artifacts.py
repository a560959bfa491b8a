"""Artifacts made elsewhere and GPU runtimes chosen on purpose: engines without a sidecar, class names given by the
user, ONNX Runtime's GPU providers, and one onnxruntime distribution at a time.

TensorRT and CUDA are stand-ins here (SimpleNamespace modules, a fake engine, torch.cuda patched): the tests check
our reading of an engine and our provider choices, never TensorRT's or ONNX Runtime's results.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import randomize_model
from onnx import TensorProto, helper, numpy_helper

import yolov6_sdk.runtime.backends.onnxruntime as ort_backend
from yolov6_sdk.artifact import trt_compat
from yolov6_sdk.artifact.sidecar import Sidecar, write_sidecar
from yolov6_sdk.artifact.spec import END2END_OUTPUTS, IOSpec
from yolov6_sdk.errors import ArtifactError, ConfigError, MissingDependencyError
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.backends.tensorrt import TensorRTBackend, checked_sidecar, engine_model_info
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.names import read_names
from yolov6_sdk.weights import save_checkpoint

RAW_OUT = (IOSpec("outputs", (None, 8400, 9), "float32"),)
E2E_OUT = tuple(IOSpec(name, (1, 100), "float32") for name in END2END_OUTPUTS)

# ------------------------------------------------------------------------------------ engines without sidecar


def test_engine_info_reads_size_classes_and_batches_from_the_tensors() -> None:
    static = engine_model_info("e.engine", IOSpec("images", (1, 3, 640, 480), "float16"), RAW_OUT, (1, 1), None)
    assert static.imgsz == (640, 480) and static.names == ["0", "1", "2", "3"] and static.precision == "fp16"
    assert not static.end2end and not static.multi_label and (static.min_batch, static.max_batch) == (1, 1)
    dynamic = engine_model_info("e.engine", IOSpec("images", (None, 3, None, None), "float32"), E2E_OUT, (1, 8),
                                (320, 416))  # fmt: skip
    assert dynamic.imgsz == (320, 416) and dynamic.end2end and dynamic.multi_label and dynamic.names == []
    assert dynamic.extra["sidecar"] is False and dynamic.max_batch == 8


def test_engine_info_refuses_what_is_no_yolov6_engine() -> None:
    with pytest.raises(ArtifactError, match="not a YOLOv6 engine"):
        engine_model_info("e.engine", IOSpec("images", (1, 3, 64, 64), "float32"),
                          (IOSpec("logits", (1, 1000), "float32"),), (1, 1), None)  # fmt: skip
    with pytest.raises(ArtifactError, match=r"\[B, 3, H, W\]"):
        engine_model_info("e.engine", IOSpec("images", (1, 3, None, None), "float32"), RAW_OUT, (1, 1), None)


def test_engine_without_sidecar_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bare = tmp_path / "trtexec.engine"
    bare.write_bytes(b"plan")
    with caplog.at_level(logging.WARNING):
        assert checked_sidecar(bare, "10.16.1.11", "NVIDIA H100", "9.0") is None
    assert "has no sidecar trtexec.json" in caplog.text and "--names" in caplog.text
    car = Sidecar.make(artifact=bare.name, kind="engine", model="yolov6n", precision="fp16", imgsz=(640, 640),
                       batch_profile=(1, 1, 1), tensorrt_version="10.16.1.11", gpu_name="NVIDIA L4",
                       compute_capability="8.9")  # fmt: skip
    write_sidecar(car, bare)
    with pytest.raises(ArtifactError, match="rebuild"):  # a sidecar that is there is still checked
        checked_sidecar(bare, "10.16.1.11", "NVIDIA H100", "9.0")
    with pytest.raises(ArtifactError, match="does not exist"):
        checked_sidecar(tmp_path / "none.engine", "10.16.1.11", "NVIDIA H100", "9.0")


class _FakeEngine:
    """A deserialised engine's name-based API: dynamic batch and size, raw outputs of 4 classes."""

    shapes = {"images": (-1, 3, -1, -1), "outputs": (-1, -1, 9)}
    num_io_tensors = 2
    device_memory_size_v2 = 1 << 20

    def get_tensor_name(self, index: int) -> str:
        return list(self.shapes)[index]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def get_tensor_dtype(self, name: str) -> Any:
        return SimpleNamespace(name="FLOAT")

    def get_tensor_mode(self, name: str) -> str:
        return "input" if name == "images" else "output"

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[tuple[int, ...], ...]:
        return (1, 3, 320, 320), (4, 3, 640, 480), (8, 3, 1280, 1280)


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch sees one CUDA GPU and ``tensorrt`` imports as a stand-in that deserialises :class:`_FakeEngine`."""
    trt = SimpleNamespace(
        __version__="10.16.1.11",
        Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: _FakeEngine()),
        TensorIOMode=SimpleNamespace(INPUT="input", OUTPUT="output"),
        ICudaEngine=SimpleNamespace(num_io_tensors=0, device_memory_size_v2=0),
    )
    monkeypatch.setattr(trt_compat, "load_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_compat, "trt_logger", lambda module: None)
    for name, value in {"is_available": lambda: True, "current_device": lambda: 0,
                        "get_device_capability": lambda dev=None: (9, 0),
                        "get_device_name": lambda dev=None: "NVIDIA H100",
                        "device": lambda dev: contextlib.nullcontext()}.items():  # fmt: skip
        monkeypatch.setattr(torch.cuda, name, value)


def test_backend_reads_a_trtexec_engine_from_the_engine_itself(
    fake_gpu: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialised plan")
    with caplog.at_level(logging.WARNING):
        backend = TensorRTBackend(engine, device="cuda:0")
    info = backend.info
    assert backend.sidecar is None and "no sidecar" in caplog.text
    assert info.imgsz == (640, 480) and info.names == ["0", "1", "2", "3"] and not info.end2end
    assert (info.min_batch, info.max_batch) == (1, 8) and info.inputs[0].shape == (None, 3, None, None)
    assert info.extra["device_memory_bytes"] == 1 << 20


# ------------------------------------------------------------------------------------------- class names


def test_names_come_from_a_list_a_text_file_a_data_yaml_or_commas(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("person\n\ncar\n")
    (tmp_path / "data.yaml").write_text("path: .\nnames:\n  1: car\n  0: person\n")
    (tmp_path / "list.yaml").write_text("names: [person, car]\n")
    (tmp_path / "bad.yaml").write_text("nc: 2\n")
    for source in (["person", "car"], tmp_path / "names.txt", str(tmp_path / "data.yaml"), tmp_path / "list.yaml",
                   "person,car"):  # fmt: skip
        assert read_names(source) == ["person", "car"]
    with pytest.raises(ConfigError, match="no 'names'"):
        read_names(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="non-empty"):
        read_names("person,,car")


def test_detector_names_replace_the_artifacts_and_must_match_its_classes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", fuse(randomize_model(build_model("yolov6n", 3).eval())), imgsz=64)
    with Detector(checkpoint, device="cpu", names="cat,dog,bird") as detector:
        assert detector.names == ["cat", "dog", "bird"]
    with pytest.raises(ConfigError, match="2 class names given .* detects 3 classes"):
        Detector(checkpoint, device="cpu", names=["cat", "dog"])


# ------------------------------------------------------------------------------- ONNX Runtime's providers


ALL_GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cuda_is_the_default_gpu_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ALL_GPU)
    for device, index in (("cuda:1", 1), ("auto", 0), ("0", 0)):
        providers, resolved = ort_backend.select_providers(device)
        assert providers == [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        assert resolved == f"cuda:{index}"
    assert ort_backend.select_providers("cpu") == (["CPUExecutionProvider"], "cpu")


def test_tensorrt_provider_only_when_asked_and_with_its_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ALL_GPU)
    cache = ort_backend.trt_cache_dir(tmp_path / "m.onnx")
    providers, _ = ort_backend.select_providers("cuda", "tensorrt", cache)
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == ALL_GPU
    options = providers[0][1]
    assert options["trt_engine_cache_enable"] and options["trt_timing_cache_enable"]
    assert options["trt_engine_cache_path"] == str(tmp_path / "m.ort-trt-cache") == options["trt_timing_cache_path"]
    with pytest.raises(ConfigError, match="runs on a GPU"):
        ort_backend.select_providers("cpu", "tensorrt")
    with pytest.raises(ConfigError, match="provider must be one of"):
        ort_backend.select_providers("cuda", "openvino")


def test_a_missing_gpu_provider_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert ort_backend.select_providers("auto") == (["CPUExecutionProvider"], "cpu")
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime-gpu"):
        ort_backend.select_providers("cuda")
    with pytest.raises(MissingDependencyError, match="TensorrtExecutionProvider"):
        ort_backend.select_providers("auto", "tensorrt")


def _qdq_model(path: Path, zero_point_type: int) -> Path:
    """x -> QuantizeLinear -> DequantizeLinear -> y, with a zero point of ``zero_point_type``."""
    dtype = np.uint8 if zero_point_type == TensorProto.UINT8 else np.int8
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(128 if dtype == np.uint8 else 0, dtype), "zero")
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"], name="dq0")]  # fmt: skip
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [scale, zero])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_tensorrt_provider_refuses_uint8_asymmetric_qdq(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--backend tensorrt"):
        ort_backend.refuse_asymmetric_qdq(_qdq_model(tmp_path / "cpu.onnx", TensorProto.UINT8))
    ort_backend.refuse_asymmetric_qdq(_qdq_model(tmp_path / "trt.onnx", TensorProto.INT8))  # symmetric: accepted


def test_onnxruntime_and_onnxruntime_gpu_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"onnxruntime": "1.27.0", "onnxruntime-gpu": "1.27.0"}

    def version(name: str) -> str:
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    ort_backend.check_one_onnxruntime.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match="onnxruntime 1.27.0 and onnxruntime-gpu 1.27.0"):
            ort_backend.check_one_onnxruntime()
        del installed["onnxruntime"]
        ort_backend.check_one_onnxruntime()
    finally:
        ort_backend.check_one_onnxruntime.cache_clear()
