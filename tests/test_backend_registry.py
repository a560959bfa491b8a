"""A backend is one class with a declaration plus one registry line: a stand-in backend defined here is picked
by suffix and by name, gets only its own options, and shows in bench rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from yolov6_sdk.artifact import spec as artifact_spec
from yolov6_sdk.artifact.model_info import ModelInfo
from yolov6_sdk.artifact.spec import IOSpec
from yolov6_sdk.bench import BenchOptions, bench_jobs, skip_reason
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.runtime.backends import registry
from yolov6_sdk.runtime.backends.base import Backend, BackendSpec
from yolov6_sdk.runtime.detector import Detector

SUFFIX = ".standin"


class StandInBackend(Backend):
    """Answers every batch with no detections, and records the options it was given."""

    spec = BackendSpec(
        name="standin",
        suffixes=(SUFFIX,),
        options=("threads", "imgsz"),
        modules=("numpy",),
        install="pip install numpy",
        devices=("cpu",),
        precisions=("fp32",),
    )
    given: dict[str, Any] = {}

    def __init__(self, path: str | Path, device: str = "auto", **options: Any) -> None:
        super().__init__(path, "cpu")
        StandInBackend.given = options
        self._info = ModelInfo(
            names=["thing"], imgsz=(64, 64), end2end=False,
            inputs=(IOSpec("images", (None, 3, 64, 64), "float32"),),
            outputs=(IOSpec("outputs", (None, 84, 6), "float32"),),
        )  # fmt: skip

    @property
    def info(self) -> ModelInfo:
        return self._info

    def infer(self, images: Any) -> dict[str, Any]:
        return {"outputs": np.zeros((len(images), 84, 6), np.float32)}


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setitem(artifact_spec.ARTIFACT_SUFFIXES, SUFFIX, "stand-in")
    monkeypatch.setattr(registry, "BACKEND_CLASSES", (*registry.BACKEND_CLASSES, f"{__name__}:StandInBackend"))
    registry.backend_classes.cache_clear()
    yield (tmp_path / "model.standin").resolve()
    registry.backend_classes.cache_clear()


def test_the_stand_in_is_picked_by_suffix_and_by_name(registered: Path) -> None:
    registered.write_bytes(b"weights")
    assert registry.backend_kind(registered) == "standin"
    assert registry.backend_kind(registered, "standin") == "standin"
    with Detector(registered, device="cpu") as detector:
        assert detector.backend.kind == "standin" and detector(np.zeros((64, 64, 3), np.uint8))[0].boxes.xyxy.shape == (
            0,
            4,
        )


def test_the_stand_in_gets_only_its_own_options(registered: Path) -> None:
    registered.write_bytes(b"weights")
    Detector(registered, device="cpu", threads=3, imgsz=64).close()
    assert StandInBackend.given == {"threads": 3, "imgsz": 64}
    Detector(registered, device="cpu").close()
    assert StandInBackend.given == {}  # imgsz is passed only when given
    with pytest.raises(ConfigError, match="cuda_graph applies to .*not the standin backend"):
        Detector(registered, device="cpu", cuda_graph=True)


def test_the_stand_in_shows_in_bench_rows(registered: Path) -> None:
    registered.write_bytes(b"weights")
    jobs = bench_jobs(BenchOptions(artifacts=(registered,), batch_sizes=(1,), backends=("standin",)))
    assert [(job.backend, job.artifact) for job in jobs] == [("standin", registered)]
    assert skip_reason(jobs[0], "cpu") == ""
    assert "runs on cpu" in skip_reason(jobs[0], "cuda")


def test_an_onnx_file_has_two_readers_and_a_name_outside_the_list_is_refused() -> None:
    readers = [spec.name for spec in registry.backend_specs() if ".onnx" in spec.suffixes]
    assert readers == ["onnxruntime", "openvino"]
    with pytest.raises(ConfigError, match="backend must be 'auto' or one of"):
        registry.choose_backend("m.onnx", "tflite")
