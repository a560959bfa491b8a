"""What an artifact records is read as untrusted input: crafted sidecars, ONNX metadata and checkpoints give one
clear SDK error naming the file, never a traceback from deep inside the standard library or a huge allocation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from yolov6_sdk.artifact.meta import FIELDS, ArtifactMeta, bounded_json, decode_props, read_meta
from yolov6_sdk.artifact.sidecar import read_sidecar, sidecar_path
from yolov6_sdk.cli.build import main as build_main
from yolov6_sdk.errors import ArtifactError, CheckpointError, ConfigError
from yolov6_sdk.export.build import build
from yolov6_sdk.export.triton import write_triton_repository
from yolov6_sdk.models import build_model
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.weights import save_checkpoint

IMGSZ = 64
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("untrusted")
    weights = save_checkpoint(folder / "w.pt", build_model("yolov6n", num_classes=2).eval(), imgsz=IMGSZ)
    result = build(weights=weights, imgsz=IMGSZ, backend="onnxruntime", output=folder / "engines", name="m")
    return SimpleNamespace(folder=folder, weights=weights, onnx=result.artifact, sidecar=result.sidecar)


def _sidecar_copy(art: SimpleNamespace, tmp_path: Path, text: str) -> Path:
    """A copy of the built artifact whose sidecar holds ``text``."""
    artifact = tmp_path / art.onnx.name
    artifact.write_bytes(art.onnx.read_bytes())
    sidecar_path(artifact).write_text(text)
    return artifact


def _valid_sidecar(art: SimpleNamespace) -> dict:
    return json.loads(art.sidecar.read_text())


def _hostile_sidecars(art: SimpleNamespace) -> dict[str, str]:
    data = _valid_sidecar(art)
    return {
        "nested 100000 deep": DEEP,
        "a 5000-digit int": json.dumps({**data, "calibration_images": 0}).replace(
            '"calibration_images": 0', '"calibration_images": ' + "9" * 5000
        ),
        "extra as a string": json.dumps({**data, "extra": "not an object"}),
        "source_hashes as a string": json.dumps({**data, "source_hashes": "abc"}),
        "source_hashes as an int": json.dumps({**data, "source_hashes": 7}),
        "imgsz of strings": json.dumps({**data, "imgsz": ["a", "b"]}),
        "imgsz too large": json.dumps({**data, "imgsz": [64000, 64000]}),
    }


@pytest.mark.parametrize(
    "case",
    ["nested 100000 deep", "a 5000-digit int", "extra as a string", "source_hashes as a string",
     "source_hashes as an int", "imgsz of strings", "imgsz too large"],
)  # fmt: skip
def test_a_hostile_sidecar_is_one_artifact_error_naming_the_file(
    art: SimpleNamespace, tmp_path: Path, case: str
) -> None:
    artifact = _sidecar_copy(art, tmp_path, _hostile_sidecars(art)[case])
    with pytest.raises(ArtifactError, match=str(sidecar_path(artifact))):
        read_sidecar(artifact)
    with pytest.raises(ArtifactError, match="rebuild"):
        write_triton_repository(artifact, tmp_path / "repo")


def test_yolov6_build_over_a_pair_with_a_hostile_sidecar_gives_no_traceback(
    art: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "engines"
    argv = ["--weights", str(art.weights), "--imgsz", str(IMGSZ), "--backend", "onnxruntime", "-o", str(out)]
    for case, text in _hostile_sidecars(art).items():
        assert build_main([*argv, "--name", "m"]) == 0, case
        sidecar_path(out / "m.onnx").write_text(text)
        code = build_main([*argv, "--name", "m"])
        captured = capsys.readouterr()
        assert code in (0, 2) and "Traceback" not in captured.err, case
        assert read_sidecar(out / "m.onnx").imgsz == (IMGSZ, IMGSZ), case  # rebuilt into a consistent pair


def _with_metadata(source: Path, target: Path, **entries: str) -> Path:
    proto = onnx.load(str(source))
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(target))
    return target


@pytest.mark.parametrize(
    "entries",
    [{"imgsz": '["a", "b"]'}, {"imgsz": "[null, null]"}, {"imgsz": "[64000, 64000]"},
     {"dynamic_hw": "true", "imgsz_max": "[1e6, 1e6]"}, {"imgsz_max": "[1000000, 1000000]"},
     {"names": "3"}, {"conf": "2.5"}, {"names": DEEP}],
)  # fmt: skip
def test_crafted_onnx_metadata_is_one_artifact_error_from_the_detector(
    art: SimpleNamespace, tmp_path: Path, entries: dict[str, str]
) -> None:
    crafted = _with_metadata(art.onnx, tmp_path / "crafted.onnx", **entries)
    with pytest.raises(ArtifactError, match=f"{crafted}.*rebuild"):
        Detector(crafted, device="cpu", backend="onnxruntime")


@pytest.mark.parametrize("imgsz", [32000, 2**40])
def test_a_checkpoint_whose_imgsz_is_huge_is_refused_before_any_allocation(
    art: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str], imgsz: int
) -> None:
    checkpoint = torch.load(art.weights, weights_only=True)
    checkpoint["imgsz"] = imgsz
    crafted = tmp_path / "huge.pt"
    torch.save(checkpoint, crafted)
    with pytest.raises(CheckpointError, match="imgsz"):
        Detector(crafted, device="cpu")
    assert build_main(["--weights", str(crafted), "--backend", "onnxruntime", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "imgsz" in err and "Traceback" not in err


def test_user_given_sizes_obey_the_same_bound(art: SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match="larger than 4096"):
        Detector(art.onnx, device="cpu", imgsz=64000)


@pytest.mark.parametrize(("option", "value"), [("classes", 5), ("classes", "0"), ("names", 3), ("classes", [9])])
def test_detector_options_of_the_wrong_type_are_one_config_error(
    art: SimpleNamespace, option: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=option):
        Detector(art.onnx, device="cpu", **{option: value})


def test_json_limits_refuse_depth_digits_constants_and_size() -> None:
    for text in (DEEP, "[" + "1" * 30 + "]", "[NaN]", '"' + "x" * (5 << 20) + '"', "{not json"):
        with pytest.raises(ArtifactError, match="f.json"):
            bounded_json(text, "f.json")
    assert bounded_json('{"a": [1, 2.5, "x", null]}', "f.json") == {"a": [1, 2.5, "x", None]}
    assert decode_props({"model": "yolov6n", "imgsz": "[64, 96]"}, "m.onnx") == {"model": "yolov6n", "imgsz": [64, 96]}


def test_every_field_round_trips_through_each_writer_and_the_one_reader() -> None:
    meta = ArtifactMeta(
        model="yolov6s", names=("a", "b"), num_classes=2, imgsz=(64, 96), strides=(8, 16, 32), precision="int8",
        dynamic_batch=True, batch=1, dynamic_hw=True, imgsz_min=(32, 32), imgsz_max=(64, 96), end2end="trt",
        multi_label=True, conf=0.25, iou=0.45, max_det=100, calibration_method="minmax", calibration_images=8,
        quant_target="tensorrt", float_layers=("backbone.stem",), source_hashes={"weights_sha256": "ab" * 32}, sdk_version="1.0", producer="yolov6-sdk",
        extra={"export_key": "k"},
    )  # fmt: skip
    assert {field for field in FIELDS if getattr(meta, field) == getattr(ArtifactMeta(), field)} == set()
    assert read_meta(decode_props(meta.to_props(), "m.onnx"), "m.onnx") == meta
    assert read_meta(json.loads(json.dumps(meta.to_record())), "m.json") == meta
    assert np.isclose(meta.updated({"conf": 0.5}, "m.onnx").conf, 0.5)
