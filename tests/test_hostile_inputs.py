"""Hostile and careless input through the public API: class names from a model file that try to leave the folder
asked for or break a report, sources that never end or block, and writers aimed at places they cannot write.
Each case gives one SDK error (or a safe result), never a raw exception, a crash, a memory blow-up or debris.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from yolov6_sdk.errors import ConfigError, ImageError, OutputError
from yolov6_sdk.export.build import build
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.runtime.safe_names import MAX_DISPLAY_CHARS

IMGSZ = 64
TEN_MB_NAME = "n" * 10_000_000
HOSTILE_NAMES = ["../../../X", "/tmp/absolute", "..", ".", "a\x00b", "a/b\\c", ".hidden", "CON", "", TEN_MB_NAME]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fp32 ONNX artifact (untrained yolov6n, 64 px, 80 classes) with its sidecar."""
    out = tmp_path_factory.mktemp("model")
    options = {"random_weights": True, "model": "yolov6n", "imgsz": IMGSZ, "backend": "onnxruntime"}
    return build(**options, output=out, name="tiny").artifact


@pytest.fixture(scope="module")
def hostile_model(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model`` whose ONNX metadata names its 80 classes with :data:`HOSTILE_NAMES` (cycled; instead of the
    10 MB one, which the metadata reader refuses as too long, the longest it takes: 1000 characters, last),
    without a sidecar."""
    proto = onnx.load(str(model))
    entry = next(p for p in proto.metadata_props if p.key == "names")
    short = HOSTILE_NAMES[:-1]
    entry.value = json.dumps([short[i % len(short)] for i in range(79)] + ["n" * 1000])
    path = tmp_path_factory.mktemp("hostile") / "hostile.onnx"
    onnx.save(proto, str(path))
    return path


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _results(names: list[str], path: str | None = "street.jpg") -> Results:
    image = np.full((48, 64, 3), 90, np.uint8)
    boxes = [[4 + i % 8, 4, 30 + i % 8, 30] for i in range(len(names))]
    return Results(boxes, [0.5] * len(names), list(range(len(names))), names, (48, 64), path=path, orig_img=image)


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in: a chmod 555 one, or (as root, whom modes do not stop) /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    probe = Path("/sys") / ".yolov6-probe"
    if not probe.parent.is_dir():
        pytest.skip("no folder here refuses writes to this process")
    try:
        probe.touch()
    except OSError:
        return probe.parent
    probe.unlink()
    pytest.skip("no folder here refuses writes to this process")


# ------------------------------------------------------------------------------------- class names


def test_crops_of_hostile_class_names_stay_inside_the_folder_asked_for(
    hostile_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    detector = Detector(hostile_model, device="cpu", conf=0.005)
    result = detector(np.full((IMGSZ, IMGSZ, 3), 100, np.uint8))[0]
    assert len(result) and {result.name(c) for c in result.class_ids} & set(HOSTILE_NAMES[:5])
    target = (tmp_path / "a" / "b" / "c").resolve()
    written = result.save_crop("a/b/c")
    assert len(written) == len(result) and all(p.is_file() for p in written)
    files = [p.resolve() for p in tmp_path.rglob("*") if not p.is_dir()]
    assert sorted(files) == sorted(p.resolve() for p in written) and all(target in p.parents for p in files)
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and not list(tmp_path.rglob(".*"))
    folders = {p.parent.name for p in written}
    assert all(name and not name.startswith(".") and "\x00" not in name and len(name) <= 64 for name in folders)


def test_every_hostile_name_gives_a_safe_crop_folder_and_a_bounded_label_quickly(tmp_path: Path) -> None:
    result = _results(HOSTILE_NAMES)
    started = time.perf_counter()
    crops = result.save_crop(tmp_path / "crops")
    plotted = result.plot()
    text = result.to_csv()
    summary = repr(result)
    assert time.perf_counter() - started < 5.0  # drawing a 10 MB name took half a minute
    assert len(crops) == len(HOSTILE_NAMES) and len(set(crops)) == len(crops)
    assert all(p.parent.parent == tmp_path / "crops" and p.is_file() for p in crops)
    assert [p.parent.name for p in crops][:3] == ["_.._.._X", "_tmp_absolute", "2"]
    assert plotted.shape == (48, 64, 3) and len(summary) < 2000
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == len(HOSTILE_NAMES) + 1 and all(len(row[3]) <= 256 for row in rows[1:])


@pytest.mark.parametrize("name", ["line\rbreak", "line\nbreak", "tab\tand\x00nul", "sep\u2028arator"])
def test_control_characters_in_names_and_sources_give_csv_that_reads_back_row_for_row(name: str) -> None:
    result = _results([name, "plain"], path=f"cam{name}.jpg")
    rows = list(csv.reader(io.StringIO(result.to_csv())))
    assert len(rows) == 3 and all(len(row) == 9 for row in rows)
    assert rows[1][3] == name.encode("unicode_escape").decode() == repr(name)[1:-1]
    assert rows[1][0] == f"cam{repr(name)[1:-1]}.jpg" and rows[2][3] == "plain"
    assert result.to_dict()["detections"][0]["name"] == name  # JSON keeps the exact name, escaped by json


def test_a_long_name_is_cut_with_an_ellipsis_for_display() -> None:
    label = repr(_results(["x" * 500])).split(": ", 1)[1]
    assert f"1 {'x' * (MAX_DISPLAY_CHARS - 1)}\u2026" in label


def test_a_crop_suffix_that_is_not_a_suffix_is_refused(tmp_path: Path) -> None:
    for suffix in ("/../../x.jpg", "jpg", "./x", ".a/b"):
        with pytest.raises(ConfigError, match="suffix must be a file suffix"):
            _results(["a"]).save_crop(tmp_path, suffix=suffix)
    assert _tree(tmp_path) == []


# ------------------------------------------------------------------------------------------ sources


def _special_sources(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    return {"device": Path("/dev/zero"), "fifo": fifo, "link to a device": link}


@pytest.mark.parametrize("kind", ["device", "fifo", "link to a device"])
def test_devices_pipes_and_links_to_them_are_refused_before_reading(kind: str, model: Path, tmp_path: Path) -> None:
    source = _special_sources(tmp_path)[kind]
    detector = Detector(model, device="cpu")
    with pytest.raises(ImageError, match=r"is a (character device|named pipe).*not a regular file"):
        detector(source)
    skipped = detector([source, np.zeros((32, 32, 3), np.uint8)], errors="skip")
    assert not skipped[0].ok and "not a regular file" in skipped[0].error and skipped[1].ok


def test_a_video_source_that_is_a_pipe_or_a_link_to_a_device_is_refused(model: Path, tmp_path: Path) -> None:
    fifo, link = tmp_path / "pipe.mp4", tmp_path / "zero.mp4"
    os.mkfifo(fifo)
    link.symlink_to("/dev/zero")
    detector = Detector(model, device="cpu")
    for source in (fifo, link):
        with pytest.raises(ImageError, match=r"video file .* is a (named pipe|character device)"):
            list(detector.stream(source))


MEMORY_CHILD = """
import json, os, resource, sys
import numpy as np
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.errors import ImageError
detector = Detector(sys.argv[1], device="cpu")
used = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (used + (512 << 20), resource.RLIM_INFINITY))
results = detector(sys.argv[2:], errors="skip")
print(json.dumps(["ok" if r.ok else r.error for r in results]))
"""


def test_endless_and_oversized_sources_cost_no_memory_under_an_address_space_limit(model: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as stream:  # a sparse 4 GB file: nothing is stored, a read would need 4 GB
        stream.write(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
        stream.truncate(4 << 30)
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    env = {**os.environ, "YOLOV6_MAX_PIXELS": "1000000"}
    done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(model), "/dev/zero", str(link), str(big)],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    zero, linked, oversized = json.loads(done.stdout.strip().splitlines()[-1])
    assert "character device" in zero and "link to '/dev/zero'" in linked
    assert "bytes, more than the" in oversized and "YOLOV6_MAX_PIXELS" in oversized


CAMERA_CHILD = """
import sys
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.errors import ImageError
detector = Detector(sys.argv[1], device="cpu")
for index in (-1, -5, 100, 10**9):
    try:
        list(detector.stream(index))
    except ImageError as exc:
        print(index, exc)
