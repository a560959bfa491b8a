"""Bad files, frames and folders through the public API and the CLIs: one clear error or a reported skip, never
a crash, a memory blow-up or debris; builds killed at any point leave the old artifact with its sidecar or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from yolov6_sdk.artifact import images
from yolov6_sdk.artifact.images import as_bgr_uint8, read_image
from yolov6_sdk.artifact.sidecar import check_artifact_hash, read_sidecar
from yolov6_sdk.cli.build import main as build_main
from yolov6_sdk.cli.detect import main as detect_main
from yolov6_sdk.errors import ArtifactError, BuildError, ConfigError, ImageError
from yolov6_sdk.export import calibration
from yolov6_sdk.export.build import build
from yolov6_sdk.fileio import atomic_path, remove_stale_temporaries, temporary_sibling
from yolov6_sdk.runtime import detect as detect_module
from yolov6_sdk.runtime.detect import detect
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.source import video_frames

IMGSZ = 64
HUGE = 60000  # a side that no pixel limit lets through: 3.6 GP


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fp32 ONNX artifact (untrained yolov6n, 64 px) with its sidecar."""
    out = tmp_path_factory.mktemp("model")
    options = {"random_weights": True, "model": "yolov6n", "imgsz": IMGSZ, "backend": "onnxruntime"}
    return build(**options, output=out, name="tiny").artifact


