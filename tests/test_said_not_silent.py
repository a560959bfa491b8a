"""What used to pass silently with exit 0 is now said: a size not timed or trained at, options that do nothing, a
folder's videos left out, a finished run resumed, more detections asked than a graph holds; and the build's
validation reads the artifact it published."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov6_sdk.cli import bench as bench_cli
from yolov6_sdk.cli import build as build_cli
from yolov6_sdk.cli import train as train_cli
from yolov6_sdk.evaluate import load_split
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.export.options import BuildOptions
from yolov6_sdk.export.plan import plan_build
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import generate_dataset

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "weights" / "yolov6n-shapes.pt"


def test_bench_says_an_artifact_runs_at_its_own_size(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(DEMO), "--imgsz", "320", "--batch", "1", "--iters", "1", "--warmup", "1", "--device", "cpu"]
    assert bench_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "artifact files run at their own input size" in captured.err
    assert "yolov6n-shapes.pt: timed at 160x160, its input size" in captured.out


def test_build_plan_notes_a_size_other_than_the_trained_one_and_an_unused_calib(tmp_path: Path) -> None:
    plan = plan_build(BuildOptions(weights=DEMO, imgsz=(320, 320), precision="fp32", calib=ROOT / "calib",
                                   output=tmp_path))  # fmt: skip
    notes = build_cli._plan_notes(plan)
    assert any("trained at 160x160; at 320x320 they usually score lower" in note for note in notes)
    assert any("is not used: a fp32 build needs no calibration" in note for note in notes)
    lines = build_cli._plan_lines(plan)
    assert "batch any (dynamic batch axis)" in lines[1]
    assert build_cli._plan_notes(plan_build(BuildOptions(weights=DEMO, output=tmp_path))) == []


def test_a_folder_call_names_the_videos_it_leaves_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((64, 64, 3), 90, dtype=np.uint8))
    (tmp_path / "clip.mp4").write_bytes(b"a video")
    with Detector(DEMO, device="cpu") as detector, caplog.at_level(logging.WARNING):
        assert len(detector(tmp_path)) == 1
    assert "holds 1 video(s) (clip.mp4) that Detector(...) does not read" in caplog.text


def test_max_det_beyond_an_end_to_end_graph_and_agnostic_nms_there_are_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = fuse(build_model("yolov6n", num_classes=3).eval())
    options = ExportOptions(imgsz=(64, 64), nms="ort", max_det=100, simplify=False)
    path = export_onnx(model, tmp_path / "e2e.onnx", options)
    with caplog.at_level(logging.WARNING):
        Detector(path, device="cpu", max_det=500, agnostic=True).close()
    assert "keeps at most 100 detections per image inside the graph; max_det=500" in caplog.text
    assert "agnostic=True is ignored" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Detector(path, device="cpu", max_det=100).close()
    assert "max_det" not in caplog.text


def test_an_empty_splits_label_cache_reads_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = generate_dataset(tmp_path, num_train=0, num_val=1, imgsz=64)
    assert load_split(root, "train").images == []
    with caplog.at_level(logging.WARNING):
        again = load_split(root, "train")
    assert again.images == [] and again.from_cache and "unreadable" not in caplog.text


def test_resuming_a_finished_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = generate_dataset(tmp_path / "data", num_train=2, num_val=1, imgsz=64)
    run = tmp_path / "run"
    argv = ["--model", "yolov6n", "--data", str(data), "--epochs", "1", "--batch", "2", "--imgsz", "64",
            "--workers", "0", "--device", "cpu", "-o", str(run)]  # fmt: skip
    assert train_cli.main(argv) == 0
    capsys.readouterr()
    assert train_cli.main(["--resume", str(run / "last.pt")]) == 0
    out = capsys.readouterr().out
    assert "already finished its 1 epochs; nothing to train" in out and "--epochs N (N > 1)" in out


def test_a_qat_checkpoint_trains_at_the_teachers_size() -> None:
    from argparse import Namespace

    args = train_cli._parser().parse_args(["--qat", "--teacher", str(DEMO), "--data", "d"])
    config = train_cli._config(args)
    assert isinstance(args, Namespace) and config.imgsz == 160 and config.model == "yolov6n"
    assert train_cli._config(train_cli._parser().parse_args(["--data", "d"])).imgsz == 640


def test_an_fp32_build_with_val_scores_the_artifact_it_published(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", num_train=0, num_val=1, imgsz=(128, 160))
    done = subprocess.run(
        [sys.executable, "-m", "yolov6_sdk", "build", "--weights", str(DEMO), "--precision", "fp32", "--val",
         str(data), "-o", str(tmp_path / "out"), "--name", "m"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "mAP50-95: fp32 (onnx) " in done.stdout and "Traceback" not in done.stderr
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"m.json", "m.onnx"} <= names and not [name for name in names if name.startswith(".")], names
