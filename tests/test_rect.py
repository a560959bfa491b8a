"""Rectangular inference: stride-multiple canvases, dynamic-shape exports, the Detector's rect option."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from yolov6_sdk.artifact.preprocess import letterbox_info, preprocess_batch, rect_shape, scale_boxes_to_original
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.export.build import run_build
from yolov6_sdk.export.onnx import ExportOptions, export_onnx, read_metadata
from yolov6_sdk.export.options import BuildOptions
from yolov6_sdk.export.plan import plan_build
from yolov6_sdk.export.tensorrt import BuildConfig, input_profile
from yolov6_sdk.models import fuse
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import make_image
from yolov6_sdk.weights import load

IMGSZ = 160


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ canvas


@pytest.mark.parametrize(
    ("shapes", "imgsz", "expected"),
    [
        ([(480, 640)], (640, 640), (480, 640)),  # 4:3 landscape: a quarter less canvas
        ([(640, 480)], (640, 640), (640, 480)),
        ([(720, 1280)], (640, 640), (384, 640)),  # resized to 360x640, rounded up to the stride
        ([(720, 1280), (640, 480)], (640, 640), (640, 640)),  # a batch holds its largest member on each axis
        ([(100, 100)], (640, 640), (640, 640)),  # scaled up to the model's scale
        ([(1, 3000)], (640, 640), (32, 640)),
    ],
)
def test_rect_shape_is_the_smallest_stride_multiple_holding_the_batch(
    shapes: list[tuple[int, int]], imgsz: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert rect_shape(shapes, imgsz) == expected


def test_rect_shape_without_scaleup_keeps_small_images_small() -> None:
    assert rect_shape([(100, 130)], (640, 640), scaleup=False) == (128, 160)


@pytest.mark.parametrize("seed", range(8))
def test_rect_letterbox_maps_boxes_to_the_same_original_pixels_as_the_square(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(40, 900)), int(rng.integers(40, 900))
    image = _image(h, w, seed)
    square, (square_info,) = preprocess_batch([image], (320, 320))
    canvas = rect_shape([(h, w)], (320, 320))
    rect, (rect_info,) = preprocess_batch([image], (320, 320), canvas=canvas)
    assert rect.shape == (1, 3, *canvas) and rect_info.ratio == square_info.ratio
    # the image area is the same pixels on both canvases
    (rh, rw), (sl, st), (rl, rt) = rect_info.resized_shape, square_info.pad, rect_info.pad
    np.testing.assert_array_equal(rect[0, :, rt : rt + rh, rl : rl + rw], square[0, :, st : st + rh, sl : sl + rw])
    # a box in original pixels, as each canvas sees it, maps back to the same original pixels
    xy = rng.uniform(0, [w, h], (20, 2))
    original = np.concatenate([xy, xy + rng.uniform(1, [w, h], (20, 2))], 1).clip(0, [w, h, w, h])
    on_square = original * square_info.ratio + np.array([sl, st, sl, st])
    on_rect = original * rect_info.ratio + np.array([rl, rt, rl, rt])
    back_square = scale_boxes_to_original(on_square.astype(np.float32), square_info)
    back_rect = scale_boxes_to_original(on_rect.astype(np.float32), rect_info)
    assert np.abs(back_rect - back_square).max() <= 0.5
    assert np.abs(back_rect - original).max() <= 0.5


def test_letterbox_info_refuses_a_canvas_too_small_for_the_scale() -> None:
    with pytest.raises(ConfigError, match="rect_shape"):
        letterbox_info((480, 640), (448, 640), scale_shape=(640, 640))


# ------------------------------------------------------------------------------------------ artifacts


DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "yolov6n-shapes.pt"


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The demo model exported with dynamic height/width and with a fixed square, plus a 4:3 demo picture."""
    folder = tmp_path_factory.mktemp("rect")
    model = fuse(load(DEMO_WEIGHTS).model.eval())
    dynamic = export_onnx(
        model, folder / "dynamic.onnx", ExportOptions((IMGSZ, IMGSZ), dynamic_hw=True, simplify=False)
    )
    fixed = export_onnx(model, folder / "fixed.onnx", ExportOptions((IMGSZ, IMGSZ), simplify=False))
    picture = make_image(np.random.default_rng(1), (256, 320), 8)[0]  # as the demo set's pictures
    image = cv2.resize(picture, (320, 240))  # stretched to 4:3 landscape
    return SimpleNamespace(model=model, dynamic=dynamic, fixed=fixed, image=image)


