"""yolov6-build: artifacts, sidecars, caches, interrupted builds and the errors users meet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from yolov6_sdk._optional import available
from yolov6_sdk.artifact.naming import RANDOM_SOURCE, recorded_source
from yolov6_sdk.artifact.sidecar import file_sha256
from yolov6_sdk.errors import ArtifactError, BuildError, CalibrationError, ConfigError, MissingDependencyError
from yolov6_sdk.export import build as build_module
from yolov6_sdk.export import ort_quant
from yolov6_sdk.export import plan as plan_module
from yolov6_sdk.export.build import build, run_build
from yolov6_sdk.export.onnx import read_metadata
from yolov6_sdk.export.options import BuildOptions
from yolov6_sdk.export.plan import plan_build
from yolov6_sdk.training.datagen import write_calibration_images

IMGSZ = 160
CPU = {"random_weights": True, "model": "yolov6n", "imgsz": IMGSZ, "backend": "onnxruntime"}
INT8_NAME = "yolov6n-random-160-int8.onnx"  # untrained weights name their source "random"


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    write_calibration_images(folder, 6, seed=4, imgsz=(120, 200))
    return folder


@pytest.fixture(scope="module")
def int8_build(tmp_path_factory: pytest.TempPathFactory, calib_dir: Path) -> build_module.BuildResult:
    out = tmp_path_factory.mktemp("engines")
    return build(**CPU, precision="int8", calib=calib_dir, calib_size=4, output=out)


def _seed_export(int8: build_module.BuildResult, out: Path, calibration: bool = False) -> None:
    """Copy the cached fp32 export (and the calibration ranges) of ``int8`` into ``out``, so a new build there
    skips the export (and the calibration)."""
    out.mkdir(parents=True, exist_ok=True)
    for suffix in (".fp32.onnx", ".calib.json") if calibration else (".fp32.onnx",):
        cache = int8.artifact.with_suffix(suffix)
        shutil.copyfile(cache, out / cache.name)


def test_int8_build_writes_the_artifact_and_a_sidecar_that_describes_it(int8_build) -> None:
    assert int8_build.artifact.name == INT8_NAME and int8_build.artifact.is_file()
    sidecar = json.loads(int8_build.sidecar.read_text())
    assert int8_build.sidecar.name == "yolov6n-random-160-int8.json"
    assert (sidecar["precision"], sidecar["calibration_method"], sidecar["calibration_images"]) == ("int8", "minmax", 4)
    assert sidecar["quant_target"] == "onnxruntime-cpu"
    assert sidecar["extra"]["onnxruntime_version"] and sidecar["float_layers"] == []
    assert {"weights_sha256", "fp32_onnx_sha256", "calibration_sha256", "onnx"} <= set(sidecar["source_hashes"])
    assert sidecar["source_hashes"]["source"] == RANDOM_SOURCE and sidecar["extra"]["build_key"]
    assert sidecar["batch_profile"] is None  # dynamic batch serves any --bs
    assert read_metadata(int8_build.artifact).precision == "int8"


def test_build_reuses_export_and_calibration_then_the_whole_artifact(
    int8_build, calib_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    def no_calibration(*args: object, **kwargs: object) -> None:
        raise AssertionError("the build recalibrated")

    monkeypatch.setattr(ort_quant, "calibrate", no_calibration)
    _seed_export(int8_build, tmp_path, calibration=True)
    first = build(**CPU, precision="int8", calib=calib_dir, calib_size=4, output=tmp_path)
    assert set(first.cached) == {"export", "calibration"} and first.artifact.name == INT8_NAME
    written = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    monkeypatch.setattr(ort_quant, "quantize_model", no_calibration)
    again = build(**CPU, precision="int8", calib=calib_dir, calib_size=4, output=tmp_path)
    assert again.cached == ("artifact",) and again.artifact == first.artifact and again.seconds == {}
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == written


def test_other_calibration_images_invalidate_the_range_cache(int8_build, calib_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "engines"
    _seed_export(int8_build, out)
    result = build(**CPU, precision="int8", calib=calib_dir, calib_size=3, output=out)
    assert result.cached == ("export",)


def test_interrupted_build_leaves_no_artifact(int8_build, calib_dir: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "engines"
    _seed_export(int8_build, out)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ort_quant, "calibrate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(**CPU, precision="int8", calib=calib_dir, calib_size=4, output=out)
    assert sorted(p.name for p in out.iterdir()) == ["yolov6n-random-160-int8.fp32.onnx"]  # the export cache only


def test_exclude_names_stay_float_and_are_recorded(int8_build, calib_dir: Path) -> None:
    out = int8_build.artifact.parent
    result = build(**CPU, precision="int8", calib=calib_dir, calib_size=4, output=out, exclude=["detect.reg_convs.*"])
    assert result.float_layers == tuple(f"detect.reg_convs.{i}.block.conv" for i in range(3))
    assert json.loads(result.sidecar.read_text())["float_layers"] == list(result.float_layers)
    with pytest.raises(BuildError, match="matches no quantised convolution"):
        build(**CPU, precision="int8", calib=calib_dir, calib_size=4, output=out, exclude=["detect.nothing"])


def test_fp32_build_is_the_export_itself(int8_build, tmp_path: Path) -> None:
    # the int8 build's fp32 export has the same export key, so it serves as this build's cached artifact
    shutil.copyfile(int8_build.artifact.with_suffix(".fp32.onnx"), tmp_path / "yolov6n-random-160-fp32.onnx")
    result = build(**CPU, precision="fp32", output=tmp_path)
    assert result.artifact.name == "yolov6n-random-160-fp32.onnx" and result.cached == ("export",)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "yolov6n-random-160-fp32.json",
        "yolov6n-random-160-fp32.onnx",
    ]
    assert json.loads(result.sidecar.read_text())["precision"] == "fp32"


def test_empty_calibration_folder_fails_before_any_export(tmp_path: Path) -> None:
    empty = tmp_path / "calib"
    empty.mkdir()
    plan = plan_build(BuildOptions(**CPU, precision="int8", calib=empty, output=tmp_path / "out"))
    with pytest.raises(CalibrationError, match="holds no image file"):
        run_build(plan)
    assert not (tmp_path / "out").exists()


def test_int8_calibrates_on_the_shipped_calib_folder_by_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calib").mkdir()
    plan = plan_build(BuildOptions(**CPU, precision="int8", output=tmp_path / "out"))
    assert plan.calib == Path("calib")
    with pytest.raises(CalibrationError, match="'calib' holds no image file"):
        run_build(plan)


@pytest.mark.parametrize("sizes", [[0], [1, -4]])
def test_non_positive_batch_sizes_are_refused(sizes: list[int], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--batch takes positive batch sizes"):
        plan_build(BuildOptions(**CPU, batch_sizes=sizes, output=tmp_path))


def test_static_onnx_cannot_serve_other_batch_sizes(int8_build, tmp_path: Path) -> None:
    proto = onnx.load(str(int8_build.artifact.with_suffix(".fp32.onnx")))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    static = tmp_path / "static.onnx"
    onnx.save(proto, str(static))
    with pytest.raises(BuildError, match="fixed batch of 1 and cannot serve --batch 1 32"):
        plan_build(BuildOptions(onnx=static, batch_sizes=[1, 32], backend="onnxruntime", output=tmp_path))
    plan = plan_build(BuildOptions(onnx=static, batch_sizes=[1], backend="onnxruntime", output=tmp_path))
    assert plan.artifact.name == f"yolov6n-{file_sha256(static)[:8]}-160-fp32-bs1.onnx"  # a fixed batch is named


def test_dynamic_onnx_serves_any_batch_list(int8_build, tmp_path: Path) -> None:
    source = int8_build.artifact.with_suffix(".fp32.onnx")
    plan = plan_build(BuildOptions(onnx=source, batch_sizes=[1, 8, 32], backend="onnxruntime", output=tmp_path))
    assert plan.artifact.name == f"yolov6n-{file_sha256(source)[:8]}-160-fp32.onnx" and plan.options.batch_sizes == (
        1,
        8,
        32,
    )


def test_truncated_or_inputless_onnx_source_is_one_clear_error(int8_build, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(int8_build.artifact.with_suffix(".fp32.onnx").read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="truncated.onnx: not a readable ONNX file"):
        plan_build(BuildOptions(onnx=truncated, backend="onnxruntime", output=tmp_path))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(BuildError, match=r"empty.onnx: expected one \[B, 3, H, W\] image input"):
        plan_build(BuildOptions(onnx=empty, backend="onnxruntime", output=tmp_path))


@pytest.mark.skipif(available("tensorrt"), reason="TensorRT is installed here")
def test_tensorrt_backend_without_tensorrt_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError) as info:
        plan_build(BuildOptions(**{**CPU, "backend": "tensorrt"}, output=tmp_path))
    assert "yolov6-sdk[trt]" in str(info.value) and "GPU" in str(info.value)


def test_tensorrt_batch_profile_is_checked_before_any_work(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(plan_module, "resolve_backend", lambda backend: ("tensorrt", "forced by the test"))
    with pytest.raises(ConfigError, match="ascending"):
        plan_build(BuildOptions(**{**CPU, "backend": "tensorrt"}, batch_sizes=[32, 1], output=tmp_path))
    plan = plan_build(BuildOptions(**{**CPU, "backend": "tensorrt"}, batch_sizes=[1, 8, 32], output=tmp_path))
    assert plan.artifact.name == "yolov6n-random-160-fp32-bs1_8_32.engine" and plan.target == "tensorrt"


def test_fp16_for_onnx_runtime_on_the_cpu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="fp16 is not built for ONNX Runtime"):
        plan_build(BuildOptions(**CPU, precision="fp16", output=tmp_path))


def test_missing_default_weights_says_what_to_pass(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(plan_module, "DEFAULT_WEIGHTS", Path("weights/not-shipped.pt"))
    with pytest.raises(BuildError, match="--random-weights") as info:
        plan_build(BuildOptions(output=tmp_path, backend="onnxruntime"))
    assert "--weights" in str(info.value) and "--onnx" in str(info.value)


def test_options_that_contradict_each_other_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="either --weights or --onnx"):
        plan_build(BuildOptions(weights=tmp_path / "a.pt", onnx=tmp_path / "a.onnx", output=tmp_path))
    with pytest.raises(ConfigError, match="int8 builds only"):
        plan_build(BuildOptions(**CPU, exclude=["auto"], output=tmp_path))
    with pytest.raises(ConfigError, match="calibration method"):
        plan_build(BuildOptions(**CPU, precision="int8", calib=tmp_path, calib_method="kl", output=tmp_path))


def test_auto_backend_falls_back_to_onnx_runtime_without_a_gpu(tmp_path: Path) -> None:
    plan = plan_build(BuildOptions(**{**CPU, "backend": "auto"}, output=tmp_path))
    if plan.backend == "onnxruntime":
        assert plan.backend_reason.startswith("auto:") and plan.artifact.suffix == ".onnx"
    else:
        assert plan.artifact.name == "yolov6n-random-160-fp32.engine"  # batch 1 is the default profile


def test_cli_prints_plan_and_summary_and_one_clear_error(int8_build, calib_dir: Path, tmp_path: Path, capsys) -> None:
    from yolov6_sdk.cli.build import main

    out = tmp_path / "engines"
    _seed_export(int8_build, out, calibration=True)
    argv = ["--random-weights", "--model", "yolov6n", "--imgsz", str(IMGSZ), "--backend", "onnxruntime"]
    int8 = [*argv, "--precision", "int8", "--calib", str(calib_dir), "--calib-size", "4", "-o", str(out)]
    assert main(int8) == 0
    printed = capsys.readouterr().out
    assert "yolov6-build plan:" in printed and INT8_NAME in printed and "reused: export, calibration" in printed
    assert main(int8) == 0
    assert "time: none (reused: artifact)" in capsys.readouterr().out
    assert main([*argv, "--precision", "fp16", "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("yolov6-build: error: fp16 is not built") and error.count("\n") == 1


def test_val_reports_map_of_fp32_and_the_artifact_side_by_side(tmp_path: Path, calib_dir: Path) -> None:
    from conftest import randomize_model

    from yolov6_sdk.models import build_model
    from yolov6_sdk.training.datagen import generate_dataset
    from yolov6_sdk.weights import save_checkpoint

    data = generate_dataset(tmp_path / "data", num_train=1, num_val=3, imgsz=(120, 200), num_classes=3)
    model = randomize_model(build_model("yolov6n", num_classes=3).eval(), seed=5)
    weights = save_checkpoint(tmp_path / "three.pt", model, imgsz=IMGSZ)
    from yolov6_sdk.scoring import map_evaluator

    result = build(weights=weights, imgsz=IMGSZ, backend="onnxruntime", precision="int8", calib=calib_dir,
                   calib_size=4, val=data, output=tmp_path / "out",
                   evaluate=map_evaluator(data, (IMGSZ, IMGSZ)))  # fmt: skip
    assert set(result.maps) == {"fp32 (onnx)", "int8 (onnx)"}
    assert all(0.0 <= value <= 1.0 for value in result.maps.values()) and "validate" in result.seconds


@pytest.mark.tensorrt
def test_int8_engine_builds_from_symmetric_qdq_onnx(int8_build, calib_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU")
    result = build(**{**CPU, "backend": "tensorrt"}, precision="int8", calib=calib_dir, calib_size=4,
                   batch_sizes=[1, 4], output=tmp_path)  # fmt: skip
    assert result.artifact.name == "yolov6n-random-160-int8-bs1_4.engine"
    assert read_metadata(result.artifact.with_suffix(".qdq.onnx")).quant_target == "tensorrt"
    assert json.loads(result.sidecar.read_text())["calibration_images"] == 4


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two checkpoints of the same model (yolov6n, 64 px) with different weights."""
    from conftest import randomize_model

    from yolov6_sdk.models import build_model
    from yolov6_sdk.weights import save_checkpoint

    folder = tmp_path_factory.mktemp("weights")
    return tuple(  # type: ignore[return-value]
        save_checkpoint(folder / f"{name}.pt", randomize_model(build_model("yolov6n").eval(), seed=seed), imgsz=64)
        for name, seed in (("a", 1), ("b", 2))
    )


