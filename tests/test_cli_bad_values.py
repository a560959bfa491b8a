"""Every console command with bad values: one line naming the option and the fix, exit 2, never a traceback.

The table runs each command in-process through its ``main(argv)`` (an exception escaping it fails the test with
its traceback); outputs are checked before any work, so most rows need no model at all. A few real processes
check what only a process shows: a closed pipe, and Ctrl-C while a command still imports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolov6_sdk.cli import bench, build, datagen, detect, info, main, train
from yolov6_sdk.cli import eval as eval_cli
from yolov6_sdk.training.datagen import CLASS_NAMES, generate_dataset

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "weights" / "yolov6n-shapes.pt")
COMMANDS = {
    "yolov6": main.main, "yolov6-datagen": datagen.main, "yolov6-eval": eval_cli.main, "yolov6-bench": bench.main,
    "yolov6-detect": detect.main, "yolov6-build": build.main, "yolov6-train": train.main, "yolov6-info": info.main,
}  # fmt: skip

# command, arguments ({tmp}: a fresh folder, {file}: a file in it, {empty}: a dataset with no training image),
# expected exit status, a fragment of the one-line message
CASES = [
    ("yolov6-datagen", ["{tmp}/set", "--classes", "13"], 2, "--classes 13: expected 1..12"),
    ("yolov6-datagen", ["{tmp}/set", "--imgsz", "10", "20"], 2, "64 <= MIN <= MAX"),
    ("yolov6-datagen", ["{tmp}/set", "--train", "-1"], 2, "--train -1"),
    ("yolov6-datagen", ["{file}"], 2, "is a file, not a folder"),
    ("yolov6-eval", ["--model", "m.onnx", "--data", "d", "--save-json", "{tmp}/"], 2, "is a folder"),
    ("yolov6-eval", ["--model", "m.onnx", "--data", "d", "--json", "{tmp}"], 2, "is a folder"),
    ("yolov6-eval", ["--model", "m.onnx", "--data", "d", "--json", "/proc/nope/x.json"], 2, "cannot be written"),
    ("yolov6-eval", ["--model", "m.onnx", "--data", "d", "--save-json", "{file}/x.json"], 2, "is a file"),
    ("yolov6-eval", ["--model", DEMO, "--data", "{empty}", "--split", "train"], 2, "holds no usable image"),
    ("yolov6-eval", ["--model", "m.onnx", "--data", "d", "--batch", "0"], 2, "expected a positive integer"),
    ("yolov6-bench", ["--csv", "{tmp}/"], 2, "is a folder"),
    ("yolov6-bench", ["--csv", "/proc/nope/x.csv"], 2, "cannot be written"),
    ("yolov6-bench", ["--json", "{file}/x.json"], 2, "is a file"),
    ("yolov6-bench", ["{tmp}/nope.onnx"], 2, "does not exist"),
    ("yolov6-bench", ["--models", "yolov9"], 2, "did you mean"),
    ("yolov6-detect", ["a.jpg", "--model", "m.onnx", "--conff", "0.3"], 2, "did you mean --conf?"),
    ("yolov6-detect", ["a.jpg", "--model", "m.onnx", "--batch", "0"], 2, "expected a positive integer"),
    ("yolov6-detect", ["a.jpg", "--model", "m.onnx", "--vid-stride", "0"], 2, "expected a positive integer"),
    ("yolov6-detect", ["a.jpg", "--model", "m.onnx", "-o", "{file}"], 2, "is a file, not a folder"),
    ("yolov6-detect", ["a.jpg", "--model", "m.onnx", "--save-json", "{tmp}"], 2, "is a folder"),
    ("yolov6-detect", ["a.jpg", "--model", "m.onnx", "--backend", "onnxrt"], 2, "did you mean onnxruntime?"),
    ("yolov6-build", ["-o", "{file}"], 2, "is a file, not a folder"),
    ("yolov6-build", ["--precison", "int8"], 2, "did you mean --precision?"),
    ("yolov6-build", ["--triton", "{file}/repo"], 2, "is a file"),
    ("yolov6-train", ["--data", "d", "-o", "{file}"], 2, "is a file, not a folder"),
    ("yolov6-train", ["--data", "d", "--epochs", "0"], 2, "--epochs 0"),
    ("yolov6-train", ["--data", "d", "--batch", "0"], 2, "--batch 0"),
    ("yolov6-train", ["--data", "d", "--model", "yolov6q", "-o", "{tmp}/run"], 2, "did you mean"),
    ("yolov6-train", ["--resume", "{tmp}/missing.pt"], 2, "no training state"),
    ("yolov6-info", ["--imgsz", "33"], 2, "--imgsz 33"),
    ("yolov6", ["detct"], 2, "did you mean detect?"),
]


@pytest.fixture(scope="module")
def empty_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("empty"), num_train=0, num_val=1, imgsz=64)


def _run(name: str, argv: list[str]) -> int:
    try:
        return COMMANDS[name](argv)
    except SystemExit as exc:  # argparse's usage errors
        return int(exc.code or 0)


@pytest.mark.parametrize(("name", "args", "status", "fragment"), CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_a_bad_value_is_one_line_and_exit_2(
    name: str, args: list[str], status: int, fragment: str, empty_split: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (tmp_path / "afile").write_text("x")
    argv = [a.format(tmp=tmp_path, file=tmp_path / "afile", empty=empty_split) for a in args]
    assert _run(name, argv) == status
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written, nothing left behind


def test_a_bad_pixel_limit_is_one_configuration_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("YOLOV6_MAX_PIXELS", "abc")
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"not read")
    assert _run("yolov6-detect", [str(tmp_path), "--model", DEMO, "--no-save"]) == 2
    err = capsys.readouterr().err
    assert err.count("YOLOV6_MAX_PIXELS='abc'") == 1 and "Traceback" not in err


def test_the_generator_limits_are_the_commands_limits() -> None:
    assert len(CLASS_NAMES) == datagen.CLASS_COUNT


def test_a_closed_pipe_ends_help_quietly() -> None:
    for _ in range(4):
        done = subprocess.run(f"{sys.executable} -m yolov6_sdk --help | head -1", shell=True, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.stdout.startswith("usage: yolov6") and "Error" not in done.stderr, done.stderr


def test_ctrl_c_while_a_command_imports_is_one_line_and_exit_130(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from yolov6_sdk.cli.main import train; sys.argv[1:] = ['--data', 'd']; "
         "raise SystemExit(train())"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    time.sleep(0.4)  # python is up; torch is still importing
    child.send_signal(signal.SIGINT)
    err = child.communicate(timeout=60)[1]
    assert child.returncode == 130, err
    assert "interrupted by SIGINT" in err and "Traceback" not in err


def test_sigterm_during_training_leaves_last_pt_and_no_temporaries(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", num_train=4, num_val=2, imgsz=64)
    run = tmp_path / "run"
    argv = ["--model", "yolov6n", "--data", str(data), "--epochs", "50", "--batch", "2", "--imgsz", "64",
            "--workers", "0", "--device", "cpu", "-o", str(run), "--eval-interval", "100", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-m", "yolov6_sdk", "train", *argv], stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run / "last.pt").is_file() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    err = child.communicate(timeout=60)[1]
    assert child.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err and "--resume" in err
    assert (run / "last.pt").is_file()
    assert not [p.name for p in run.iterdir() if ".tmp." in p.name]
