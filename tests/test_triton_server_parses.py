"""The bundled Triton server reads every config.pbtxt that ``yolov6-build --triton`` writes.

pytriton's tritonserver has only the Python backend, so loading an ONNX Runtime or TensorRT model must stop at
"unable to find backend library": that comes after Triton parsed and checked the config. A config error
(an unknown field, a bad value) stops earlier with a different message, which these tests would show.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.export.triton import write_triton_repository
from yolov6_sdk.models import build_model

pytest.importorskip("pytriton", reason="the serve extra (pip install -e '.[serve]') bundles tritonserver")

from test_triton import engine_with_sidecar  # noqa: E402  (after the skip: it imports onnxruntime only)

from yolov6_sdk.serve.interpreter import prepare_stub_environment  # noqa: E402


def tritonserver_load(repository: Path) -> str:
    """Run the bundled tritonserver on ``repository`` (no network endpoints) and return its log."""
    from pytriton.utils.distribution import get_root_module_path

    root = get_root_module_path() / "tritonserver"
    env = {"PATH": "/usr/bin:/bin"}
    prepare_stub_environment(env)
    command = [str(root / "bin" / "tritonserver"), "--model-repository", str(repository), "--backend-directory",
               str(root / "backends"), "--model-control-mode", "explicit", "--load-model", "*", "--allow-http",
               "false", "--allow-grpc", "false", "--allow-metrics", "false", "--exit-timeout-secs", "1"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    repo = folder / "repo"
    model = build_model("yolov6n", num_classes=3).eval()
    raw = export_onnx(model, folder / "raw.onnx", ExportOptions(imgsz=(64, 64)))
    e2e = export_onnx(model, folder / "e2e.onnx", ExportOptions(imgsz=(64, 64), nms="ort", max_det=5, simplify=False))
    fixed = export_onnx(
        model, folder / "b2.onnx", ExportOptions(imgsz=(64, 64), dynamic_batch=False, batch=2, simplify=False)
    )
    for artifact in (raw, e2e, fixed, engine_with_sidecar(folder, (1, 4, 8))):
        write_triton_repository(artifact, repo)
    return repo


def test_every_generated_config_parses_and_only_the_backend_is_missing(repository: Path) -> None:
    log = tritonserver_load(repository)
    for name, backend in (("raw", "onnxruntime"), ("e2e", "onnxruntime"), ("b2", "onnxruntime"),
                          ("yolov6n-fp16", "tensorrt")):  # fmt: skip
        assert (
            f"failed to load '{name}' version 1: Invalid argument: unable to find backend library for backend '{backend}'"
            in log
        ), log
    assert "Error parsing text-format" not in log
    assert "failed to read text proto" not in log


def test_a_config_error_is_reported_differently(repository: Path, tmp_path: Path) -> None:
    broken = tmp_path / "repo" / "raw"
    broken.mkdir(parents=True)
    text = (repository / "raw" / "config.pbtxt").read_text()
    (broken / "config.pbtxt").write_text(text.replace("max_batch_size:", "max_batch_sizes:"))
    log = tritonserver_load(tmp_path / "repo")
    assert "Error parsing text-format" in log
    assert "unable to find backend library" not in log
