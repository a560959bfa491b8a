"""Triton model repositories: config.pbtxt parsed back must describe the artifact's real inputs and outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from yolov6_sdk.artifact.sidecar import Sidecar, write_sidecar
from yolov6_sdk.artifact.spec import IOSpec
from yolov6_sdk.errors import ArtifactError, ConfigError
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.export.triton import preferred_batch_sizes, write_triton_repository
from yolov6_sdk.models import build_model

ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(int32)": "TYPE_INT32", "tensor(float16)": "TYPE_FP16"}

# ------------------------------------------------------------------------ a small protobuf text-format reader

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([\[\]{}:,])|([^\s\[\]{}:,"]+))')


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        assert match, f"cannot tokenise at {text[pos : pos + 20]!r}"
        tokens.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return tokens


def _value(tokens: list[str], i: int) -> tuple[Any, int]:
    token = tokens[i]
    if token == "{":
        return _message(tokens, i + 1, "}")
    if token == "[":
        values, i = [], i + 1
        while tokens[i] != "]":
            value, i = _value(tokens, i)
            values.append(value)
            i += tokens[i] == ","
        return values, i + 1
    if token.startswith('"'):
        return json.loads(token), i + 1
    return (int(token) if re.fullmatch(r"-?\d+", token) else token), i + 1


def _message(tokens: list[str], i: int, end: str | None) -> tuple[dict[str, list[Any]], int]:
    """Fields as ``{name: [values]}`` (every field a list, as repeated fields may occur many times)."""
    fields: dict[str, list[Any]] = {}
    while i < len(tokens) and tokens[i] != end:
        name, i = tokens[i], i + 1
        i += tokens[i] == ":"
        value, i = _value(tokens, i)
        fields.setdefault(name, []).extend(value if isinstance(value, list) else [value])
    return fields, i + 1


def parse_pbtxt(text: str) -> dict[str, list[Any]]:
    return _message(_tokens(text), 0, None)[0]


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    model = build_model("yolov6n", num_classes=4).eval()
    return {
        "raw": export_onnx(model, folder / "yolov6n-fp32.onnx", ExportOptions(imgsz=(64, 96))),
        "e2e": export_onnx(
            model, folder / "e2e.onnx", ExportOptions(imgsz=(64, 96), nms="ort", max_det=10, simplify=False)
        ),
        "static": export_onnx(
            model, folder / "b2.onnx", ExportOptions(imgsz=(64, 96), dynamic_batch=False, batch=2, simplify=False)
        ),
    }


def read_config(folder: Path) -> dict[str, list[Any]]:
    return parse_pbtxt((folder / "config.pbtxt").read_text())


def tensors(config: dict[str, list[Any]], key: str) -> list[tuple[str, str, list[int]]]:
    return [(t["name"][0], t["data_type"][0], t["dims"]) for t in config[key]]


# ------------------------------------------------------------------------ ONNX artifacts


@pytest.mark.parametrize("kind", ["raw", "e2e"])
def test_onnx_config_matches_the_sessions_inputs_and_outputs(
    exports: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    folder = write_triton_repository(exports[kind], tmp_path / "repo", model_name="yolov6n")
    assert folder == tmp_path / "repo" / "yolov6n"
    assert (folder / "1" / "model.onnx").read_bytes() == exports[kind].read_bytes()
    config = read_config(folder)
    assert (config["name"], config["platform"], config["max_batch_size"]) == (["yolov6n"], ["onnxruntime_onnx"], [32])
    session = ort.InferenceSession(str(exports[kind]), providers=["CPUExecutionProvider"])
    for key, args in (("input", session.get_inputs()), ("output", session.get_outputs())):
        expected = [(a.name, ORT_TYPES[a.type], [d if isinstance(d, int) else -1 for d in a.shape[1:]]) for a in args]
        assert tensors(config, key) == expected
        assert all(isinstance(a.shape[0], str) for a in args)  # the batch axis Triton leaves out is the dynamic one
    assert config["dynamic_batching"][0]["preferred_batch_size"] == [8, 16, 32]
    params = {p["key"][0]: p["value"][0]["string_value"][0] for p in config["parameters"]}
    assert json.loads(params["names"]) == list(build_model("yolov6n", num_classes=4).names)
    assert json.loads(params["imgsz"]) == [64, 96] and params["model"] == "yolov6n"
    assert json.loads(params["multi_label"]) is False


def test_raw_onnx_dims_are_the_graph_shapes(exports: dict[str, Path], tmp_path: Path) -> None:
    config = read_config(write_triton_repository(exports["raw"], tmp_path, max_batch=4))
    anchors = 8 * 12 + 4 * 6 + 2 * 3
    assert tensors(config, "input") == [("images", "TYPE_FP32", [3, 64, 96])]
    assert tensors(config, "output") == [("outputs", "TYPE_FP32", [anchors, 9])]
    assert config["max_batch_size"] == [4] and config["dynamic_batching"][0]["preferred_batch_size"] == [2, 4]
    assert config["name"] == ["yolov6n-fp32"]  # the artifact's stem by default


def test_fixed_batch_onnx_gets_max_batch_size_0_and_full_dims(exports: dict[str, Path], tmp_path: Path) -> None:
    config = read_config(write_triton_repository(exports["static"], tmp_path))
    assert config["max_batch_size"] == [0] and "dynamic_batching" not in config
    assert tensors(config, "input") == [("images", "TYPE_FP32", [2, 3, 64, 96])]
    with pytest.raises(ConfigError, match="fixed batch"):
        write_triton_repository(exports["static"], tmp_path, max_batch=8)


# ------------------------------------------------------------------------ engines (I/O from the sidecar)


def engine_with_sidecar(folder: Path, profile: tuple[int, int, int]) -> Path:
    engine = folder / "yolov6n-fp16.engine"
    engine.write_bytes(b"plan bytes")
    outputs = (
        IOSpec("num_dets", (None, 1), "int32"),
        IOSpec("det_boxes", (None, 100, 4), "float32"),
        IOSpec("det_scores", (None, 100), "float32"),
        IOSpec("det_classes", (None, 100), "int32"),
    )
    car = Sidecar.make(
        artifact=engine.name,
        kind="engine",
        model="yolov6n",
        precision="fp16",
        imgsz=(640, 640),
        batch_profile=profile,
        end2end="trt",
        names=("person",),
        tensorrt_version="10.16.1.11",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        inputs=(IOSpec("images", (None, 3, 640, 640), "float16"),),
        outputs=outputs,
    )
    write_sidecar(car, engine)
    return engine


def test_engine_config_uses_the_recorded_io_and_profile(tmp_path: Path) -> None:
    engine = engine_with_sidecar(tmp_path, (1, 8, 16))
    folder = write_triton_repository(engine, tmp_path / "repo")
    assert (folder / "1" / "model.plan").read_bytes() == b"plan bytes"
    config = read_config(folder)
    assert (config["platform"], config["max_batch_size"]) == (["tensorrt_plan"], [16])
    assert tensors(config, "input") == [("images", "TYPE_FP16", [3, 640, 640])]
    assert tensors(config, "output") == [
        ("num_dets", "TYPE_INT32", [1]),
        ("det_boxes", "TYPE_FP32", [100, 4]),
        ("det_scores", "TYPE_FP32", [100]),
        ("det_classes", "TYPE_INT32", [100]),
    ]
    assert config["instance_group"][0]["kind"] == ["KIND_GPU"]
    with pytest.raises(ConfigError, match=r"1\.\.16"):
        write_triton_repository(engine, tmp_path / "repo", max_batch=32)


def test_engine_profile_must_start_at_one(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="starts at 4"):
        write_triton_repository(engine_with_sidecar(tmp_path, (4, 8, 16)), tmp_path / "repo")


def test_engine_without_sidecar_or_bad_name_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="rebuild"):
        write_triton_repository(engine, tmp_path / "repo")
    with pytest.raises(ConfigError, match="model name"):
        write_triton_repository(engine_with_sidecar(tmp_path, (1, 1, 8)), tmp_path / "repo", model_name="a/b")
    with pytest.raises(ArtifactError, match=".onnx, .engine or .plan"):
        write_triton_repository(tmp_path / "m.pt", tmp_path / "repo")


def test_preferred_batch_sizes_are_the_largest_powers_of_two_and_max() -> None:
    assert preferred_batch_sizes(32) == [8, 16, 32]
    assert preferred_batch_sizes(24) == [8, 16, 24]
    assert preferred_batch_sizes(2) == [2]