def test_two_checkpoints_of_one_model_build_two_artifacts(two_checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    results = [build(weights=w, backend="onnxruntime", output=tmp_path) for w in two_checkpoints]
    digests = [file_sha256(w) for w in two_checkpoints]
    assert [r.artifact.name for r in results] == [f"yolov6n-{d[:8]}-64-fp32.onnx" for d in digests]
    assert all(r.artifact.is_file() for r in results)
    assert [recorded_source(r.artifact) for r in results] == digests


def test_replacing_an_artifact_of_other_weights_is_refused_unless_forced(
    two_checkpoints: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    from yolov6_sdk.cli.build import main

    first, second = two_checkpoints
    argv = ["--backend", "onnxruntime", "-o", str(tmp_path), "--name", "fixed"]
    assert main(["--weights", str(first), *argv]) == 0
    fixed = tmp_path / "fixed.onnx"
    before = fixed.read_bytes()
    capsys.readouterr()
    assert main(["--weights", str(second), *argv]) == 2
    error = capsys.readouterr().err
    assert f"{fixed} exists and was built from weights {file_sha256(first)[:8]}" in error and "--force" in error
    assert fixed.read_bytes() == before
    assert main(["--weights", str(first), *argv]) == 0  # the same weights again: a rebuild, not a replacement
    assert main(["--weights", str(second), *argv, "--force"]) == 0
    assert recorded_source(fixed) == file_sha256(second) and fixed.read_bytes() != before


def test_a_file_that_records_no_weights_is_not_replaced(two_checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "mine.onnx").write_bytes(b"someone else's model")
    with pytest.raises(BuildError, match=r"mine.onnx exists and was built from unrecorded weights.*--force"):
        plan_build(BuildOptions(weights=two_checkpoints[0], backend="onnxruntime", output=tmp_path, name="mine.onnx"))
    with pytest.raises(ConfigError, match="without a folder"):
        plan_build(BuildOptions(weights=two_checkpoints[0], backend="onnxruntime", output=tmp_path, name="sub/mine"))
    with pytest.raises(ConfigError, match=r"ends in \.engine"):
        plan_build(BuildOptions(weights=two_checkpoints[0], backend="onnxruntime", output=tmp_path, name="mine.engine"))


def test_multi_label_build_records_it_and_is_named_apart_from_the_default_build(
    two_checkpoints: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    from yolov6_sdk.cli.build import main

    argv = ["--weights", str(two_checkpoints[0]), "--backend", "onnxruntime", "-o", str(tmp_path)]
    assert main(argv) == 0
    assert main([*argv, "--multi-label"]) == 0
    printed = capsys.readouterr().out
    assert "multi-label NMS" in printed and "reused" not in printed
    stem = f"yolov6n-{file_sha256(two_checkpoints[0])[:8]}-64-fp32"
    single, multi = tmp_path / f"{stem}.onnx", tmp_path / f"{stem}-ml.onnx"
    assert read_metadata(single).multi_label is False and read_metadata(multi).multi_label is True
    assert json.loads(single.with_suffix(".json").read_text())["multi_label"] is False
    assert json.loads(multi.with_suffix(".json").read_text())["multi_label"] is True


def test_one_name_never_reuses_an_export_or_artifact_of_the_other_multi_label_choice(
    two_checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    fixed = {"weights": two_checkpoints[0], "backend": "onnxruntime", "output": tmp_path, "name": "fixed"}
    single = build(**fixed)
    assert read_metadata(single.artifact).multi_label is False
    multi = build(**fixed, multi_label=True)  # same file: the fp32 export is the artifact, keyed by its export
    assert multi.cached == () and read_metadata(multi.artifact).multi_label is True
    assert build(**fixed, multi_label=True).cached == ("artifact",)
    assert build(**fixed).cached == () and read_metadata(single.artifact).multi_label is False


def test_onnx_source_keeps_its_multi_label_choice_and_refuses_the_other(
    two_checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    multi = build(weights=two_checkpoints[0], backend="onnxruntime", output=tmp_path / "a", multi_label=True)
    plan = plan_build(BuildOptions(onnx=multi.artifact, backend="onnxruntime", output=tmp_path / "b"))
    assert plan.multi_label is True and plan.artifact.name.endswith("-64-fp32-ml.onnx")
    with pytest.raises(BuildError, match="exported with multi-label NMS, not single-label"):
        plan_build(BuildOptions(onnx=multi.artifact, backend="onnxruntime", output=tmp_path / "b", multi_label=False))
    with pytest.raises(ConfigError, match="multi_label must be"):
        plan_build(BuildOptions(weights=two_checkpoints[0], backend="onnxruntime", output=tmp_path, multi_label="yes"))


def test_engine_sidecar_records_the_multi_label_choice_of_an_end2end_build(
    two_checkpoints: tuple[Path, Path], tmp_path: Path, monkeypatch
) -> None:
    from yolov6_sdk.export import tensorrt

    def fake_make_engine(onnx_path: Path, engine_path: Path, config, meta=None, extra=None):  # noqa: ANN001, ANN202
        """What make_engine records, without TensorRT: the sidecar comes from the record it is given."""
        info = tensorrt.inspect_onnx(onnx_path)
        tensorrt.check_onnx(config, info)
        env = {"tensorrt_version": "10.0.0", "gpu_name": "test GPU", "compute_capability": "9.0"}
        Path(engine_path).write_bytes(b"engine")
        return tensorrt.engine_sidecar(engine_path, config, meta, env, (info.inputs, info.outputs), extra or {})

    monkeypatch.setattr(plan_module, "resolve_backend", lambda backend: ("tensorrt", "forced by the test"))
    monkeypatch.setattr(tensorrt, "make_engine", fake_make_engine)
    options = {"weights": two_checkpoints[0], "backend": "tensorrt", "end2end": True, "output": tmp_path}
    multi = build(**options, multi_label=True)
    assert multi.artifact.name == f"yolov6n-{file_sha256(two_checkpoints[0])[:8]}-64-fp32-nms_trt-ml.engine"
    car = json.loads(multi.sidecar.read_text())
    assert (car["multi_label"], car["end2end"]) == (True, "trt")
    single = build(**options)
    assert single.cached == () and json.loads(single.sidecar.read_text())["multi_label"] is False
