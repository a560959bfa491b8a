"""ONNX export: equivalence with torch, batch axes, metadata, the TensorRT NMS node and failure behaviour."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.errors import ArtifactError, BuildError
from yolov6_sdk.export import onnx as onnx_export
from yolov6_sdk.export.onnx import ExportOptions, export_onnx, read_metadata
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.backends.onnxruntime import OnnxRuntimeBackend
from yolov6_sdk.runtime.detector import Detector

IMGSZ = (160, 160)
NUM_CLASSES = 12


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_model(build_model("yolov6n", NUM_CLASSES).eval(), seed=0)


@pytest.fixture(scope="module")
def fused_model(model: torch.nn.Module) -> torch.nn.Module:
    """A fused copy: export fuses anyway, and fusing once up front keeps the tests below fast."""
    return fuse(copy.deepcopy(model))


@pytest.fixture(scope="module")
def raw_onnx(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default export (dynamic batch, simplified) with one extra metadata entry."""
    path = tmp_path_factory.mktemp("raw") / "yolov6n.onnx"
    return export_onnx(model, path, ExportOptions(imgsz=IMGSZ), metadata={"source_sha256": "abc123"})


@pytest.fixture(scope="module")
def raw_session(raw_onnx: Path) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(raw_onnx, device="cpu")


@pytest.fixture(scope="module")
def reference(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Eight random inputs and the unfused torch model's outputs for them."""
    images = np.random.default_rng(0).random((8, 3, *IMGSZ), dtype=np.float32)
    with torch.no_grad():
        return images, model(torch.from_numpy(images)).numpy()


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_raw_export_matches_torch_within_1e_4_relative_for_dynamic_batches(
    raw_session: OnnxRuntimeBackend, reference: tuple[np.ndarray, np.ndarray], batch: int
) -> None:
    images, expected = reference
    got = raw_session.infer(images[:batch])["outputs"]
    assert got.shape == (batch, 525, 5 + NUM_CLASSES)
    np.testing.assert_allclose(got, expected[:batch], rtol=1e-4, atol=1e-4)


def test_export_passes_the_onnx_checker_and_leaves_the_model_untouched(model: torch.nn.Module, raw_onnx: Path) -> None:
    onnx.checker.check_model(onnx.load(str(raw_onnx)))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "export must fuse a copy"


def test_metadata_round_trips_into_the_runtime(raw_onnx: Path, raw_session: OnnxRuntimeBackend) -> None:
    meta = read_metadata(raw_onnx)
    assert meta.producer == "yolov6-sdk"
    assert meta.model == "yolov6n"
    assert meta.names == tuple(str(i) for i in range(NUM_CLASSES))
    assert meta.strides == (8, 16, 32) and meta.imgsz == tuple(IMGSZ)
    assert meta.precision == "fp32" and meta.dynamic_batch is True and meta.end2end == ""
    assert meta.multi_label is False
    assert meta.source_hashes["source_sha256"] == "abc123"
    info = raw_session.info
    assert info.names == list(meta.names) and info.imgsz == IMGSZ and not info.end2end
    assert (info.min_batch, info.max_batch) == (1, None)
    assert info.meta == meta


def test_static_batch_export_refuses_other_batches_and_the_detector_pads_and_splits(
    fused_model: torch.nn.Module, raw_onnx: Path, tmp_path: Path
) -> None:
    static = export_onnx(
        fused_model, tmp_path / "bs2.onnx", ExportOptions(imgsz=IMGSZ, dynamic_batch=False, batch=2, simplify=False)
    )
    backend = OnnxRuntimeBackend(static, device="cpu")
    assert (backend.info.min_batch, backend.info.max_batch) == (2, 2)
    with pytest.raises(ArtifactError, match="batch 2"):
        backend.infer(np.zeros((3, 3, *IMGSZ), dtype=np.float32))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((120, 160), (160, 90), (64, 64))]
    with Detector(static, device="cpu", conf=0.5) as fixed, Detector(raw_onnx, device="cpu", conf=0.5) as dynamic:
        assert fixed.batch_size == 2
        got, expected = fixed(images), dynamic(images)  # 3 images: one full batch, one padded
    assert len(got) == 3
    for a, b in zip(got, expected, strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)


def test_trt_end2end_export_has_one_efficient_nms_node_with_the_options(
    fused_model: torch.nn.Module, tmp_path: Path
) -> None:
    options = ExportOptions(imgsz=IMGSZ, nms="trt", conf=0.3, iou=0.55, max_det=50, simplify=False)
    proto = onnx.load(str(export_onnx(fused_model, tmp_path / "trt.onnx", options)))
    nodes = [node for node in proto.graph.node if node.op_type == "EfficientNMS_TRT"]
    assert len(nodes) == 1 and nodes[0].domain == "TRT"
    attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in nodes[0].attribute}
    assert attrs["max_output_boxes"] == 50
    assert attrs["score_threshold"] == pytest.approx(0.3) and attrs["iou_threshold"] == pytest.approx(0.55)
    assert attrs["background_class"] == -1 and attrs["box_coding"] == 1 and attrs["score_activation"] == 0
    outputs = {out.name: out.type.tensor_type for out in proto.graph.output}
    expected = {
        "num_dets": (onnx.TensorProto.INT32, 2),
        "det_boxes": (onnx.TensorProto.FLOAT, 3),
        "det_scores": (onnx.TensorProto.FLOAT, 2),
        "det_classes": (onnx.TensorProto.INT32, 2),
    }
    assert list(outputs) == list(expected)
    for name, (elem_type, rank) in expected.items():
        assert outputs[name].elem_type == elem_type and len(outputs[name].shape.dim) == rank
    assert outputs["det_boxes"].shape.dim[1].dim_value == 50 and outputs["det_boxes"].shape.dim[2].dim_value == 4
    assert read_metadata(tmp_path / "trt.onnx").end2end == "trt"


@pytest.mark.parametrize(
    "options",
    [
        ExportOptions(imgsz=(100, 160)),
        ExportOptions(opset=11),
        ExportOptions(nms="tensorrt"),
        ExportOptions(conf=0.0),
        ExportOptions(iou=1.5),
        ExportOptions(max_det=0),
        ExportOptions(batch=0),
        ExportOptions(multi_label="no"),
    ],
)
def test_invalid_export_options_raise_build_error_and_write_nothing(
    model: torch.nn.Module, tmp_path: Path, options: ExportOptions
) -> None:
    with pytest.raises(BuildError):
        export_onnx(model, tmp_path / "bad.onnx", options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [RuntimeError("exporter crashed"), KeyboardInterrupt()])
def test_interrupted_export_leaves_no_file(
    model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def broken_export(*args: object, **kwargs: object) -> None:
        Path(args[2]).write_bytes(b"half an onnx file")  # the exporter got as far as writing something
        raise error

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    monkeypatch.setattr(onnx_export, "fuse", lambda module: module)  # fusing is irrelevant here and slow
    with pytest.raises(BuildError if isinstance(error, Exception) else KeyboardInterrupt):
        export_onnx(model, tmp_path / "out.onnx", ExportOptions(imgsz=IMGSZ))
    assert list(tmp_path.iterdir()) == []
