"""Artifact names: a function of what the artifact holds, so two different artifacts never share one."""

from __future__ import annotations

import itertools

import pytest

from yolov6_sdk.artifact.naming import RANDOM_SOURCE, artifact_name
from yolov6_sdk.errors import ConfigError

WEIGHTS_A, WEIGHTS_B = "3f2a9c1d" + "0" * 56, "77aa01be" + "f" * 56


def test_names_read_as_model_source_size_precision() -> None:
    assert artifact_name("yolov6n", WEIGHTS_A, (160, 160), "int8", ".onnx") == "yolov6n-3f2a9c1d-160-int8.onnx"
    assert artifact_name("yolov6s", RANDOM_SOURCE, (384, 640), "fp16", ".engine", (1, 32, 32), "trt") == (
        "yolov6s-random-384x640-fp16-bs1_32-nms_trt.engine"
    )


def test_multi_label_nms_adds_ml_after_the_nms_part_for_end2end_and_raw_artifacts() -> None:
    assert artifact_name("yolov6s", RANDOM_SOURCE, (384, 640), "fp16", ".engine", (1, 32, 32), "trt", True) == (
        "yolov6s-random-384x640-fp16-bs1_32-nms_trt-ml.engine"
    )
    # a raw graph is the same either way, but its metadata (the Detector's default) differs, so its name does
    assert artifact_name("yolov6n", WEIGHTS_A, (160, 160), "int8", ".onnx", None, None, True) == (
        "yolov6n-3f2a9c1d-160-int8-ml.onnx"
    )


def test_default_batch_of_each_kind_is_left_out_of_the_name() -> None:
    assert (
        artifact_name("yolov6n", WEIGHTS_A, (640, 640), "fp16", ".engine", (1, 1, 1))
        == "yolov6n-3f2a9c1d-640-fp16.engine"
    )
    assert artifact_name("yolov6n", WEIGHTS_A, (640, 640), "fp32", ".onnx", None) == "yolov6n-3f2a9c1d-640-fp32.onnx"
    assert artifact_name("yolov6n", WEIGHTS_A, (640, 640), "fp32", ".onnx", (1, 1, 1)).endswith("-fp32-bs1.onnx")


VARIANTS = {
    "model": ("yolov6n", "yolov6s"),
    "source": (WEIGHTS_A, WEIGHTS_B, RANDOM_SOURCE),
    "imgsz": ((160, 160), (160, 256), (256, 160)),
    "precision": ("fp32", "fp16", "int8"),
    "suffix": (".onnx", ".engine"),
    "batch": (None, (1, 1, 1), (8, 8, 8), (1, 8, 8), (1, 8, 32), (1, 1, 32)),
    "nms": (None, "ort", "trt"),
    "multi_label": (False, True),
}


def test_different_weights_size_precision_batch_nms_or_multi_label_give_different_names_and_the_same_the_same():
    names: dict[str, tuple] = {}
    for combo in itertools.product(*VARIANTS.values()):
        if combo[4] == ".engine" and combo[5] is None:
            continue  # an engine always has a batch profile
        name = artifact_name(*combo)
        assert names.setdefault(name, combo) == combo, f"{name} names both {names[name]} and {combo}"
        assert artifact_name(*combo) == name
    assert len(names) > 2000


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "my model"},
        {"model": "../yolov6n"},
        {"source": "not-a-hash"},
        {"precision": "int4"},
        {"suffix": ".tflite"},
        {"nms": "cpu"},
        {"multi_label": "yes"},
    ],
)
def test_values_the_scheme_cannot_encode_raise_config_error(bad: dict) -> None:
    args = {"model": "yolov6n", "source": WEIGHTS_A, "precision": "fp32", "suffix": ".onnx", "nms": None} | bad
    with pytest.raises(ConfigError):
        artifact_name(
            args["model"], args["source"], (64, 64), args["precision"], args["suffix"], None, args["nms"],
            args.get("multi_label", False),
        )  # fmt: skip