def _png(path: Path, shape: tuple[int, ...] = (40, 60, 3), seed: int = 0) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))
    return path


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid 8x8 PNG whose header (IHDR, CRC fixed) claims ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A valid 16x16 JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def _video(path: Path, frames: int, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), (i * 7) % 256, np.uint8)
        cv2.putText(frame, str(i), (2, size[1] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    return path


def _damaged_video(path: Path, frames: int = 120) -> Path:
    """An mp4 whose middle 3000 bytes are noise: a block of frames in the middle cannot be decoded."""
    _video(path, frames)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp.*"))


# ------------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize("writer", [_png_claiming, _jpeg_claiming])
def test_an_image_claiming_a_huge_size_is_refused_from_its_header_with_the_limit_to_raise(
    writer, tmp_path: Path
) -> None:
    side = HUGE if writer is _png_claiming else 65000
    path = writer(tmp_path / f"huge{'.png' if writer is _png_claiming else '.jpg'}", side, side)
    assert path.stat().st_size < 1000
    with pytest.raises(ImageError, match=rf"{path.name}.*{side} x {side} pixels.*YOLOV6_MAX_PIXELS"):
        read_image(path)


def test_the_pixel_limit_is_raised_by_the_environment_and_bad_values_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _png(tmp_path / "a.png", (40, 60, 3))
    monkeypatch.setattr(images, "MAX_PIXELS", 2000)
    with pytest.raises(ImageError, match="more than the limit of 0.0 MP"):
        read_image(path)
    monkeypatch.setenv("YOLOV6_MAX_PIXELS", "2400")
    assert read_image(path).shape == (40, 60, 3)
    monkeypatch.setenv("YOLOV6_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="YOLOV6_MAX_PIXELS='lots' must be a positive number"):
        read_image(path)


def test_a_png_chunk_claiming_more_bytes_than_the_file_holds_is_refused_before_decoding(tmp_path: Path) -> None:
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    idat = data.index(b"IDAT") - 4
    data[idat : idat + 4] = struct.pack(">I", 0xFFFF7FFF)  # the decoder would allocate 4 GB for this chunk
    path = tmp_path / "forged.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"forged\.png.*header .* is corrupt"):
        read_image(path)


def test_the_decoders_own_refusal_becomes_an_image_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLOV6_MAX_PIXELS", str(HUGE * HUGE))
    path = _png_claiming(tmp_path / "huge.png", HUGE, HUGE)
    with pytest.raises(ImageError, match=r"huge\.png.*OpenCV refused it"):
        read_image(path)


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xda garbage", b"BM" + b"\0" * 10, b"RIFF\0\0\0\0WEBPVP8 ", b"GIF89a...."],
    ids=["png-signature-only", "jpeg-scan-before-frame", "bmp-short", "webp-short", "gif"],
)
def test_truncated_or_unknown_headers_are_one_image_error_naming_the_file(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=r"cannot decode image file '.*bad\.png'.*re-export or convert"):
        read_image(path)


@pytest.mark.parametrize("shape", [(3, 4, 4), (4, 4, 4), (1, 40, 3), (3, 3, 3)])
def test_arrays_that_also_read_as_channels_first_are_refused_as_ambiguous(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageError, match=r"frame: shape .* is ambiguous.*transpose\(1, 2, 0\)"):
        as_bgr_uint8(np.zeros(shape, np.uint8), "frame")


def test_unambiguous_small_arrays_still_convert() -> None:
    assert as_bgr_uint8(np.zeros((5, 4, 4), np.uint8)).shape == (5, 4, 3)
    assert as_bgr_uint8(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
    assert as_bgr_uint8(np.zeros((2, 2, 3), np.uint8)).shape == (2, 2, 3)


def test_a_list_with_bad_items_returns_the_good_results_and_names_the_failures(model: Path, tmp_path: Path) -> None:
    good = [_png(tmp_path / f"good{i}.png", seed=i) for i in range(2)]
    huge = _png_claiming(tmp_path / "huge.png", HUGE, HUGE)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a jpeg")
    report = detect(model, [good[0], huge, str(tmp_path / "missing.png"), corrupt, good[1]], device="cpu")
    assert [r["path"] for r in report.records] == [str(p) for p in good] and report.images == 2
    failed = dict(report.failures)
    assert sorted(failed) == sorted(str(p) for p in (huge, tmp_path / "missing.png", corrupt))
    assert "YOLOV6_MAX_PIXELS" in failed[str(huge)] and "does not exist" in failed[str(tmp_path / "missing.png")]


def test_images_are_batched_by_pixels_not_only_by_count(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        _png(tmp_path / f"{i}.png", (100, 100, 3), seed=i)
    monkeypatch.setattr(detect_module, "BATCH_PIXELS", 25_000)  # two 100x100 images per batch
    with Detector(model, device="cpu", batch=16) as detector:
        sizes: list[int] = []
        real = detector.predict_batch
        detector.predict_batch = lambda batch, paths=None: sizes.append(len(batch)) or real(batch, paths)
        report = detect(detector, tmp_path)
    assert sizes == [2, 2, 1] and report.images == 5


def test_an_image_the_model_refuses_fails_alone_and_its_batch_goes_on(model: Path, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _png(tmp_path / f"{name}.png")
    with Detector(model, device="cpu") as detector:
        real = detector.predict_batch

        def refuse_b(batch: list, paths: list) -> list:
            if any(p.endswith("b.png") for p in paths):
                raise ImageError("b.png: refused by the model")
            return real(batch, paths)

        detector.predict_batch = refuse_b
        report = detect(detector, tmp_path)
    assert [Path(r["path"]).name for r in report.records] == ["a.png", "c.png"]
    assert report.failures == [(str(tmp_path / "b.png"), "b.png: refused by the model")]


def test_detect_cli_skips_bad_files_prints_a_summary_and_exits_1_without_a_traceback(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "a.png")
    _png_claiming(folder / "b-huge.png", HUGE, HUGE)
    (folder / "c-empty.jpg").write_bytes(b"")
    _png(folder / "d.png", seed=1)
    out, report = tmp_path / "out", tmp_path / "report.json"
    code = detect_main(
        [str(folder), "--model", str(model), "--device", "cpu", "-o", str(out), "--save-json", str(report)]
    )
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "2 inputs failed" in captured.err and "b-huge.png" in captured.err and "c-empty.jpg" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "d.png"]
    payload = json.loads(report.read_text())
    assert payload["complete"] is True and len(payload["results"]) == 2 and len(payload["errors"]) == 2


def test_build_cli_skips_a_bad_calibration_file_with_a_warning_and_leaves_no_side_files(
    model: Path, tmp_path: Path
) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(2):
        _png(calib / f"{i}.png", (48, 64, 3), seed=i)
    _png_claiming(calib / "huge.png", HUGE, HUGE)
    out = tmp_path / "out"
    args = ["--onnx", str(model), "--precision", "int8", "--calib", str(calib), "--backend", "onnxruntime"]
    done = subprocess.run(
        [sys.executable, "-m", "yolov6_sdk.cli.build", *args, "-o", str(out), "--name", "q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipping" in done.stderr and "huge.png" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["q.calib.json", "q.json", "q.onnx"]
    assert read_sidecar(out / "q.onnx").calibration_images == 2


def test_calibration_letterboxes_image_by_image(tmp_path: Path) -> None:
    for i, shape in enumerate([(30, 50, 3), (90, 40, 3), (64, 64, 3)]):
        _png(tmp_path / f"{i}.png", shape, seed=i)
    calib = calibration.load_calibration_set(tmp_path, 64, size=3, batch=2)
    batches = list(calib.batches())
    assert [b.shape for b in batches] == [(2, 3, 64, 64), (1, 3, 64, 64)] and batches[0].dtype == np.float32


# ------------------------------------------------------------------------------------------------ video


def test_a_damaged_block_is_skipped_and_counted_and_reading_goes_on(tmp_path: Path) -> None:
    frames = video_frames(_damaged_video(tmp_path / "damaged.mp4", 120))
    count = sum(1 for _ in frames)
    assert frames.skipped > 0 and count + frames.skipped == 120 and frames.index == 119
    assert count > 70  # frames after the damage came through
    assert f"skipped {frames.skipped} damaged frame(s)" in frames.summary() and not frames.ended_early


def test_a_video_that_ends_early_says_so(tmp_path: Path) -> None:
    path = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(60):
        writer.write(np.full((48, 64, 3), i * 4, np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    frames = video_frames(path)
    count = sum(1 for _ in frames)
    assert 0 < count < 60 and frames.ended_early
    assert f"ended after {count + frames.skipped} of the 60 frames it declares" in frames.summary()


def test_detect_reports_skipped_frames_in_the_api_and_the_cli(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = _damaged_video(tmp_path / "damaged.mp4", 120)
    report = detect(model, video, device="cpu")
    assert report.videos == 1 and report.skipped_frames > 0 and report.frames == 120 - report.skipped_frames
    assert report.warnings and "damaged frame" in report.warnings[0][1] and not report.failures
    assert report.to_dict()["skipped_frames"] == report.skipped_frames
    code = detect_main([str(video), "--model", str(model), "--device", "cpu", "--no-save"])
    captured = capsys.readouterr()
    assert code == 0 and f"{report.skipped_frames} damaged frames skipped" in captured.out


# ------------------------------------------------------------------------------------------------ outputs


def _blocked(tmp_path: Path) -> dict[str, Path]:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    return {"file in the way": blocker, "under a file": blocker / "sub", "unwritable": Path("/proc/yolov6-out")}


@pytest.mark.parametrize("case", ["file in the way", "under a file", "unwritable"])
def test_detect_refuses_an_unwritable_save_dir_or_json_before_any_work(
    case: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _blocked(tmp_path)[case]
    image = _png(tmp_path / "a.png")
    seen: list[object] = []
    with pytest.raises(ConfigError, match=rf"save_dir '{target}'.*(is a file|cannot be written)"):
        detect(model, image, save_dir=target, progress=seen.append)
    with pytest.raises(ConfigError, match=rf"save_json '{target / 'r.json'}'.*(is a file|cannot be written)"):
        detect(model, image, save_json=target / "r.json", progress=seen.append)
    assert seen == []
    code = detect_main([str(image), "--model", str(model), "--device", "cpu", "-o", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and str(target) in err and "Traceback" not in err


def test_a_save_json_that_is_a_folder_is_refused(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder; pass a file path"):
        detect(model, _png(tmp_path / "a.png"), save_json=tmp_path)


def test_detections_survive_a_json_file_that_cannot_be_written_at_the_end(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    images_dir = tmp_path / "in"
    images_dir.mkdir()
    for i in range(2):
        _png(images_dir / f"{i}.png", seed=i)
    wanted = tmp_path / "gone" / "report.json"

    def block_the_json_folder(progress: object) -> None:
        if not (tmp_path / "gone").is_file():
            (tmp_path / "gone").rmdir() if (tmp_path / "gone").is_dir() else None
            (tmp_path / "gone").write_text("now a file")

    report = detect(model, images_dir, save_json=wanted, progress=block_the_json_folder, device="cpu")
    assert report.json_path is not None and report.json_path.parent == tmp_path and report.json_path != wanted
    assert len(json.loads(report.json_path.read_text())["results"]) == 2


def test_an_interrupted_run_still_writes_what_it_detected(model: Path, tmp_path: Path) -> None:
    images_dir = tmp_path / "in"
    images_dir.mkdir()
    for i in range(3):
        _png(images_dir / f"{i}.png", seed=i)

    def interrupt_after_two(progress: detect_module.Progress) -> None:
        if progress.done == 2:
            raise KeyboardInterrupt

    with Detector(model, device="cpu", batch=1) as detector, pytest.raises(KeyboardInterrupt):
        detect(detector, images_dir, save_json=tmp_path / "r.json", progress=interrupt_after_two)
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["complete"] is False and len(payload["results"]) == 2


@pytest.mark.parametrize("case", ["file in the way", "unwritable"])
def test_build_refuses_an_unwritable_output_folder_before_any_work(
    case: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _blocked(tmp_path)[case]
    with pytest.raises(BuildError, match=rf"output folder '{target}'.*(is a file|cannot be written)"):
        build(onnx=model, backend="onnxruntime", output=target)
    code = build_main(["--onnx", str(model), "--backend", "onnxruntime", "-o", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and str(target) in err and "Traceback" not in err


def test_build_refuses_an_unwritable_triton_folder_before_building(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = build_main(["--onnx", str(model), "--backend", "onnxruntime", "-o", str(out), "--triton", "/proc/triton"])
    err = capsys.readouterr().err
    assert code == 2 and "Triton repository folder (--triton) '/proc/triton' cannot be written" in err
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------------------------ atomicity


def test_every_written_file_gets_the_usual_permissions(model: Path, tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        report = detect(model, _png(tmp_path / "a.png"), save_dir=tmp_path / "out", save_json=tmp_path / "r.json")
    finally:
        os.umask(umask)
    for path in [*report.saved, tmp_path / "r.json", model, model.with_suffix(".json")]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.onnx") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []


def test_only_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".m.onnx.tmp.{dead.pid}.0a0b.onnx"
    older_release = tmp_path / ".m.x1y2z3.onnx.tmp.onnx"
    mine = temporary_sibling(tmp_path / "m.onnx")
    parent = tmp_path / f".m.onnx.tmp.{os.getppid()}.0c0d.onnx"
    for path in (stale, older_release, mine, parent):
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, older_release])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, parent.name])


def test_a_mixed_up_pair_is_told_by_the_artifact_hash(model: Path, tmp_path: Path) -> None:
    car = read_sidecar(model)
    check_artifact_hash(car, model)
    other = tmp_path / "other.onnx"
    other.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="describes another file.*rebuild"):
        check_artifact_hash(car, other)


def test_a_foreign_onnx_whose_output_is_not_yolov6s_is_refused(tmp_path: Path) -> None:
    constant = helper.make_tensor("rows", TensorProto.FLOAT, [1, 10, 128], np.zeros(1280, np.float32))
    nodes = [
        helper.make_node("Constant", [], ["rows"], value=constant),
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Add", ["rows", "total"], ["outputs"]),
    ]
    graph = helper.make_graph(
        nodes, "foreign",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, IMGSZ, IMGSZ])],
        [helper.make_tensor_value_info("outputs", TensorProto.FLOAT, [1, 10, 128])],
    )  # fmt: skip
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ArtifactError, match=r"foreign\.onnx is not a YOLOv6 export: its output is \[B, 10, 128\]"):
        Detector(path, device="cpu")


# ------------------------------------------------------------------------------------------------ SIGKILL


SLOW_PUBLISH = """
import sys, time
import yolov6_sdk.artifact.sidecar as sidecar
real = sidecar.publish
def slow(tmp, path):
    time.sleep(120)
    return real(tmp, path)
sidecar.publish = slow
from yolov6_sdk.cli.build import main
sys.exit(main(sys.argv[1:]))
"""


def _build_args(source: Path, out: Path) -> list[str]:
    return ["--onnx", str(source), "--backend", "onnxruntime", "-o", str(out), "--name", "m", "--force"]


def _start(args: list[str], script: str | None = None) -> subprocess.Popen:
    command = ["-c", script] if script else ["-m", "yolov6_sdk.cli.build"]
    return subprocess.Popen([sys.executable, *command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


def _assert_old_pair_or_none(out: Path, old_sha: str, new_sha: str) -> str:
    """The artifact under its final name is absent, or present with a sidecar naming its exact bytes."""
    artifact = out / "m.onnx"
    if not artifact.exists():
        return "none"
    sha = _sha256(artifact)
    assert sha in (old_sha, new_sha)
    assert read_sidecar(artifact).artifact_sha256 == sha
    return "old" if sha == old_sha else "new"


def _source_variant(model: Path, path: Path, tag: str) -> Path:
    proto = onnx.load(str(model))
    proto.metadata_props.add(key="variant", value=tag)
    onnx.save(proto, str(path))
    return path


def test_a_build_killed_at_any_point_leaves_the_old_pair_or_none_and_the_next_build_cleans_up(
    model: Path, tmp_path: Path
) -> None:
    first, second = _source_variant(model, tmp_path / "a.onnx", "a"), _source_variant(model, tmp_path / "b.onnx", "b")
    out = tmp_path / "out"
    started = time.monotonic()
    assert subprocess.run([sys.executable, "-m", "yolov6_sdk.cli.build", *_build_args(first, out)]).returncode == 0
    whole = time.monotonic() - started
    old_sha, new_sha = _sha256(out / "m.onnx"), _sha256(second)
    # killed after the new sidecar is written and before the artifact is renamed into place
    process = _start(_build_args(second, out), SLOW_PUBLISH)
    deadline = time.monotonic() + 120
    while not (out / "m.json").is_file() or read_sidecar(out / "m.onnx").artifact_sha256 != new_sha:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    _kill(process)
    assert _assert_old_pair_or_none(out, old_sha, new_sha) == "none" and _temporaries(out)
    # killed at points spread over a whole build, wherever it happens to be
    for fraction in (0.3, 0.6, 0.8, 0.9, 0.95):
        process = _start(_build_args(second, out))
        time.sleep(fraction * whole)
        _kill(process)
        _assert_old_pair_or_none(out, old_sha, new_sha)
    done = subprocess.run([sys.executable, "-m", "yolov6_sdk.cli.build", *_build_args(second, out)])
    assert done.returncode == 0 and _assert_old_pair_or_none(out, old_sha, new_sha) == "new"
    assert _temporaries(out) == [] and sorted(p.name for p in out.iterdir()) == ["m.json", "m.onnx"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 3.0, 6.0, 9.0])
def test_a_checkpoint_build_killed_midway_keeps_the_old_pair_or_none(delay: float, tmp_path: Path) -> None:
    out = tmp_path / "out"
    common = ["--random-weights", "--model", "yolov6n", "--backend", "onnxruntime", "-o", str(out), "--name", "m"]
    assert subprocess.run([sys.executable, "-m", "yolov6_sdk.cli.build", *common, "--imgsz", "64"]).returncode == 0
    old_sha = _sha256(out / "m.onnx")
    process = _start([*common, "--imgsz", "96", "--force"])
    time.sleep(delay)
    _kill(process)
    artifact = out / "m.onnx"
    if artifact.exists():
        assert read_sidecar(artifact).artifact_sha256 == _sha256(artifact)
        assert _sha256(artifact) == old_sha or process.returncode == 0
    done = subprocess.run([sys.executable, "-m", "yolov6_sdk.cli.build", *common, "--imgsz", "96", "--force"])
    assert done.returncode == 0 and _temporaries(out) == []
    assert not list(out.glob("*-inferred.onnx"))
    assert read_sidecar(artifact).artifact_sha256 == _sha256(artifact)


# ------------------------------------------------------------------------------------------------ long stream


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.slow
def test_a_10000_frame_stream_keeps_memory_flat(model: Path, tmp_path: Path) -> None:
    video = _video(tmp_path / "long.mp4", 10_000, size=(96, 64))
    samples: list[tuple[int, float]] = []
    with Detector(model, device="cpu") as detector:
        started = time.perf_counter()
        for index, _ in enumerate(detector.stream(video)):
            if index % 500 == 0:
                samples.append((index, _rss_mb()))
        seconds = time.perf_counter() - started
    assert index == 9_999
    steady = samples[2:]  # after warm-up
    frames, rss = np.array([s[0] for s in steady], float), np.array([s[1] for s in steady])
    slope = float(np.polyfit(frames / 1000, rss, 1)[0])
    print(f"stream: {10_000 / seconds:.0f} frames/s, RSS slope {slope:+.2f} MB per 1000 frames")
    assert slope < 1.0
