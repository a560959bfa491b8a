"""Thresholds per call, as ultralytics users write them: ``detector(img, conf=0.5)`` equals a Detector made with
``conf=0.5``; ``predict`` is the same call; classes may be given by name."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from conftest import randomize_model

from yolov6_sdk import Detector
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.training.datagen import make_image

NAMES = ["circle", "square", "cross", "triangle"]
IMGSZ = 128


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("call-options")
    torch.manual_seed(0)
    model = randomize_model(build_model("yolov6n", len(NAMES)).eval(), seed=1)
    with torch.no_grad():  # class scores that vary with the image, so thresholds keep different sets
        for name, param in model.detect.named_parameters():
            if name.startswith("cls_preds"):
                param.mul_(10.0) if name.endswith("weight") else param.fill_(-3.0)
    model.names = list(NAMES)
    options = ExportOptions(imgsz=(IMGSZ, IMGSZ), simplify=False)
    raw = export_onnx(fuse(model), folder / "raw.onnx", options)
    image = make_image(np.random.default_rng(3), (IMGSZ, IMGSZ), len(NAMES))[0]
    cv2.imwrite(str(folder / "a.png"), image)
    return SimpleNamespace(raw=raw, image=image, jpg=folder / "a.png")


def _same(a: list[Results], b: list[Results]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.boxes.xyxy, y.boxes.xyxy)
        np.testing.assert_array_equal(x.boxes.conf, y.boxes.conf)
        np.testing.assert_array_equal(x.boxes.cls, y.boxes.cls)


@pytest.mark.parametrize(
    "settings",
    [{"conf": 0.5}, {"iou": 0.2}, {"max_det": 3}, {"classes": [2]}, {"conf": 0.1, "iou": 0.3, "max_det": 5, "classes": [0, 3]}],
)  # fmt: skip
def test_per_call_thresholds_equal_detector_level_ones(art: SimpleNamespace, settings: dict) -> None:
    model = Detector(art.raw, device="cpu", conf=0.05)
    expected = Detector(art.raw, device="cpu", **{"conf": 0.05, **settings})(str(art.jpg))
    _same(model(str(art.jpg), **settings), expected)
    _same(model.predict(str(art.jpg), **settings), expected)
    _same(model.predict_batch([art.image], **settings), expected)
    assert model.conf == 0.05 and model.max_det == 300  # the call did not change the Detector's own settings


def test_the_thresholds_change_what_comes_out(art: SimpleNamespace) -> None:
    model = Detector(art.raw, device="cpu", conf=0.05)
    many = len(model(art.image)[0])
    assert many > 3, "the test model should find several boxes at conf 0.05"
    assert len(model(art.image, max_det=3)[0]) == 3
    assert len(model(art.image, conf=0.99)[0]) < many
    assert set(model(art.image, classes=["cross"])[0].boxes.cls.tolist()) <= {2.0}


def test_classes_are_taken_by_name_as_results_filter_takes_them(art: SimpleNamespace) -> None:
    by_name = Detector(art.raw, device="cpu", conf=0.05, classes=["cross", "circle"])
    by_id = Detector(art.raw, device="cpu", conf=0.05, classes=[2, 0])
    _same(by_name(art.image), by_id(art.image))
    assert by_name.classes == [2, 0]
    everything = Detector(art.raw, device="cpu", conf=0.05)(art.image)[0]
    np.testing.assert_array_equal(
        everything.filter(classes=["cross", "circle"]).boxes.xyxy, by_name(art.image)[0].boxes.xyxy
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"conf": 1.5}, "conf"), ({"iou": -0.1}, "iou"), ({"max_det": 0}, "max_det"), ({"conf": True}, "conf"),
     ({"classes": ["hexagon"]}, "hexagon"), ({"classes": [7]}, "class ids in 0..3"), ({"classes": 2}, "classes")],
)  # fmt: skip
def test_a_bad_per_call_value_is_one_config_error(art: SimpleNamespace, settings: dict, message: str) -> None:
    model = Detector(art.raw, device="cpu")
    with pytest.raises(ConfigError, match=message):
        model(art.image, **settings)


def test_a_folder_call_takes_the_thresholds_too(art: SimpleNamespace, tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), art.image)
    model = Detector(art.raw, device="cpu", conf=0.05)
    got = model(tmp_path, max_det=2, errors="skip")
    assert [len(r) for r in got] == [2, 2]
