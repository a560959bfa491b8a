"""The OpenVINO backend and IR builds: same detections as ONNX Runtime, metadata round trip, rect and dynamic
batch, explicit precision, the recorded CPU runtime choice, and bad IR files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from yolov6_sdk.artifact.sidecar import read_sidecar
from yolov6_sdk.errors import ArtifactError, BuildError, ConfigError
from yolov6_sdk.export.build import build
from yolov6_sdk.export.openvino import ir_sidecar, publish_ir, weights_path, write_ir
from yolov6_sdk.runtime import cpu_choice
from yolov6_sdk.runtime.backends.openvino import OpenVINOBackend, bf16_supported
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.training.datagen import make_image

ov = pytest.importorskip("openvino")

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "yolov6n-shapes.pt"
CALIB = Path(__file__).resolve().parents[1] / "calib"
# INT8 tolerance measured on the demo model (OpenVINO vs ONNX Runtime on one int8 Q/DQ graph): the largest
# score difference over these pictures was below 1e-4 and boxes agreed within 0.01 px; kept with margin.
INT8_SCORE_TOL, INT8_BOX_TOL = 0.02, 2.0


@pytest.fixture(scope="module")
def arts(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The demo model as fp32 ONNX (static and dynamic H/W), end-to-end ONNX, int8 ONNX, and IRs, plus pictures."""
    out = tmp_path_factory.mktemp("openvino")
    made = {
        "fp32": dict(precision="fp32"),
        "dyn": dict(precision="fp32", dynamic_hw=True),
        "e2e": dict(precision="fp32", end2end=True),
        "int8": dict(precision="int8", calib=CALIB),
        "ir_fp32": dict(precision="fp32", backend="openvino"),
        "ir_int8": dict(precision="int8", calib=CALIB, backend="openvino"),
    }
    paths = {key: build(weights=WEIGHTS, output=out, name=key, **options).artifact for key, options in made.items()}
    rng = np.random.default_rng(3)
    images = [make_image(rng, (200, 320), 8)[0] for _ in range(4)]
    return SimpleNamespace(out=out, images=images, **paths)


def _assert_same(a: Results, b: Results, box_tol: float, score_tol: float) -> None:
    assert len(a) == len(b), f"{len(a)} vs {len(b)} detections"
    unmatched = list(range(len(b)))
    for box, score, class_id in zip(a.boxes.xyxy, a.scores, a.class_ids, strict=True):
        j = unmatched.pop(int(np.argmin([np.abs(b.boxes.xyxy[k] - box).max() for k in unmatched])))
        assert np.abs(b.boxes.xyxy[j] - box).max() <= box_tol and abs(b.scores[j] - score) <= score_tol
        assert b.class_ids[j] == class_id


def _compare(path: Path, images: list, box_tol: float, score_tol: float, **options: object) -> None:
    with (
        Detector(path, device="cpu", backend="onnxruntime", **options) as ort_run,
        Detector(path, device="cpu", backend="openvino", **options) as ov_run,
    ):
        assert ov_run.backend.kind == "openvino"
        expected, got = ort_run(images), ov_run(images)
    assert sum(len(r) for r in expected) > 0, "the demo model found nothing: the comparison would be empty"
    for a, b in zip(expected, got, strict=True):
        _assert_same(a, b, box_tol, score_tol)


@pytest.mark.parametrize("kind", ["fp32", "e2e", "dyn"])
def test_fp32_artifacts_give_onnxruntimes_detections(arts: SimpleNamespace, kind: str) -> None:
    _compare(getattr(arts, kind), arts.images, 1.0, 1e-3)


def test_int8_artifact_gives_onnxruntimes_detections_within_the_int8_tolerance(arts: SimpleNamespace) -> None:
    _compare(arts.int8, arts.images, INT8_BOX_TOL, INT8_SCORE_TOL)