def test_dynamic_export_runs_any_stride_multiple_and_records_its_range(art: SimpleNamespace) -> None:
    session = ort.InferenceSession(str(art.dynamic), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[2:] == ["height", "width"]
    meta = read_metadata(art.dynamic)
    assert meta.dynamic_hw is True and meta.imgsz_min == (32, 32) and meta.imgsz_max == (IMGSZ, IMGSZ)
    batch = np.random.default_rng(0).random((2, 3, 96, 160), dtype=np.float32)
    with torch.no_grad():
        expected = art.model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(session.run(None, {"images": batch})[0], expected, atol=1e-3)


def test_rect_is_the_default_of_dynamic_exports_only(art: SimpleNamespace) -> None:
    with Detector(art.dynamic, device="cpu") as dynamic, Detector(art.fixed, device="cpu") as fixed:
        assert dynamic.rect and not fixed.rect
        assert dynamic.canvas_shape([(240, 320)]) == (128, 160) and fixed.canvas_shape([(240, 320)]) == (IMGSZ, IMGSZ)
    with Detector(art.dynamic, device="cpu", rect=False) as square:
        assert square.canvas_shape([(240, 320)]) == (IMGSZ, IMGSZ)


def test_rect_on_a_fixed_shape_artifact_is_refused_with_the_fix(art: SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match="--dynamic-hw"):
        Detector(art.fixed, device="cpu", rect=True)


def test_dynamic_artifact_refuses_an_input_size_outside_its_profile(art: SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match=r"32x32 to 160x160.*imgsz=\(320, 320\)"):
        Detector(art.dynamic, device="cpu", imgsz=320)


def test_rect_and_square_detections_agree_on_a_4_3_picture(art: SimpleNamespace) -> None:
    with Detector(art.dynamic, device="cpu", conf=0.3, rect=True) as rect:
        rect_result = rect(art.image)[0]
    with Detector(art.fixed, device="cpu", conf=0.3) as square:
        square_result = square(art.image)[0]
    assert len(square_result) > 0
    # the canvases differ in gray padding only; detections must be the same objects at the same pixels
    assert len(rect_result) == len(square_result)
    np.testing.assert_array_equal(rect_result.boxes.cls, square_result.boxes.cls)
    ratio = IMGSZ / art.image.shape[1]  # model-input pixels per original pixel
    np.testing.assert_allclose(rect_result.boxes.xyxy, square_result.boxes.xyxy, atol=2.0 / ratio)  # 2 input px


def test_a_mixed_batch_runs_on_the_canvas_of_its_largest_member(art: SimpleNamespace) -> None:
    wide = art.image[:120]  # 120x320: 64x160 alone, 128x160 beside the 240x320 picture
    with Detector(art.dynamic, device="cpu", conf=0.3) as detector:
        assert detector.canvas_shape([art.image.shape[:2], wide.shape[:2]]) == (128, 160)
        together = detector.predict_batch([art.image, wide])
        alone = detector.predict_batch([art.image])[0]
    assert [r.orig_shape for r in together] == [(240, 320), (120, 320)]
    np.testing.assert_allclose(together[0].boxes.xyxy, alone.boxes.xyxy, atol=1e-3)  # same canvas, same boxes
    assert (together[1].boxes.xyxy[:, [1, 3]] <= 120).all()


def test_build_dynamic_hw_makes_a_named_rect_artifact_and_refuses_a_fixed_onnx_source(
    art: SimpleNamespace, tmp_path: Path
) -> None:
    plan = plan_build(
        BuildOptions(weights=DEMO_WEIGHTS, precision="fp32", dynamic_hw=True, output=tmp_path, backend="onnxruntime")
    )
    assert plan.dynamic_hw and plan.artifact.name.endswith("-dynhw.onnx")
    artifact = run_build(plan).artifact
    with Detector(artifact, device="cpu") as detector:
        assert detector.rect and detector.canvas_shape([art.image.shape[:2]]) == (128, 160)
    from_onnx = plan_build(
        BuildOptions(onnx=art.dynamic, precision="fp32", output=tmp_path / "o", backend="onnxruntime")
    )
    assert from_onnx.dynamic_hw and from_onnx.artifact.name.endswith("-dynhw.onnx")
    with pytest.raises(ConfigError, match="fixed input height and width.*--dynamic-hw"):
        plan_build(BuildOptions(onnx=art.fixed, dynamic_hw=True, output=tmp_path / "f", backend="onnxruntime"))


# ------------------------------------------------------------------------------------------ TensorRT profile


def test_tensorrt_profile_spans_stride_to_imgsz_for_dynamic_height_and_width() -> None:
    config = BuildConfig(precision="fp16", batch_sizes=(1, 8), imgsz=(640, 640))
    assert input_profile(config, (-1, 3, -1, -1)) == ((1, 3, 32, 32), (8, 3, 640, 640), (8, 3, 640, 640))
    assert input_profile(config, (-1, 3, 640, 640)) == ((1, 3, 640, 640), (8, 3, 640, 640), (8, 3, 640, 640))


def test_engine_sidecar_records_the_dynamic_range_of_the_record_it_is_given(
    art: SimpleNamespace, tmp_path: Path
) -> None:
    from yolov6_sdk.artifact.sidecar import read_sidecar, write_sidecar
    from yolov6_sdk.artifact.spec import IOSpec
    from yolov6_sdk.export.tensorrt import engine_sidecar

    config = BuildConfig(precision="fp16", batch_sizes=(1,), imgsz=(IMGSZ, IMGSZ))
    env = {"tensorrt_version": "10.0.0", "gpu_name": "test GPU", "compute_capability": "9.0"}
    io = ((IOSpec("images", (None, 3, None, None), "float16"),), ())
    car = engine_sidecar(tmp_path / "m.engine", config, read_metadata(art.dynamic), env, io, {})
    back = read_sidecar(write_sidecar(car, tmp_path / "m.engine")).meta
    assert (back.dynamic_hw, back.imgsz_min, back.imgsz_max) == (True, (32, 32), (IMGSZ, IMGSZ))
    fixed = engine_sidecar(tmp_path / "f.engine", config, read_metadata(art.fixed), env, io, {}).meta
    assert (fixed.dynamic_hw, fixed.imgsz_min, fixed.imgsz_max) == (False, None, None)
