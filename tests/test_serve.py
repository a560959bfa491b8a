"""yolov6-serve on a real Triton server (pytriton's tritonserver) on localhost, through the SDK's Client."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the serve extra (pip install -e '.[serve]') runs the server")
tritonclient_http = pytest.importorskip("tritonclient.http")

from conftest import randomize_model  # noqa: E402
from serve_helpers import ServerProcess, free_port_block  # noqa: E402

from yolov6_sdk import Detector  # noqa: E402
from yolov6_sdk.errors import ConfigError, ImageError  # noqa: E402
from yolov6_sdk.export.onnx import ExportOptions, export_onnx  # noqa: E402
from yolov6_sdk.models import build_model  # noqa: E402
from yolov6_sdk.runtime.results import Results  # noqa: E402
from yolov6_sdk.serve import Client  # noqa: E402
from yolov6_sdk.serve.server import WORKSPACE_ROOT  # noqa: E402

SIZES = [(48, 64), (100, 70), (64, 96), (33, 200), (120, 120), (64, 64)]
SERVE_ARGS = ("--backend", "onnxruntime", "--conf", "0.5", "--max-batch", "8")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch_model = randomize_model(build_model("yolov6n", num_classes=4).eval())
    return export_onnx(torch_model, tmp_path_factory.mktemp("serve") / "n.onnx", ExportOptions(imgsz=(64, 96)))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    paths = []
    for index, (height, width) in enumerate(SIZES):
        path = folder / f"p{index}.{'png' if index % 2 else 'jpg'}"
        cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def local(model: Path) -> Iterator[Detector]:
    with Detector(model, backend="onnxruntime", conf=0.5) as detector:
        yield detector


@pytest.fixture(scope="module")
def server(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("log") / "server.log"
    process = ServerProcess(model, free_port_block(), log, *SERVE_ARGS, "--max-queue-delay-us", "300000")
    process.wait_ready()
    yield process
    assert process.stop() == 0, process.log()


def assert_same(served: Results, expected: Results) -> None:
    assert served.orig_shape == expected.orig_shape
    assert len(served) == len(expected) > 0
    np.testing.assert_allclose(served.boxes.xyxy, expected.boxes.xyxy, atol=1e-3)
    np.testing.assert_allclose(served.scores, expected.scores, atol=1e-5)
    np.testing.assert_array_equal(served.class_ids, expected.class_ids)
    assert [served.names[int(c)] for c in served.class_ids] == [expected.names[int(c)] for c in expected.class_ids]


def metric(server: ServerProcess, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.port + 2}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + '{model="yolov6"'))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_request_equals_a_local_detector_call(
    server: ServerProcess, local: Detector, pictures: list[Path], protocol: str
) -> None:
    with Client(server.http if protocol == "http" else server.grpc) as client:
        assert client.is_ready()
        for path in pictures[:2]:
            assert_same(client(path), local(path)[0])
        pixels = cv2.imread(str(pictures[2]))
        assert_same(client(pixels), local(pixels)[0])


def test_per_request_options_equal_a_local_detector_with_those_options(
    server: ServerProcess, model: Path, pictures: list[Path]
) -> None:
    with Client(server.http) as client, Detector(model, backend="onnxruntime", conf=0.3, iou=0.6, classes=[1, 2]) as d:
        assert_same(client(pictures[0], conf=0.3, iou=0.6, classes=[1, 2]), d(pictures[0])[0])
        assert set(client(pictures[0], classes=[3]).class_ids.tolist()) <= {3}


def test_pictures_of_different_sizes_batch_together_and_each_gets_its_own_answer(
    server: ServerProcess, local: Detector, pictures: list[Path]
) -> None:
    before = (metric(server, "nv_inference_count"), metric(server, "nv_inference_exec_count"))
    answers: dict[int, Results] = {}
    clients = [Client(server.http) for _ in pictures]
    start_together = threading.Barrier(len(pictures))

    def ask(index: int) -> None:
        start_together.wait(timeout=60)
        answers[index] = clients[index](pictures[index])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(pictures))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for client in clients:
        client.close()
    for index, path in enumerate(pictures):
        assert_same(answers[index], local(path)[0])
    requests = metric(server, "nv_inference_count") - before[0]
    model_runs = metric(server, "nv_inference_exec_count") - before[1]
    assert requests == len(pictures)
    assert model_runs < requests  # at least one batch held pictures of different sizes


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + end


def raw_infer(server: ServerProcess, name: str, array: np.ndarray, datatype: str, **parameters: object) -> str:
    """The error text Triton answers for one hand-made request ('' when it ran)."""
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    tensor = tritonclient_http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    try:
        reply = client.infer("yolov6", [tensor], parameters=parameters or None)
    except Exception as exc:  # tritonclient's InferenceServerException: Triton refused the request itself
        return str(exc)
    finally:
        client.close()
    return bytes(reply.as_numpy("error").reshape(-1)[0]).decode()


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    server: ServerProcess, local: Detector, pictures: list[Path]
) -> None:
    with Client(server.http) as client:
        with pytest.raises(ImageError, match="corrupt"):
            client(b"\xff\xd8\xff\xe0 definitely not a JPEG")
        with pytest.raises(ImageError, match="declares 60000 x 60000 pixels"):
            client(png_header(60000, 60000))
        with pytest.raises(ImageError, match="empty"):
            client(b"")
        with pytest.raises(ConfigError, match=r"option conf must be a number in 0\.\.1"):
            client(pictures[0], conf=2.0)
        assert_same(client(pictures[0]), local(pictures[0])[0])
    image = np.zeros((1, 8, 8, 3), dtype=np.float32)
    assert "data-type is 'FP32', but model 'yolov6' expects 'UINT8'" in raw_infer(server, "pixels", image, "FP32")
    assert "pixels" in raw_infer(server, "pixels", np.zeros((1, 8, 8, 4), dtype=np.uint8), "UINT8")
    assert "pixels" in raw_infer(server, "pixels", np.zeros((1, 0, 8, 3), dtype=np.uint8), "UINT8")
    encoded = np.array([[pictures[0].read_bytes()]], dtype=np.object_)
    assert "unknown option(s) ['color']" in raw_infer(server, "image", encoded, "BYTES", color="red")
    assert raw_infer(server, "image", encoded, "BYTES") == ""


def test_sigterm_answers_the_requests_in_flight_and_exits_0(
    model: Path, local: Detector, pictures: list[Path], tmp_path: Path
) -> None:
    server = ServerProcess(model, free_port_block(), tmp_path / "log", *SERVE_ARGS, "--max-queue-delay-us", "3000000")
    server.wait_ready()
    answers: dict[int, Results | Exception] = {}

    def ask(index: int) -> None:
        try:
            with Client(server.http) as client:
                answers[index] = client(pictures[index])
        except Exception as exc:  # recorded, and the assertion below names it
            answers[index] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the four requests wait in Triton's batcher queue (3 s delay, batches of up to 8)
    server.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=120)
    assert server.wait() == 0, server.log()
    for index in range(4):
        assert isinstance(answers[index], Results), answers[index]
        assert_same(answers[index], local(pictures[index])[0])


def test_sigkill_leaves_no_stale_files_and_the_next_start_works_on_the_same_port(
    model: Path, pictures: list[Path], tmp_path: Path
) -> None:
    port = free_port_block()
    server = ServerProcess(model, port, tmp_path / "log1", *SERVE_ARGS).wait_ready()
    pid = server.process.pid
    workspace = WORKSPACE_ROOT / f"{pid}-{port}"
    assert workspace.is_dir()
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    server.signal(signal.SIGKILL)
    server.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (workspace.exists() or list(Path("/dev/shm").glob(f"pytrtion{pid}-*"))):
        time.sleep(0.5)
    assert not workspace.exists()
    assert not list(Path("/dev/shm").glob(f"pytrtion{pid}-*"))
    time.sleep(1.0)
    assert [c for c in children if running(int(c))] == []
    again = ServerProcess(model, port, tmp_path / "log2", *SERVE_ARGS, "--instances", "2").wait_ready()
    with Client(again.grpc) as client:
        assert client(cv2.imread(str(pictures[0]))).orig_shape == SIZES[0]
    assert again.stop() == 0, again.log()
    assert "instance 1: batch sizes run" in again.log()


def running(pid: int) -> bool:
    """True while ``pid`` runs (an ended process that its new parent has not reaped yet does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_a_port_in_use_is_one_clear_error(model: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "yolov6_sdk.cli.serve", str(model), "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and f"127.0.0.1:{port} (HTTP)" in errors[0] and "in use" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
