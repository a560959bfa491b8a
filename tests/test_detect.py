"""The detect library function: what ``yolov6-detect`` writes, callable from Python with the same results."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.cli.detect import main
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.detect import Progress, detect
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import make_image
from yolov6_sdk.weights import save_checkpoint

CONF = 0.4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = fuse(randomize_model(build_model("yolov6n", 12).eval(), seed=0))
    return save_checkpoint(tmp_path_factory.mktemp("detect") / "model.pt", model, imgsz=160)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two images, one more in a subfolder under a name already used, a video and a corrupt file."""
    folder = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(3)
    (folder / "sub").mkdir()
    for name in ("a.jpg", "b.png", "sub/a.jpg"):
        cv2.imwrite(str(folder / name), make_image(rng, (64, 160), 12)[0])
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (96, 64))
    for _ in range(3):
        writer.write(make_image(rng, (96, 96), 12)[0][:64])
    writer.release()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 no jpeg at all")
    return folder


def _without_timings(payload: dict) -> dict:
    """The JSON report less the per-image timings (they differ from run to run)."""
    return {**payload, "results": [{k: v for k, v in r.items() if k != "speed"} for r in payload["results"]]}


def _frames(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    return frames


def test_library_writes_what_the_cli_writes_for_a_mixed_folder_with_a_corrupt_file(
    checkpoint: Path, mixed: Path, tmp_path: Path
) -> None:
    cli_out, lib_out = tmp_path / "cli", tmp_path / "lib"
    args = [str(mixed), "--model", str(checkpoint), "--device", "cpu", "--conf", str(CONF), "--max-det", "20"]
    assert main([*args, "--save-dir", str(cli_out), "--save-json", str(tmp_path / "cli.json")]) == 1
    seen: list[Progress] = []
    report = detect(
        checkpoint, mixed, save_dir=lib_out, save_json=tmp_path / "lib.json", progress=seen.append,
        device="cpu", conf=CONF, max_det=20,
    )  # fmt: skip
    cli_json, lib_json = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("cli", "lib"))
    assert _without_timings(cli_json) == _without_timings(lib_json) == _without_timings(report.to_dict())
    assert [e["path"] for e in lib_json["errors"]] == [str(mixed / "broken.jpg")]
    assert (report.images, report.videos, report.frames) == (3, 1, 3)
    assert [r.get("frame") for r in report.records] == [0, 1, 2, None, None, None]
    names = sorted(p.name for p in cli_out.iterdir())
    assert names == sorted(p.name for p in lib_out.iterdir()) == ["a.jpg", "a_1.jpg", "b.png", "clip.mp4"]
    assert sorted(report.saved) == sorted(lib_out / name for name in names)
    for name in ("a.jpg", "a_1.jpg", "b.png"):
        assert (cli_out / name).read_bytes() == (lib_out / name).read_bytes()
    cli_frames, lib_frames = _frames(cli_out / "clip.mp4"), _frames(lib_out / "clip.mp4")
    assert len(cli_frames) == len(lib_frames) == 3
    assert all(np.array_equal(a, b) for a, b in zip(cli_frames, lib_frames, strict=True))
    assert (seen[-1].done, seen[-1].total) == (5, 5) and "clip.avi frame 3" in [p.current for p in seen]


def test_an_open_detector_is_used_as_it_is_and_left_open(checkpoint: Path, mixed: Path) -> None:
    with Detector(checkpoint, device="cpu", conf=CONF) as detector:
        report = detect(detector, [mixed / "a.jpg", mixed / "missing.jpg"])
        assert detector.backend.model is not None  # still open
        with pytest.raises(ConfigError, match="open Detector"):
            detect(detector, mixed, conf=0.5)
    assert report.images == 1 and not report.saved
    assert [path for path, _ in report.failures] == [str(mixed / "missing.jpg")]
    assert report.records[0]["path"] == str(mixed / "a.jpg")


def test_detector_errors_reach_the_caller_and_the_cli_prints_them_as_they_are(
    checkpoint: Path, mixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="conf must be a number in 0..1") as caught:
        detect(checkpoint, mixed, device="cpu", conf=1.5)
    assert main([str(mixed), "--model", str(checkpoint), "--device", "cpu", "--conf", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == f"yolov6-detect: error: {caught.value}"
