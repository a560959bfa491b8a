"""The build key: every build option decides whether an existing artifact is reused, unless the build names it as
one that does not decide the artifact's content."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest

from yolov6_sdk.export import build as build_module
from yolov6_sdk.export import plan as plan_module
from yolov6_sdk.export.build import build
from yolov6_sdk.export.build_key import NOT_CONTENT, build_key
from yolov6_sdk.export.options import BuildOptions
from yolov6_sdk.export.plan import plan_build

IMGSZ = 64
CPU = {"random_weights": True, "model": "yolov6n", "imgsz": IMGSZ, "backend": "onnxruntime"}
TRT = {**CPU, "backend": "tensorrt"}  # planned as if TensorRT and a GPU were here (resolve_backend is replaced)
INT8 = {**CPU, "precision": "int8"}  # "calib" is added by the test (the module's calibration folder)
AUTO = {**INT8, "exclude": "auto"}

# field -> (the other options, the field's new value, whether the new value decides other content)
CASES: dict[str, tuple[dict[str, Any], Any, bool]] = {
    "weights": ({"imgsz": IMGSZ, "backend": "onnxruntime"}, "copy of the checkpoint", False),
    "onnx": ({"backend": "onnxruntime"}, "copy of the ONNX", False),
    "qat": ({"backend": "onnxruntime"}, "copy of the QAT checkpoint", False),
    "model": (CPU, "yolov6s", True),
    "random_weights": ({"model": "yolov6n", "imgsz": IMGSZ, "backend": "onnxruntime"}, True, True),
    "precision": (CPU, "int8", True),
    "backend": (CPU, "tensorrt", True),
    "batch_sizes": (TRT, (1, 8), True),
    "imgsz": (CPU, 96, True),
    "end2end": (CPU, True, True),
    "multi_label": (CPU, True, True),
    "dynamic_hw": (CPU, True, True),
    "output": (CPU, "other folder", False),
    "name": (CPU, "mine", False),
    "force": (CPU, True, False),
    "workspace_gib": (TRT, 8.0, False),
    "timing_cache": (TRT, "t.cache", False),
    "hardware_compat": (TRT, "ampere_plus", True),
    "opset": (CPU, 17, True),
    "calib": (INT8, "copy of the calibration folder", False),
    "calib_method": (INT8, "entropy", True),
    "calib_size": (INT8, 3, True),
    "calib_batch": (INT8, 2, True),
    "sensitivity": (INT8, True, False),
    "exclude": (INT8, ("detect.reg_convs.*",), True),
    "max_ap_drop": (AUTO, 0.05, False),
    "max_error": (AUTO, 0.05, True),
    "val": (CPU, "data", False),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint, its ONNX export, a QAT-marked checkpoint and a calibration folder, each with a byte-equal copy."""
    from yolov6_sdk.export.onnx import ExportOptions, export_onnx
    from yolov6_sdk.models import build_model
    from yolov6_sdk.training.datagen import write_calibration_images
    from yolov6_sdk.weights import save_checkpoint

    folder = tmp_path_factory.mktemp("sources")
    model = build_model("yolov6n", num_classes=3).eval()
    found = {
        "weights": save_checkpoint(folder / "w.pt", model, imgsz=IMGSZ),
        "onnx": export_onnx(model, folder / "m.onnx", ExportOptions(imgsz=(IMGSZ, IMGSZ), simplify=False)),
        "qat": save_checkpoint(folder / "q.pt", model, imgsz=IMGSZ, meta={"qat": {"target": "onnxruntime-cpu"}}),
        "calib": folder / "calib",
    }
    write_calibration_images(found["calib"], 4, seed=3, imgsz=(64, 96))
    for name, path in list(found.items()):
        copy = folder / f"copy-{path.name}"
        (shutil.copytree if path.is_dir() else shutil.copyfile)(path, copy)
        found[f"copy of {name}"] = copy
    return found


@pytest.fixture
def fake_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        plan_module, "resolve_backend", lambda backend: (backend.replace("auto", "onnxruntime"), "test")
    )


def _value(value: Any, sources: dict[str, Path], tmp_path: Path) -> Any:
    """Stand-ins: a source named in CASES is the module's file, a folder name is under ``tmp_path``."""
    names = {"copy of the checkpoint": "copy of weights", "copy of the ONNX": "copy of onnx",
             "copy of the QAT checkpoint": "copy of qat", "copy of the calibration folder": "copy of calib"}  # fmt: skip
    if value in names:
        return sources[names[value]]
    return tmp_path / value if value in ("other folder", "t.cache", "data") else value


def _key(options: BuildOptions) -> str:
    plan = plan_build(options)
    return build_key(plan, build_module.calibration_set(plan))


def test_every_build_option_has_a_case() -> None:
    assert set(CASES) == {option.name for option in dataclasses.fields(BuildOptions)}


@pytest.mark.parametrize("field", list(CASES))
def test_changing_an_option_changes_the_build_key_unless_it_does_not_decide_content(
    field: str, sources: dict[str, Path], tmp_path: Path, fake_tensorrt: None
) -> None:
    others, new, decides = CASES[field]
    base = {"output": tmp_path / "out", **others}
    if base.get("precision") == "int8":
        base["calib"] = sources["calib"]
    if field in ("weights", "onnx", "qat"):
        base[field] = sources[field]
    changed = {**base, field: _value(new, sources, tmp_path)}
    assert (_key(BuildOptions(**base)) != _key(BuildOptions(**changed))) is decides
    assert (field in NOT_CONTENT) is not decides


def test_a_dynamic_hw_build_does_not_reuse_the_static_artifact_of_its_name(tmp_path: Path) -> None:
    fixed = {**CPU, "output": tmp_path, "name": "fixed"}
    static = build(**fixed)
    dynamic = build(**fixed, dynamic_hw=True)
    assert static.artifact == dynamic.artifact and dynamic.cached != ("artifact",)
    dims = onnx.load(str(dynamic.artifact)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True]  # batch, 3, height, width
    assert build(**fixed, dynamic_hw=True).cached == ("artifact",)