def test_rect_and_dynamic_batch_match_onnxruntime_on_the_same_canvas(arts: SimpleNamespace) -> None:
    wide = [image[: image.shape[0] // 2] for image in arts.images]  # landscape pictures: a non-square canvas
    runs = {}
    for name in ("onnxruntime", "openvino"):
        with Detector(arts.dyn, device="cpu", backend=name, batch=4) as detector:
            assert detector.rect
            canvas = detector.canvas_shape([image.shape[:2] for image in wide])
            runs[name] = detector.predict_batch(wide)  # one backend run of batch 4
    assert canvas[0] < canvas[1] == 160  # rectangular: the batch ran on its own canvas, not the square
    for a, b in zip(runs["onnxruntime"], runs["openvino"], strict=True):
        _assert_same(a, b, 1e-2, 1e-4)


def test_ir_metadata_round_trips_and_ir_runs_like_its_onnx(arts: SimpleNamespace) -> None:
    backend = OpenVINOBackend(arts.ir_fp32, device="cpu")
    reference = OpenVINOBackend(arts.fp32, device="cpu")
    assert backend.info.names == reference.info.names and len(backend.info.names) == 8
    assert (backend.info.imgsz, backend.info.precision, backend.info.multi_label) == ((160, 160), "fp32", False)
    assert backend.info.meta.strides == (8, 16, 32)
    car = read_sidecar(arts.ir_fp32)
    assert (car.kind, car.precision, car.names) == ("openvino", "fp32", tuple(backend.info.names))
    assert car.source_hashes["bin"] and car.artifact == arts.ir_fp32.name
    with Detector(arts.ir_fp32, device="cpu") as from_ir, Detector(arts.fp32, device="cpu", backend="openvino") as onnx:
        assert from_ir.backend.kind == "openvino"
        for a, b in zip(from_ir(arts.images), onnx(arts.images), strict=True):
            _assert_same(a, b, 1e-3, 1e-5)
    assert OpenVINOBackend(arts.ir_int8, device="cpu").info.precision == "int8"


def test_an_fp32_artifact_runs_fp32_unless_bf16_is_asked(arts: SimpleNamespace) -> None:
    backend = OpenVINOBackend(arts.fp32, device="cpu")
    assert backend.info.precision == "fp32"
    assert backend.inference_precision == "fp32"
    if not bf16_supported(ov.Core()):
        with pytest.raises(ConfigError, match="AVX512-BF16 or AMX"):
            OpenVINOBackend(arts.fp32, device="cpu", precision="bf16")
        return
    bf16 = OpenVINOBackend(arts.fp32, device="cpu", precision="bf16")
    assert bf16.info.precision == bf16.inference_precision == "bf16"


def test_options_the_backend_does_not_take_are_refused_by_name(arts: SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match="cuda_graph applies to .*not the openvino backend"):
        Detector(arts.ir_fp32, cuda_graph=True)
    with pytest.raises(ConfigError, match="precision applies to openvino"):
        Detector(arts.fp32, backend="onnxruntime", precision="bf16")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        OpenVINOBackend(arts.fp32, device="cuda")


def test_auto_choice_is_recorded_and_re_measured_on_another_cpu(
    arts: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = arts.out / "choice.onnx"
    path.write_bytes(arts.fp32.read_bytes())
    (arts.out / "choice.json").write_text(arts.fp32.with_suffix(".json").read_text())
    with Detector(path, device="cpu") as detector:
        record = read_sidecar(path).extra["cpu_runtime"]
        assert detector.backend.kind == record["backend"] and set(record["timings_ms"]) == {"onnxruntime", "openvino"}
        assert record["cpu"] == cpu_choice.cpu_identity()
    probes: list[str] = []
    real_probe = cpu_choice.probe
    monkeypatch.setattr(cpu_choice, "probe", lambda p, c: probes.append(str(p)) or real_probe(p, c))
    Detector(path, device="cpu").close()
    assert probes == []  # recorded for this CPU: no new measurement
    monkeypatch.setattr(cpu_choice, "cpu_identity", lambda: "Another CPU [AVX2] x64")
    with caplog.at_level(logging.WARNING, logger="yolov6_sdk.runtime.cpu_choice"):
        Detector(path, device="cpu").close()
    assert probes == [str(path)] and "re-measured here" in caplog.text
    assert read_sidecar(path).extra["cpu_runtime"]["cpu"] == "Another CPU [AVX2] x64"
    assert Detector(path, device="cpu", backend="onnxruntime").backend.kind == "onnxruntime"  # named: no probe


def test_an_xml_without_its_bin_and_a_truncated_bin_get_one_clear_error(arts: SimpleNamespace, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(arts.ir_fp32.read_bytes())
    with pytest.raises(ArtifactError, match=r"without its weights file lonely\.bin"):
        Detector(lonely)
    truncated = tmp_path / "cut.xml"
    truncated.write_bytes(arts.ir_fp32.read_bytes())
    weights = arts.ir_fp32.with_suffix(".bin").read_bytes()
    truncated.with_suffix(".bin").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ArtifactError, match="truncated, corrupt or not a model"):
        Detector(truncated)


def test_an_ir_from_another_tool_loads_with_numbered_classes_and_a_warning(
    arts: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proto = onnx.load(str(arts.fp32))
    del proto.metadata_props[:]  # another exporter's ONNX: no SDK metadata
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    model = ov.Core().read_model(str(tmp_path / "plain.onnx"))
    foreign = tmp_path / "foreign.xml"
    ov.save_model(model, str(foreign), compress_to_fp16=False)
    assert "framework" not in ov.Core().read_model(str(foreign)).get_rt_info().keys()  # noqa: SIM118
    with caplog.at_level(logging.WARNING):
        detector = Detector(foreign)
    assert "records no SDK metadata" in caplog.text
    assert detector.names == [str(i) for i in range(8)] and detector.info.imgsz == (160, 160)
    assert len(detector(arts.images[0])[0]) == len(Detector(arts.fp32, backend="onnxruntime")(arts.images[0])[0])


def test_second_load_uses_the_compiled_model_cache(arts: SimpleNamespace) -> None:
    OpenVINOBackend(arts.ir_int8, device="cpu").close()
    cache = arts.ir_int8.with_name(f"{arts.ir_int8.stem}.ov-cache")
    assert cache.is_dir() and any(cache.iterdir())


def test_throughput_mode_gives_the_latency_modes_outputs(arts: SimpleNamespace) -> None:
    batch = np.random.default_rng(0).random((3, 3, 160, 160), dtype=np.float32)
    latency = OpenVINOBackend(arts.int8, device="cpu").infer(batch)
    throughput = OpenVINOBackend(arts.int8, device="cpu", mode="throughput").infer(batch)
    assert json.dumps(sorted(latency)) == json.dumps(sorted(throughput))
    for name in latency:
        np.testing.assert_allclose(latency[name], throughput[name], atol=1e-5)


def test_an_ir_that_cannot_be_read_back_is_not_published(arts: SimpleNamespace, tmp_path: Path) -> None:
    built = tmp_path / ".built.xml"
    write_ir(arts.fp32, built, "fp32")
    sidecar = ir_sidecar(arts.fp32, built, "fp32")
    data = weights_path(built).read_bytes()
    weights_path(built).write_bytes(data[: len(data) // 3])  # the disk filled up while the .bin was written
    with pytest.raises(BuildError, match="cannot be read back"):
        publish_ir(built, tmp_path / "model.xml", sidecar)
    assert not (tmp_path / "model.xml").exists() and not (tmp_path / "model.bin").exists()
