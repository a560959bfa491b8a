"""The Detector facade: backends agree, inputs of every kind work, bad inputs give one clear error."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.artifact.preprocess import preprocess_batch
from yolov6_sdk.errors import ArtifactError, CheckpointError, ConfigError, ImageError, YOLOv6Error
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime import detector as detector_module
from yolov6_sdk.runtime.backends.torch import TorchBackend
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.training.datagen import make_image
from yolov6_sdk.weights import save_checkpoint

NUM_CLASSES = 12
IMGSZ = 160
IOU = 0.45
NAMES = [f"shape{i}" for i in range(NUM_CLASSES)]


def _spread_scores(model: torch.nn.Module) -> torch.nn.Module:
    """Make class scores depend strongly on the image, so detections have well-separated scores."""
    with torch.no_grad():
        for name, param in model.detect.named_parameters():
            if name.startswith("cls_preds"):
                param.mul_(10.0) if name.endswith("weight") else param.fill_(-3.0)
    return model


def _conf_for_a_few_detections(model: torch.nn.Module, image: np.ndarray) -> float:
    """A threshold in the widest gap between the 10th and 40th best candidate scores (no near-ties at it)."""
    batch, _ = preprocess_batch([image], IMGSZ)
    with torch.no_grad():
        scores = model(torch.from_numpy(batch))[0, :, 5:].max(1).values.numpy()
    ranked = np.sort(scores)[::-1][10:41]
    k = int(np.argmax(ranked[:-1] - ranked[1:]))
    return float(ranked[k] + ranked[k + 1]) / 2


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A fixed-seed model as checkpoint, raw ONNX and end-to-end ONNX (ORT NMS), plus a test image."""
    folder = tmp_path_factory.mktemp("detector")
    torch.manual_seed(0)
    model = _spread_scores(randomize_model(build_model("yolov6n", NUM_CLASSES).eval(), seed=0))
    model.names = list(NAMES)
    image = make_image(np.random.default_rng(0), (96, 224), NUM_CLASSES)[0]
    fused = fuse(copy.deepcopy(model))
    conf = _conf_for_a_few_detections(fused, image)
    # simplify=False: the slimmer is covered by test_export_onnx and only slows these fixtures down
    raw = export_onnx(fused, folder / "raw.onnx", ExportOptions(imgsz=(IMGSZ, IMGSZ), simplify=False))
    e2e_options = ExportOptions(imgsz=(IMGSZ, IMGSZ), nms="ort", conf=conf, iou=IOU, max_det=100, simplify=False)
    e2e = export_onnx(fused, folder / "e2e.onnx", e2e_options)
    checkpoint = save_checkpoint(folder / "model.pt", fused, imgsz=IMGSZ)  # fused: loads without reparameterising
    image_path = folder / "image.png"
    cv2.imwrite(str(image_path), image)
    return SimpleNamespace(
        folder=folder, raw=raw, e2e=e2e, checkpoint=checkpoint, image=image, image_path=image_path, conf=conf
    )


@pytest.fixture(scope="module")
def torch_detector(art: SimpleNamespace) -> Detector:
    return Detector(art.checkpoint, device="cpu", conf=art.conf, iou=IOU)


@pytest.fixture(scope="module")
def raw_detector(art: SimpleNamespace) -> Detector:
    return Detector(art.raw, device="cpu", conf=art.conf, iou=IOU)


def _assert_same_detections(a: Results, b: Results, box_tol: float = 1.0, score_tol: float = 1e-3) -> None:
    """Same count; each detection of ``a`` pairs one-to-one with a same-class one of ``b`` (box, score close)."""
    assert len(a) == len(b), f"{len(a)} vs {len(b)} detections"
    unmatched = list(range(len(b)))
    for box, score, class_id in zip(a.boxes, a.scores, a.class_ids, strict=True):
        distances = [np.abs(b.boxes[j] - box).max() for j in unmatched]
        j = unmatched.pop(int(np.argmin(distances)))
        assert np.abs(b.boxes[j] - box).max() <= box_tol, (box, b.boxes[j])
        assert abs(b.scores[j] - score) <= score_tol and b.class_ids[j] == class_id


