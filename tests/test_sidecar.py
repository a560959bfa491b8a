"""Artifact sidecars: round trip, ONNX sidecars read from the file, and refusal of engines built elsewhere."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest

from yolov6_sdk.artifact.sidecar import (
    SIDECAR_FORMAT,
    Sidecar,
    check_compatible,
    file_sha256,
    onnx_io_specs,
    onnx_sidecar,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from yolov6_sdk.artifact.spec import IOSpec
from yolov6_sdk.errors import ArtifactError
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.models import build_model

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


def engine_sidecar(**changes: object) -> Sidecar:
    base = Sidecar.make(
        artifact="yolov6n-fp16-bs1.engine",
        kind="engine",
        model="yolov6n",
        precision="fp16",
        imgsz=(640, 640),
        batch_profile=(1, 1, 1),
        names=("person", "bicycle"),
        tensorrt_version="10.16.1.11",
        gpu_name=H100[0],
        compute_capability=H100[1],
        inputs=(IOSpec("images", (1, 3, 640, 640), "float16"),),
        outputs=(IOSpec("outputs", (1, 8400, 85), "float16"),),
        source_hashes={"onnx": "ab" * 32},
        sdk_version="0.1.0",
    )
    return base.replaced(**changes)


@pytest.fixture(scope="module")
def raw_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "yolov6n-fp32.onnx"
    options = ExportOptions(imgsz=(96, 128))
    return export_onnx(build_model("yolov6n", num_classes=3).eval(), path, options, {"weights_sha256": "cd" * 32})


def test_sidecar_round_trips_through_json(tmp_path: Path) -> None:
    car = engine_sidecar(calibration_method="max", calibration_images=500, conf=0.25, extra={"build_seconds": 1.5})
    written = write_sidecar(car, tmp_path / car.artifact)
    assert written == tmp_path / "yolov6n-fp16-bs1.json"
    data = json.loads(written.read_text())
    assert data["format"] == SIDECAR_FORMAT and data["created"]
    back = read_sidecar(tmp_path / car.artifact)
    assert back == dataclasses.replace(car, created=data["created"])


def test_an_older_engine_sidecar_keeps_its_export_settings_readable_from_extra() -> None:
    data = {
        key: value
        for key, value in engine_sidecar().to_dict().items()
        if key not in ("conf", "dynamic_hw", "imgsz_min", "imgsz_max")
    }
    data["extra"] = {"conf": 0.3, "dynamic_hw": True, "imgsz_min": [32, 32], "imgsz_max": [640, 640], "seconds": 2}
    meta = Sidecar.from_dict(data).meta
    assert (meta.conf, meta.dynamic_hw, meta.imgsz_min, meta.imgsz_max) == (0.3, True, (32, 32), (640, 640))
    assert meta.extra == {"seconds": 2}


def test_dynamic_axes_are_stored_as_null_and_read_as_none(tmp_path: Path) -> None:
    car = engine_sidecar(inputs=(IOSpec("images", (None, 3, 640, 640), "float32"),), batch_profile=(1, 8, 32))
    write_sidecar(car, tmp_path / "m.engine")
    assert json.loads((tmp_path / "m.json").read_text())["inputs"][0]["shape"] == [None, 3, 640, 640]
    assert read_sidecar(tmp_path / "m.engine").inputs[0].shape == (None, 3, 640, 640)


def test_missing_sidecar_says_to_rebuild(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="rebuild"):
        read_sidecar(tmp_path / "yolov6s-fp16.engine")


@pytest.mark.parametrize(
    "content", ["not json", "[1, 2]", '{"format": "other/1"}', f'{{"format": "{SIDECAR_FORMAT}"}}']
)
def test_unusable_sidecar_raises_artifact_error(tmp_path: Path, content: str) -> None:
    sidecar_path(tmp_path / "m.engine").write_text(content)
    with pytest.raises(ArtifactError):
        read_sidecar(tmp_path / "m.engine")


def test_matching_engine_passes_the_check() -> None:
    check_compatible(engine_sidecar(), "10.16.1.11", *H100)
    check_compatible(engine_sidecar(), "10.16.1.11", "  nvidia h100 80gb hbm3 ", "9.0")  # spacing and case


@pytest.mark.parametrize(
    ("runtime", "gpu", "problem"),
    [
        ("11.4.0.106", H100, "built with TensorRT 10.16.1.11, running TensorRT 11.4.0.106"),
        ("10.16.1.11", ("NVIDIA A100-SXM4-80GB", "8.0"), "built for compute capability 9.0, running on 8.0"),
        ("10.16.1.11", ("NVIDIA H100 PCIe", "9.0"), "built on NVIDIA H100 80GB HBM3, running on NVIDIA H100 PCIe"),
    ],
)
def test_engine_from_another_tensorrt_or_gpu_is_refused_with_rebuild(
    runtime: str, gpu: tuple[str, str], problem: str
) -> None:
    with pytest.raises(ArtifactError, match="rebuild it on this machine with yolov6-build") as info:
        check_compatible(engine_sidecar(), runtime, *gpu)
    assert problem in str(info.value)
    assert "precision fp16" in str(info.value) and "batch profile 1x1x1" in str(info.value)


def test_hardware_compatibility_levels_relax_the_gpu_check() -> None:
    same_cc = engine_sidecar(hardware_compatibility="same_compute_capability")
    check_compatible(same_cc, "10.16.1.11", "NVIDIA H100 PCIe", "9.0")
    with pytest.raises(ArtifactError, match="rebuild"):
        check_compatible(same_cc, "10.16.1.11", "NVIDIA H200", "9.1")
    ampere = engine_sidecar(hardware_compatibility="ampere_plus", compute_capability="8.0")
    check_compatible(ampere, "10.16.1.11", "NVIDIA L4", "8.9")
    with pytest.raises(ArtifactError, match="Ampere or newer"):
        check_compatible(ampere, "10.16.1.11", "Tesla T4", "7.5")


def test_engine_sidecar_without_tensorrt_version_is_refused() -> None:
    with pytest.raises(ArtifactError, match="records no TensorRT version"):
        check_compatible(engine_sidecar(tensorrt_version=""), "10.16.1.11", *H100)


def test_onnx_sidecars_have_empty_tensorrt_fields_and_always_pass(raw_onnx: Path) -> None:
    car = onnx_sidecar(raw_onnx, calibration_method="minmax", calibration_images=8)
    assert (car.kind, car.model, car.precision, car.imgsz) == ("onnx", "yolov6n", "fp32", (96, 128))
    assert (car.tensorrt_version, car.gpu_name, car.compute_capability) == ("", "", "")
    assert car.batch_profile is None  # dynamic batch axis
    assert car.names == tuple(build_model("yolov6n", num_classes=3).names)
    assert car.source_hashes == {"weights_sha256": "cd" * 32, "onnx": file_sha256(raw_onnx)}
    assert (car.calibration_method, car.calibration_images) == ("minmax", 8)
    check_compatible(car, "11.4.0.106", "any GPU", "7.5")


@pytest.mark.parametrize(("end2end", "old"), [("", False), ("trt", True)])
def test_a_sidecar_from_before_multi_label_reads_as_the_old_behaviour_of_its_kind(end2end: str, old: bool) -> None:
    data = engine_sidecar(end2end=end2end, multi_label=not old).to_dict()
    assert Sidecar.from_dict(data).multi_label is (not old)
    del data["multi_label"]
    assert Sidecar.from_dict(data).multi_label is old
    with pytest.raises(ArtifactError, match="multi_label must be true or false"):
        Sidecar.from_dict({**data, "multi_label": "false"})


def test_onnx_io_specs_read_the_graph(raw_onnx: Path) -> None:
    inputs, outputs = onnx_io_specs(onnx.load(str(raw_onnx)))
    anchors = (96 // 8) * (128 // 8) + (96 // 16) * (128 // 16) + (96 // 32) * (128 // 32)
    assert inputs == (IOSpec("images", (None, 3, 96, 128), "float32"),)
    assert outputs == (IOSpec("outputs", (None, anchors, 8), "float32"),)
