"""Hostile and careless files through the public API and the CLIs: two builders of one name at once, ONNX sources
whose weights live elsewhere, BatchNorm statistics that fuse into NaN, a training run copied to another folder, and
crafted checkpoints. Each case gives one SDK error or a correct result, never a traceback or a mismatched pair.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from test_weights import _to_official, fake_official_package, prepared

from yolov6_sdk.artifact.external_data import external_tensors
from yolov6_sdk.artifact.sidecar import read_sidecar
from yolov6_sdk.cli.build import main as build_main
from yolov6_sdk.cli.detect import main as detect_main
from yolov6_sdk.errors import CheckpointError
from yolov6_sdk.export.build import build
from yolov6_sdk.models import build_model
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import generate_dataset
from yolov6_sdk.training.plots import read_results_csv
from yolov6_sdk.training.trainer import TrainConfig, Trainer
from yolov6_sdk.weights import load, save_checkpoint

IMGSZ = 64
DEPTH = 100_000

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fp32 ONNX artifact (untrained yolov6n, 64 px) with its sidecar."""
    out = tmp_path_factory.mktemp("model")
    options = {"random_weights": True, "model": "yolov6n", "imgsz": IMGSZ, "backend": "onnxruntime"}
    return build(**options, output=out, name="tiny").artifact


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_traceback(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------ concurrent builds


SLOW_PUBLISH = """
import sys, time
import yolov6_sdk.artifact.sidecar as sidecar
real = sidecar.publish
def slow(tmp, path):
    time.sleep(4)  # between writing the sidecar and renaming the artifact
    return real(tmp, path)
sidecar.publish = slow
from yolov6_sdk.cli.build import main
sys.exit(main(sys.argv[1:]))
"""


def _variant(model: Path, path: Path, tag: str) -> Path:
    proto = onnx.load(str(model))
    proto.metadata_props.add(key="variant", value=tag)
    onnx.save(proto, str(path))
    return path


def test_two_builders_of_one_name_take_turns_and_leave_a_matching_pair(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first, second = _variant(model, tmp_path / "a.onnx", "a"), _variant(model, tmp_path / "b.onnx", "b")
    args = ["--backend", "onnxruntime", "-o", str(out), "--name", "same", "--force"]
    slow = subprocess.Popen([sys.executable, "-c", SLOW_PUBLISH, "--onnx", str(first), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "same.json").is_file():  # the slow one holds the lock and is about to rename
        assert slow.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    fast = subprocess.run([sys.executable, "-m", "yolov6_sdk.cli.build", "--onnx", str(second), *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    slow_err = slow.communicate(timeout=300)[1]
    assert slow.returncode == 0 and fast.returncode == 0, slow_err + fast.stderr
    artifact = out / "same.onnx"
    assert read_sidecar(artifact).artifact_sha256 == _sha256(artifact)
    assert "waiting for another build" in fast.stderr and "Traceback" not in slow_err + fast.stderr
    assert {p.key: p.value for p in onnx.load(str(artifact)).metadata_props}["variant"] == "b"  # the later one
    assert sorted(p.name for p in out.iterdir()) == ["same.json", "same.onnx"]  # no lock file, no temporary
    assert Detector(artifact, device="cpu").names


# ---------------------------------------------------------------------------------------- external data


def _external(model: Path, folder: Path, location: str | None = None) -> Path:
    """``model`` saved with its weights in ``x.data`` beside it; ``location`` then rewrites where they point."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "x.onnx"
    onnx.save(onnx.load(str(model)), str(path), save_as_external_data=True, location="x.data", size_threshold=0)
    if location is not None:
        proto = onnx.load(str(path), load_external_data=False)
        for tensor in external_tensors(proto):
            next(e for e in tensor.external_data if e.key == "location").value = location
        onnx.save(proto, str(path))
    return path


def test_an_onnx_source_with_external_weights_is_published_self_contained(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _external(model, tmp_path / "src")
    out = tmp_path / "out"
    assert build_main(["--onnx", str(source), "--backend", "onnxruntime", "-o", str(out), "--name", "m"]) == 0
    _no_traceback(capsys)
    artifact = out / "m.onnx"
    assert not external_tensors(onnx.load(str(artifact), load_external_data=False))
    shutil.rmtree(tmp_path / "src")  # the artifact needs nothing of its source
    image = np.full((IMGSZ, IMGSZ, 3), 100, np.uint8)
    assert len(Detector(artifact, device="cpu", conf=0.005)(image)[0]) > 0
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "m.onnx"]


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "missing.data", "sub/../../x.data"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_external_data_outside_the_sources_folder_or_missing_is_refused_at_build(
    location: str, precision: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _external(model, tmp_path / "a" / "b", location)
    out = tmp_path / "out"
    code = build_main(["--onnx", str(source), "--precision", precision, "--backend", "onnxruntime", "-o", str(out),
                       "--name", "m"])  # fmt: skip
    err = _no_traceback(capsys)
    assert code == 2 and f"keeps its data in {location!r}" in err and "inside the model's folder" in err
    assert not out.exists() or list(out.iterdir()) == []


# ------------------------------------------------------------------------------------------ BatchNorm


def _checkpoint_with(path: Path, change: str) -> Path:
    model = build_model("yolov6n", num_classes=2)
    batchnorm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        if change == "negative variance":
            batchnorm.running_var.fill_(-1.0)
        else:  # finite statistics whose fold overflows float32
            batchnorm.weight.fill_(3e38)
            batchnorm.running_var.fill_(0.0)
    return save_checkpoint(path, model, ["a", "b"], IMGSZ)


@pytest.mark.parametrize("change", ["negative variance", "fold overflows"])
def test_batchnorm_statistics_that_fuse_into_nan_or_inf_are_one_clear_error(
    change: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _checkpoint_with(tmp_path / "bad.pt", change)
    expected = "negative values" if change == "negative variance" else "fusing the model gives NaN or Inf"
    with pytest.raises(CheckpointError, match=expected):
        load(weights, fuse=True)
    with pytest.raises(CheckpointError, match=expected):
        Detector(weights, device="cpu")
    out = tmp_path / "out"
    assert build_main(["--weights", str(weights), "--backend", "onnxruntime", "-o", str(out), "--name", "m"]) == 2
    assert expected in _no_traceback(capsys)
    assert not (out / "m.onnx").exists()


# -------------------------------------------------------------------------------------------- resume


def test_a_copied_run_resumes_in_its_new_folder_and_leaves_the_original_untouched(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", 4, 1, imgsz=(96, 128), seed=3, num_classes=2)
    config = TrainConfig(model="yolov6n", data=str(data), epochs=1, batch=4, imgsz=96, workers=0, device="cpu",
                         out=str(tmp_path / "A"), min_warmup_iters=0, warmup_epochs=1.0, eval_interval=1)  # fmt: skip
    Trainer(config).fit()
    shutil.copytree(tmp_path / "A", tmp_path / "B")
    before = {p.name: _sha256(p) for p in (tmp_path / "A").iterdir()}
    resumed = Trainer.resume(tmp_path / "B" / "last.pt", epochs=2)
    assert resumed.config.out == str(tmp_path / "B")
    assert resumed.fit()["out"] == tmp_path / "B"
    assert {p.name: _sha256(p) for p in (tmp_path / "A").iterdir()} == before
    assert [r["epoch"] for r in read_results_csv(tmp_path / "B" / "results.csv")] == ["1", "2"]
    assert load(tmp_path / "B" / "last.pt").meta["epoch"] == 2
    again = Trainer.resume(tmp_path / "B", out=str(tmp_path / "B"), epochs=3)  # naming the folder itself is fine
    assert again.config.out == str(tmp_path / "B")


# ------------------------------------------------------------------------------------ crafted checkpoints


def _with_pickle(path: Path, data_pkl: bytes) -> Path:
    """A torch zip checkpoint whose pickle is ``data_pkl`` (no tensors)."""
    empty = io.BytesIO()
    torch.save({}, empty)
    source = zipfile.ZipFile(io.BytesIO(empty.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for entry in source.infolist():
            archive.writestr(entry.filename, data_pkl if entry.filename.endswith("data.pkl") else source.read(entry))
    return path


def _text(value: str) -> bytes:
    return b"X" + len(value).to_bytes(4, "little") + value.encode()


def _deep_list() -> bytes:
    return b"]" * DEPTH + b"a" * (DEPTH - 1)  # a list in a list ... DEPTH deep


def _crafted(tmp_path: Path) -> dict[str, Path]:
    model, _ = prepared("yolov6n")
    with fake_official_package() as make:
        official = _to_official(model, make, legacy=False, head=None)
        torch.save({"ema": torch.zeros(2), "model": official}, tmp_path / "ema-tensor.pt")
        torch.save({"ema": None, "model": official, "results": [2**2000, 0.5]}, tmp_path / "huge-results.pt")
    deep_tuple = b")" + b"\x85" * DEPTH  # a 1-tuple in a 1-tuple ... DEPTH deep
    return {
        "deep format": _with_pickle(
            tmp_path / "deep-format.pt", b"\x80\x02}" + _text("format") + _deep_list() + b"s."
        ),  # fmt: skip
        "deep key": _with_pickle(tmp_path / "deep-key.pt", b"\x80\x02}" + deep_tuple + _text("v") + b"s."),
        "deep model": _with_pickle(tmp_path / "deep-model.pt", b"\x80\x02}" + _text("model") + _deep_list() + b"s."),
        "ema tensor": tmp_path / "ema-tensor.pt",
        "huge results": tmp_path / "huge-results.pt",
    }


def test_crafted_checkpoints_give_one_checkpoint_error_or_load_through_api_and_clis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _crafted(tmp_path)
    for case in ("deep format", "deep key", "deep model"):
        with pytest.raises(CheckpointError, match="neither a yolov6-sdk checkpoint|has format"):
            load(files[case])
    loaded = load(files["ema tensor"])  # the tensor under 'ema' is no model: the one under 'model' is read
    assert loaded.source == "official" and loaded.names == ("class0", "class1", "class2")
    assert "results" not in load(files["huge results"]).meta  # a score beyond float range is dropped
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((IMGSZ, IMGSZ, 3), 100, np.uint8))
    for case, path in files.items():
        out = tmp_path / case.replace(" ", "-")
        build_code = build_main(["--weights", str(path), "--imgsz", str(IMGSZ), "--backend", "onnxruntime",
                                 "-o", str(out), "--name", "m"])  # fmt: skip
        _no_traceback(capsys)
        detect_code = detect_main([str(image), "--model", str(path), "--device", "cpu", "-o", str(out / "detect")])
        _no_traceback(capsys)
        assert (build_code, detect_code) == ((2, 2) if case.startswith("deep") else (0, 0)), case
