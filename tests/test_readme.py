"""Every code block of the README runs as written, on generated data.

Python blocks run in a scratch folder holding what they name (an int8 artifact built from the demo weights, a
picture, a broken file, a folder of pictures, short videos). The command blocks run there too, after the
set-up part of the main job (``python3 -m venv ... pip install ...``: the test runs inside that environment);
they take minutes, so they are ``slow``. Two command blocks cannot run as written in a test: the test-suite
command (this suite itself) and the trainings of 20 epochs (57 minutes for the demo weights); those run with the
counts in :data:`SHORTER`, every other word as written. A block in no list fails the first test, so a new block gets run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov6_sdk._optional import available
from yolov6_sdk.errors import MissingDependencyError
from yolov6_sdk.training.datagen import make_image

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
SETUP = re.compile(r"^python3 -m venv .*?pip install -q -e '\.\[train,dev\]' && ")
NOT_RUN = {"python -m pytest": "the test-suite command: this suite itself"}
SHORTER = {"--train 5000": "--train 16", "--epochs 20": "--epochs 1", "--batch 16": "--batch 4"}
OPTIONAL_MODULES = {"to_supervision": "supervision", "to_df": "pandas"}


def _blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    found = []
    for indent, lang, body in FENCE.findall(text):
        if lang == language:
            found.append("\n".join(line[len(indent) :] for line in body.splitlines()))
    return found


def _commands(block: str) -> list[str]:
    """The block's command lines (continuations joined, comments dropped), the main job's set-up removed."""
    joined = block.replace("\\\n", " ")
    lines = [line.split("  #")[0].strip() for line in joined.splitlines()]
    return [SETUP.sub("", line) for line in lines if line and not line.startswith("#")]


def _needs(block: str) -> list[str]:
    return [module for call, module in OPTIONAL_MODULES.items() if f".{call}(" in block]


def test_every_block_is_python_or_a_command_block() -> None:
    text = (ROOT / "README.md").read_text()
    languages = {lang for _, lang, _ in FENCE.findall(text)}
    assert languages == {"python", "bash"}
    assert len(_blocks("python")) >= 3 and len(_blocks("bash")) >= 5


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with everything the Python blocks name: engines/yolov6n-int8.onnx (demo weights, int8, 160 px),
    bus.jpg, a.jpg, broken.jpg, photos/, video.mp4 and clip.mp4."""
    from yolov6_sdk.export.build import build

    folder = tmp_path_factory.mktemp("readme")
    rng = np.random.default_rng(0)
    pictures = [make_image(rng, (160, 200), 8)[0] for _ in range(4)]
    for name, picture in zip(("bus.jpg", "a.jpg", "photos/1.jpg", "photos/2.jpg"), pictures, strict=True):
        (folder / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / name), picture)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a picture")
    for name in ("video.mp4", "clip.mp4"):
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"mp4v"), 10, (200, 160))
        for picture in pictures:
            writer.write(cv2.resize(picture, (200, 160)))
        writer.release()
    build(weights=ROOT / "weights" / "yolov6n-shapes.pt", precision="int8", calib=ROOT / "calib", calib_size=8,
          output=folder / "engines", name="yolov6n-int8")  # fmt: skip
    return folder


def test_python_blocks_run_in_order(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocks share one namespace, as in a session that reads the README top to bottom. A block calling an
    optional package that is not installed must end in the SDK's error naming the package to install."""
    monkeypatch.chdir(scratch)
    namespace: dict[str, object] = {"__name__": "readme"}
    for index, block in enumerate(_blocks("python")):
        if "yolov6_sdk.serve import Client" in block:
            _run_client_block(block, index, scratch, namespace)
            continue
        code = compile(block, f"README.md python block {index}", "exec")
        missing = [module for module in _needs(block) if not available(module)]
        if missing:
            with pytest.raises(MissingDependencyError, match=f"pip install {missing[0]}"):
                exec(code, namespace)
        else:
            exec(code, namespace)
    assert (scratch / "results_bus.jpg").is_file() and (scratch / "out.jpg").is_file()
    assert (scratch / "labels" / "bus.txt").is_file() and (scratch / "dets.json").is_file()
    assert namespace["report"].images == 2 and namespace["report"].videos == 1


def _run_client_block(block: str, index: int, scratch: Path, namespace: dict[str, object]) -> None:
    """The serving client's block, against a real yolov6-serve of the scratch model on free local ports (the
    block's own "localhost:8000" pointed there), asking for the picture the block names."""
    pytest.importorskip("pytriton", reason="the serve extra runs the server")
    from serve_helpers import ServerProcess, free_port_block

    shutil.copyfile(scratch / "bus.jpg", scratch / "picture.jpg")
    port = free_port_block()
    server = ServerProcess(scratch / "engines" / "yolov6n-int8.onnx", port, scratch / "serve.log")
    try:
        server.wait_ready()
        exec(compile(block.replace("localhost:8000", f"127.0.0.1:{port}"), f"README.md python block {index}", "exec"),
             namespace)  # fmt: skip
    finally:
        assert server.stop() == 0, server.log()


def _run_block(block: str, folder: Path) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = []
    for line in _commands(block):
        for long, short in SHORTER.items():
            line = line.replace(long, short)
        for command in line.split(" && "):
            step = subprocess.run(shlex.split(command), cwd=folder, env=env, capture_output=True, text=True,
                                  timeout=1800)  # fmt: skip
            assert step.returncode == 0, f"{command}\n{step.stdout[-3000:]}\n{step.stderr[-3000:]}"
            assert "Traceback" not in step.stderr
            done.append(step)
    return done


def _command_blocks() -> list[str]:
    return [block for block in _blocks("bash") if not any(skip in block for skip in NOT_RUN)]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_command_blocks())))
def test_command_block_runs(index: int, tmp_path: Path) -> None:
    """Each command block in a fresh folder holding the shipped calib/ and weights/ (each block makes its data)."""
    for shipped in ("calib", "weights"):
        (tmp_path / shipped).symlink_to(ROOT / shipped)
    block = _command_blocks()[index]
    steps = _run_block(block, tmp_path)
    if "--qat runs/qat/last.pt" in block:
        assert "int8 (onnx)" in steps[-1].stdout and "fp32 (onnx)" not in steps[-1].stdout
        trained = re.search(r"best mAP50-95 (\d\.\d+)", steps[-2].stdout)
        assert trained is not None and float(trained.group(1)) > 0.1  # trained at the teacher's 160 px