def test_torch_ort_raw_and_ort_end2end_give_the_same_detections(
    art: SimpleNamespace, torch_detector: Detector, raw_detector: Detector
) -> None:
    with Detector(art.e2e, device="cpu", conf=art.conf, iou=IOU) as e2e_detector:
        assert e2e_detector.info.end2end and not raw_detector.info.end2end
        results = [det(art.image)[0] for det in (torch_detector, raw_detector, e2e_detector)]
    assert 5 <= len(results[0]) <= 50
    for other in results[1:]:
        _assert_same_detections(results[0], other)
    for result in results:
        assert result.names == NAMES and result.orig_shape == art.image.shape[:2]
        assert result.orig_img is art.image or np.array_equal(result.orig_img, art.image)
        assert set(result.speed) == {"preprocess", "inference", "postprocess"}
        assert (result.boxes >= 0).all() and (result.boxes[:, [0, 2]] <= art.image.shape[1]).all()
        assert (result.boxes[:, [1, 3]] <= art.image.shape[0]).all()


def test_numpy_and_torch_pre_and_post_processing_give_the_same_detections(
    art: SimpleNamespace, torch_detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [cv2.resize(art.image, (150, 70))]  # upscaled into the 160 canvas: the resize paths differ most
    expected = torch_detector(images)

    def numpy_path_used(*args: object, **kwargs: object) -> None:
        raise AssertionError("the numpy post-processing ran on the device path")

    monkeypatch.setattr(TorchBackend, "wants_torch", property(lambda self: True))
    monkeypatch.setattr(detector_module, "decode_raw", numpy_path_used)
    got = torch_detector(images)
    for a, b in zip(expected, got, strict=True):
        assert isinstance(b.boxes, np.ndarray)
        _assert_same_detections(a, b, box_tol=1.0, score_tol=1e-2)  # device resize differs by <= 1 gray level


def test_images_of_different_sizes_in_one_call_match_one_by_one_calls(
    art: SimpleNamespace, raw_detector: Detector
) -> None:
    images = [art.image, cv2.resize(art.image, (300, 120)), art.image[:50, :40].copy()]
    together = raw_detector([*images, art.image_path])
    assert len(together) == 4 and together[3].path == str(art.image_path)
    for image, result in zip(images, together, strict=False):
        alone = raw_detector.predict_batch([image])[0]
        assert result.orig_shape == image.shape[:2]
        np.testing.assert_allclose(result.boxes, alone.boxes, atol=1e-3)
        np.testing.assert_allclose(result.scores, alone.scores, atol=1e-6)


def test_grayscale_rgba_and_16_bit_images_work_as_arrays_and_files(
    art: SimpleNamespace, raw_detector: Detector, tmp_path: Path
) -> None:
    reference = raw_detector(art.image)[0]
    bgra = cv2.cvtColor(art.image, cv2.COLOR_BGR2BGRA)
    deep = art.image.astype(np.uint16) * 257
    for variant in (bgra, deep):
        _assert_same_detections(reference, raw_detector(variant)[0], box_tol=1e-3, score_tol=1e-6)
    gray = cv2.cvtColor(art.image, cv2.COLOR_BGR2GRAY)
    _assert_same_detections(
        raw_detector(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))[0], raw_detector(gray)[0], box_tol=1e-3, score_tol=1e-6
    )
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    for result in raw_detector(tmp_path):  # a folder: sorted by name
        assert result.orig_img.dtype == np.uint8 and result.orig_img.shape == (*art.image.shape[:2], 3)
    _assert_same_detections(reference, raw_detector(tmp_path / "deep.png")[0], box_tol=1e-3, score_tol=1e-6)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("missing image", ImageError, "does not exist"),
        ("zero-byte image", ImageError, "empty"),
        ("corrupt image", ImageError, "cannot decode"),
        ("corrupt image in a list", ImageError, "cannot decode"),
        ("unknown model suffix", ArtifactError, ".onnx"),
        ("missing model", ArtifactError, "does not exist"),
        ("zero-byte model", ArtifactError, "empty"),
        ("truncated onnx", ArtifactError, "re-export"),
        ("corrupt checkpoint", CheckpointError, "truncated or corrupt"),
    ],
)
def test_bad_inputs_raise_one_clear_error_naming_the_file(
    art: SimpleNamespace, raw_detector: Detector, tmp_path: Path, case: str, error: type, message: str
) -> None:
    bad_image = _write(tmp_path / "broken.jpg", b"\xff\xd8 not really a jpeg")
    truncated = _write(tmp_path / "cut.onnx", art.raw.read_bytes()[: art.raw.stat().st_size // 2])
    calls = {
        "missing image": (lambda: raw_detector(tmp_path / "nope.jpg"), "nope.jpg"),
        "zero-byte image": (lambda: raw_detector(_write(tmp_path / "zero.png", b"")), "zero.png"),
        "corrupt image": (lambda: raw_detector(bad_image), "broken.jpg"),
        "corrupt image in a list": (lambda: raw_detector([art.image_path, bad_image]), "broken.jpg"),
        "unknown model suffix": (lambda: Detector(_write(tmp_path / "m.tflite", b"x")), "m.tflite"),
        "missing model": (lambda: Detector(tmp_path / "none.onnx"), "none.onnx"),
        "zero-byte model": (lambda: Detector(_write(tmp_path / "zero.onnx", b"")), "zero.onnx"),
        "truncated onnx": (lambda: Detector(truncated, device="cpu"), "cut.onnx"),
        "corrupt checkpoint": (lambda: Detector(_write(tmp_path / "m.pt", b"PK\x03\x04 cut"), device="cpu"), "m.pt"),
    }
    call, name = calls[case]
    with pytest.raises(error, match=message) as caught:
        call()
    assert isinstance(caught.value, YOLOv6Error) and name in str(caught.value)


def test_errors_skip_returns_the_good_results_in_order_with_the_failures_named(
    art: SimpleNamespace, raw_detector: Detector, tmp_path: Path
) -> None:
    bad_image = _write(tmp_path / "broken.jpg", b"\xff\xd8 not really a jpeg")
    tiny = np.zeros((3, 4, 4), dtype=np.uint8)  # CHW or HWC with alpha? refused as ambiguous
    expected = raw_detector(art.image_path)[0]
    results = raw_detector([art.image_path, bad_image, tmp_path / "nope.jpg", art.image, tiny], errors="skip")
    assert [r.ok for r in results] == [True, False, False, True, False]
    for good in (results[0], results[3]):
        _assert_same_detections(good, expected)
    assert "broken.jpg" in results[1].error and "cannot decode" in results[1].error
    assert "nope.jpg" in results[2].error and len(results[2]) == 0
    assert results[1].to_dict()["error"] == results[1].error and "error" not in results[0].to_dict()
    with pytest.raises(ConfigError, match="raise"):
        raw_detector(art.image_path, errors="ignore")


def test_stream_yields_one_result_per_frame_of_a_video(art: SimpleNamespace, raw_detector: Detector, tmp_path: Path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    for i in range(4):
        writer.write(cv2.resize(np.roll(art.image, 10 * i, axis=1), (96, 64)))
    writer.release()
    results = list(raw_detector.stream(video))
    assert len(results) == 4
    assert all(r.orig_shape == (64, 96) and r.path == str(video) and r.orig_img.shape == (64, 96, 3) for r in results)
    with pytest.raises(ConfigError, match="stream"):
        raw_detector(video)
    with pytest.raises(ImageError, match="no frame|cannot open"):
        list(raw_detector.stream(_write(tmp_path / "bad.mp4", b"\x00" * 64)))


def test_onnx_without_metadata_falls_back_to_numbered_names_and_the_graph_input_size(
    art: SimpleNamespace, tmp_path: Path
) -> None:
    proto = onnx.load(str(art.raw))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with Detector(tmp_path / "plain.onnx", device="cpu") as plain:
        assert plain.names == [str(i) for i in range(NUM_CLASSES)] and plain.imgsz == (IMGSZ, IMGSZ)
    for axis, name in ((2, "height"), (3, "width")):
        proto.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    onnx.save(proto, str(tmp_path / "dynamic.onnx"))
    with pytest.raises(ConfigError, match="imgsz"):
        Detector(tmp_path / "dynamic.onnx", device="cpu")
    with Detector(tmp_path / "dynamic.onnx", device="cpu", imgsz=IMGSZ, conf=art.conf) as dynamic:
        assert len(dynamic(art.image)[0]) > 0


def test_end2end_detector_applies_conf_classes_and_max_det(art: SimpleNamespace) -> None:
    with Detector(art.e2e, device="cpu", conf=art.conf) as e2e:
        everything = e2e(art.image)[0]
    common = int(np.bincount(everything.class_ids).argmax())
    with Detector(art.e2e, device="cpu", conf=art.conf, classes=[common], max_det=2) as e2e:
        limited = e2e(art.image)[0]
    stricter = float(np.median(everything.scores))
    with Detector(art.e2e, device="cpu", conf=stricter) as e2e:
        assert 0 < len(e2e(art.image)[0]) == int((everything.scores > stricter).sum())
    assert 0 < len(limited) <= 2 and (limited.class_ids == common).all()
    np.testing.assert_allclose(limited.scores, everything.filter(classes=[common]).scores[:2], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"conf": 1.5},
        {"iou": -0.1},
        {"max_det": 0},
        {"classes": [99]},
        {"device": "gpu"},
        {"imgsz": 100},
        {"multi_label": "yes"},
    ],
)
def test_invalid_detector_options_raise_config_error(art: SimpleNamespace, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Detector(art.raw, **{"device": "cpu", **kwargs})


def test_warmup_context_manager_and_closed_detector(art: SimpleNamespace) -> None:
    with Detector(art.raw, device="cpu", threads=1) as detector:
        detector.warmup()
        assert detector.predict_batch([]) == []
    with pytest.raises(ArtifactError, match="closed"):
        detector(art.image)


def test_backend_is_chosen_from_the_suffix_and_tensorrt_is_imported_only_when_chosen(art: SimpleNamespace) -> None:
    code = (
        "import sys\n"
        "from yolov6_sdk.runtime.backends import registry\n"
        "assert registry.backend_kind('m.engine') == registry.backend_kind('m.plan') == 'tensorrt'\n"
        "assert registry.backend_kind('m.onnx') == 'onnxruntime' and registry.backend_kind('m.PT') == 'torch'\n"
        "assert not {'tensorrt', 'onnxruntime', 'torch'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(ArtifactError, match="torch backend does not read .onnx"):
        Detector(art.raw, backend="torch")
    with pytest.raises(ConfigError, match="backend must be"):
        Detector(art.raw, backend="tflite")


def _record_runs(detector: Detector, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the detector's backend so each run's batch size is appended to the returned list."""
    runs: list[int] = []
    infer = detector.backend.infer

    def counted(batch: np.ndarray) -> dict:
        runs.append(len(batch))
        return infer(batch)

    monkeypatch.setattr(detector.backend, "infer", counted)
    return runs


def test_predict_batch_runs_the_backend_once_per_batch_images(art: SimpleNamespace, monkeypatch) -> None:
    images = [art.image] * 7
    with Detector(art.raw, device="cpu", conf=art.conf, iou=IOU, batch=3) as detector:
        runs = _record_runs(detector, monkeypatch)
        threes = detector.predict_batch(images)
    assert runs == [3, 3, 1] and detector.batch_size == 3
    with Detector(art.raw, device="cpu", conf=art.conf, iou=IOU, batch=7) as detector:
        runs = _record_runs(detector, monkeypatch)
        whole = detector.predict_batch(images)
    assert runs == [7]
    for a, b in zip(threes, whole, strict=True):
        _assert_same_detections(a, b)
    monkeypatch.setattr(detector_module, "DEFAULT_MAX_BATCH", 4)  # None: the default for an unbounded batch axis
    with Detector(art.raw, device="cpu", conf=art.conf, iou=IOU) as detector:
        runs = _record_runs(detector, monkeypatch)
        detector.predict_batch(images)
    assert runs == [4, 3]


def test_batch_outside_what_the_artifact_serves_raises_config_error_naming_the_range(
    art: SimpleNamespace, tmp_path: Path
) -> None:
    for bad in (0, -2, True, 2.5, "8"):
        with pytest.raises(ConfigError, match=r"batch must be an int in 1 or more .*raw.onnx"):
            Detector(art.raw, device="cpu", batch=bad)
    proto = onnx.load(str(art.raw))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # a fixed batch of 2
    fixed = tmp_path / "fixed.onnx"
    onnx.save(proto, str(fixed))
    for bad in (1, 3):
        with pytest.raises(ConfigError, match=rf"batch must be an int in 2\.\.2 .*got {bad}"):
            Detector(fixed, device="cpu", batch=bad)
    with Detector(fixed, device="cpu", batch=2) as detector:
        assert detector.batch_size == 2 and len(detector.predict_batch([art.image] * 3)) == 3
