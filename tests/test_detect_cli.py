"""``yolov6-detect``: good inputs are saved, bad ones reported, and the exit status says which happened."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.cli.detect import main
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.training.datagen import make_image
from yolov6_sdk.weights import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fused checkpoint (fused so that loading it needs no reparameterisation)."""
    torch.manual_seed(0)
    model = fuse(randomize_model(build_model("yolov6n", 12).eval(), seed=0))
    return save_checkpoint(tmp_path_factory.mktemp("cli") / "model.pt", model, imgsz=160)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    image = make_image(np.random.default_rng(1), (80, 200), 12)[0]
    cv2.imwrite(str(folder / "good.jpg"), image)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    return folder


def test_folder_with_a_corrupt_image_saves_the_good_one_writes_json_and_exits_1(
    checkpoint: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "out", tmp_path / "detections.json"
    args = [str(inputs), "--model", str(checkpoint), "--device", "cpu", "--conf", "0.5", "--max-det", "5"]
    code = main([*args, "--save-dir", str(out), "--save-json", str(report)])
    assert code == 1
    saved = cv2.imread(str(out / "good.jpg"))
    assert saved is not None and saved.shape == cv2.imread(str(inputs / "good.jpg")).shape
    assert not (out / "corrupt.jpg").exists()
    payload = json.loads(report.read_text())
    assert [r["path"] for r in payload["results"]] == [str(inputs / "good.jpg")]
    assert len(payload["results"][0]["detections"]) <= 5
    assert [e["path"] for e in payload["errors"]] == [str(inputs / "corrupt.jpg")]
    stderr = capsys.readouterr().err
    failure_lines = [line for line in stderr.splitlines() if "corrupt.jpg" in line]
    assert len(failure_lines) == 1 and "cannot decode" in failure_lines[0]


def test_videos_are_saved_annotated_frame_by_frame(checkpoint: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (96, 64))
    for i in range(3):
        writer.write(np.full((64, 96, 3), 60 * i, dtype=np.uint8))
    writer.release()
    out, report = tmp_path / "out", tmp_path / "d.json"
    args = [str(video), "--model", str(checkpoint), "--device", "cpu", "--conf", "0.9"]
    code = main([*args, "--save-dir", str(out), "--save-json", str(report)])
    assert code == 0
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()
    assert [r["frame"] for r in json.loads(report.read_text())["results"]] == [0, 1, 2]
    assert [p.name for p in out.iterdir()] == ["clip.mp4"]  # no temporary file left


def test_exit_status_is_1_when_every_input_fails_and_nothing_is_saved(
    checkpoint: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (inputs / "good.jpg").unlink()
    (inputs / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    args = [str(inputs), str(tmp_path / "missing.jpg"), "--model", str(checkpoint), "--device", "cpu"]
    code = main([*args, "--save-dir", str(out)])
    assert code == 1
    assert not out.exists() or not any(out.iterdir())
    stderr = capsys.readouterr().err
    assert "3 inputs failed" in stderr and "missing.jpg" in stderr and "empty.png" in stderr


@pytest.mark.parametrize(
    "extra",
    [["--conf", "1.5"], ["--imgsz", "100"], ["--max-det", "0"], ["--model", "nowhere.onnx"], ["--device", "gpu"]],
)
def test_usage_errors_exit_2(checkpoint: Path, inputs: Path, extra: list[str]) -> None:
    args = [str(inputs), "--model", str(checkpoint), *extra]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse reports its own errors this way
        code = exc.code
    assert code == 2
