"""yolov6-detect as users run it: labels, crops, agnostic NMS, line width, frame stride, cameras and URLs, a
line per image, numbered run folders, and SIGTERM mid-video leaving the report and nothing hidden."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov6_sdk.cli import detect as detect_cli
from yolov6_sdk.runtime.detect import SaveOptions, _stream_name, detect
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import make_image

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "weights" / "yolov6n-shapes.pt")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(3)
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.jpg"), make_image(rng, (160, 160), 8)[0])
    return folder


def _video(path: Path, frames: int) -> Path:
    rng = np.random.default_rng(5)
    picture = cv2.resize(make_image(rng, (160, 160), 8)[0], (96, 96))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 96))
    for _ in range(frames):
        writer.write(picture)
    writer.release()
    return path


def test_labels_crops_and_a_line_per_image(pictures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = [str(pictures), "--model", DEMO, "--device", "cpu", "-o", str(out), "--save-txt", "--save-conf",
            "--save-crop", "--line-width", "2"]  # fmt: skip
    assert detect_cli.main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("image ")]
    assert [line.split(" ")[1] for line in lines] == ["1/3", "2/3", "3/3"] and "p0.jpg: 160x160, " in lines[0]
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels == ["p0.txt", "p1.txt", "p2.txt"]
    rows = [line.split() for line in (out / "labels" / "p0.txt").read_text().splitlines()]
    assert rows and all(len(row) == 6 for row in rows)  # class cx cy w h conf
    crops = list((out / "crops").rglob("*.jpg"))
    assert len(crops) == sum(len(p.read_text().splitlines()) for p in (out / "labels").iterdir())
    assert sorted(p.name for p in out.iterdir()) == ["crops", "labels", "p0.jpg", "p1.jpg", "p2.jpg"]


def test_runs_without_o_go_to_new_numbered_folders(pictures: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for _ in range(3):
        assert detect_cli.main([str(pictures / "p0.jpg"), "--model", DEMO, "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "detect").iterdir()) == ["exp", "exp2", "exp3"]
    assert (tmp_path / "runs" / "detect" / "exp3" / "p0.jpg").is_file()


def test_agnostic_nms_keeps_one_box_where_classes_overlap(pictures: Path) -> None:
    with (
        Detector(DEMO, device="cpu", conf=0.05) as aware,
        Detector(DEMO, device="cpu", conf=0.05, agnostic=True) as one,
    ):
        for path in sorted(pictures.iterdir()):
            kept, merged = aware(path)[0], one(path)[0]
            assert len(merged) <= len(kept)
            boxes = merged.boxes.xyxy
            for i in range(len(boxes)):  # no two agnostic boxes overlap above the NMS IoU
                for j in range(i + 1, len(boxes)):
                    a, b = boxes[i], boxes[j]
                    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
                    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
                    assert inter / union <= 0.45 + 1e-6


def test_vid_stride_runs_every_nth_frame(tmp_path: Path) -> None:
    video = _video(tmp_path / "v.mp4", 10)
    report = detect(DEMO, video, save_dir=tmp_path / "out", save=SaveOptions(vid_stride=3), device="cpu")
    assert [record["frame"] for record in report.records] == [0, 3, 6, 9]
    assert (tmp_path / "out" / "v.mp4").is_file()


def test_a_camera_index_is_a_camera_and_urls_get_a_file_name(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert detect_cli.main(["7", "--model", DEMO, "--device", "cpu", "--no-save"]) == 1  # no camera 7 here
    err = capsys.readouterr().err
    assert "camera 7" in err and "source '7' does not exist" not in err  # a camera, not a missing file
    assert _stream_name(0) == "camera0" and _stream_name("rtsp://cam.local/live/front.sdp") == "front"
    assert _stream_name("rtsp://10.0.0.2:554") == "stream"


def test_sigterm_during_a_video_writes_the_report_and_leaves_nothing_hidden(tmp_path: Path) -> None:
    video = _video(tmp_path / "long.mp4", 400)
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-m", "yolov6_sdk", "detect", str(video), "--model", DEMO, "--device", "cpu", "-o",
         str(out), "--save-json", str(out / "r.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob(".long.mp4.tmp.*")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)  # the video is being written
    time.sleep(0.5)
    child.send_signal(signal.SIGTERM)
    err = child.communicate(timeout=60)[1]
    assert child.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    report = json.loads((out / "r.json").read_text())
    assert report["complete"] is False and report["results"]
    assert sorted(p.name for p in out.iterdir()) == ["r.json"]  # no hidden temporary, no half-written video