"""


def test_bad_camera_indices_are_refused_before_opencv_sees_them(model: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CAMERA_CHILD, str(model)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]  # -1 used to end the process with SIGSEGV
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 4 and all("camera index" in line and "out of range" in line for line in lines)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="camera devices are checked as /dev/video<N>")
def test_a_missing_camera_is_named_with_the_cameras_found(model: Path) -> None:
    index = next(i for i in range(100) if not Path(f"/dev/video{i}").exists())
    with pytest.raises(ImageError, match=rf"camera {index} does not exist \(/dev/video{index}"):
        list(Detector(model, device="cpu").stream(index))


# ------------------------------------------------------------------------------------------ writers


def _hidden(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob(".*"))


def test_writers_aimed_at_a_file_or_a_folder_raise_output_errors_naming_the_path_given(tmp_path: Path) -> None:
    result = _results(["person"])
    afile = tmp_path / "afile"
    afile.write_text("in the way")
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [
        (lambda: result.save_crop(afile), afile, "is a file, not a folder"),
        (lambda: result.save_crop(afile / "sub"), afile / "sub", "is a file, not a folder"),
        (lambda: result.save_txt(afile / "x.txt"), afile / "x.txt", "is a file, not a folder"),
        (lambda: result.save(afile / "x.jpg"), afile / "x.jpg", "is a file, not a folder"),
        (lambda: result.save_txt(folder), folder, "is a folder"),
        (lambda: result.save(folder), folder, "is a folder"),
        (lambda: result.save(tmp_path / "a\x00b.jpg"), tmp_path / "a\x00b.jpg", "cannot be written"),
    ]
    for write, named, reason in cases:
        with pytest.raises(OutputError, match=reason) as caught:
            write()
        assert repr(str(named)) in str(caught.value) and ".tmp." not in str(caught.value)
    with pytest.raises(OutputError):
        result.save_txt(folder / "..")
    assert afile.read_text() == "in the way" and _tree(folder) == [] and _hidden(tmp_path) == []


def test_writers_into_a_read_only_folder_name_it_and_leave_no_temporary(tmp_path: Path) -> None:
    folder = _read_only_folder(tmp_path)
    result = _results(["person"])
    for write, named in (
        (lambda: result.save(folder / "x.jpg"), folder / "x.jpg"),
        (lambda: result.save_txt(folder / "x.txt"), folder / "x.txt"),
        (lambda: result.save_crop(folder / "crops"), folder / "crops"),
    ):
        with pytest.raises(OutputError, match="cannot be written") as caught:
            write()
        assert str(named) in str(caught.value) and ".tmp." not in str(caught.value)
    assert not any(".tmp." in p.name for p in folder.iterdir())


def test_output_errors_are_os_errors_too_for_callers_that_catch_those(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(OSError):
        _results(["a"]).save_txt(tmp_path / "f" / "x.txt")


def test_writers_still_write_in_a_fresh_nested_folder(tmp_path: Path) -> None:
    result = _results(["person", "car"])
    txt = result.save_txt(tmp_path / "new" / "deeper" / "x.txt")
    crops = result.save_crop(tmp_path / "crops")
    assert txt.read_text().count("\n") == 2 and [p.parent.name for p in crops] == ["person", "car"]
    assert _hidden(tmp_path) == []
