"""The torch backend on CUDA: equal to the CPU backend, CUDA graph replays equal to eager runs, options checked."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from conftest import randomize_model
from test_detector import (
    IMGSZ,
    IOU,
    NAMES,
    NUM_CLASSES,
    _assert_same_detections,
    _conf_for_a_few_detections,
    _spread_scores,
)

from yolov6_sdk.errors import ArtifactError, ConfigError, YOLOv6Error
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime import detector as detector_module
from yolov6_sdk.runtime.backends import registry
from yolov6_sdk.runtime.backends.torch import TorchBackend
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.training.datagen import make_image
from yolov6_sdk.weights import save_checkpoint

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# fp16 keeps 11 significant bits (unit roundoff 2**-11 ~ 4.9e-4): a box coordinate near 160 px rounds by up to
# 0.08 px at the output alone, and every one of the ~60 fused convolutions rounds its activations (accumulating
# in fp32, as cuDNN does for half). Emulated on the CPU, this model's fp16 outputs differ from fp64 by at most
# 0.12 px (boxes) and 5e-4 (scores); the bounds below leave 4x and 10x headroom.
FP16_BOX_ATOL_PX = 0.5
FP16_SCORE_ATOL = 5e-3


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A fixed-seed fused checkpoint with well-separated class scores, a test image and a conf for it."""
    torch.manual_seed(0)
    model = fuse(_spread_scores(randomize_model(build_model("yolov6n", NUM_CLASSES).eval(), seed=0)))
    model.names = list(NAMES)
    image = make_image(np.random.default_rng(0), (96, 224), NUM_CLASSES)[0]
    conf = _conf_for_a_few_detections(model, image)
    checkpoint = save_checkpoint(tmp_path_factory.mktemp("torch_gpu") / "model.pt", model, imgsz=IMGSZ)
    return SimpleNamespace(checkpoint=checkpoint, image=image, conf=conf)


@pytest.fixture
def ieee_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain fp32 convolutions: TF32 (torch's cuDNN default on Ampere and newer) rounds inputs to 10 bits."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def _random_batch(seed: int, shape: tuple[int, ...] = (2, 3, 96, 160)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- CPU-runnable


def test_cuda_graph_on_the_cpu_raises_a_config_error_naming_the_fix(art: SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match=r"cuda_graph=True needs a CUDA device.*device='cuda'.*drop cuda_graph"):
        TorchBackend(art.checkpoint, device="cpu", cuda_graph=True)
    with pytest.raises(ConfigError, match=r"cuda_graph=True needs a CUDA device"):
        Detector(art.checkpoint, device="cpu", cuda_graph=True)


def test_detector_rejects_cuda_graph_for_an_onnx_runtime_artifact(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cuda_graph applies to tensorrt .*torch .*not the onnxruntime backend"):
        Detector(tmp_path / "model.onnx", device="cpu", cuda_graph=True)


@pytest.mark.parametrize(("name", "kind"), [("model.pt", "torch"), ("model.engine", "tensorrt")])
def test_detector_passes_cuda_graph_to_the_torch_and_tensorrt_backends(
    name: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[str, dict]] = []

    class Opened(Exception):
        pass

    def record(path: Path, backend: str, device: str, options: dict, hints: dict) -> None:
        opened.append((registry.backend_kind(path, backend, device), dict(options)))
        raise Opened

    monkeypatch.setattr(detector_module, "open_backend", record)
    for cuda_graph in (True, False):
        with pytest.raises(Opened):
            Detector(name, device="cuda", cuda_graph=cuda_graph)
    assert opened == [(kind, {"cuda_graph": True}), (kind, {})]


def test_infer_rejects_a_batch_that_is_not_b_3_h_w(art: SimpleNamespace) -> None:
    with TorchBackend(art.checkpoint, device="cpu") as backend:
        with pytest.raises(YOLOv6Error, match=r"expected a \[B, 3, H, W\] batch, got shape \(3, 96, 160\)"):
            backend.infer(np.zeros((3, 96, 160), dtype=np.float32))
        outputs = backend.infer(_random_batch(0))["outputs"]
    assert outputs.shape == (2, 12 * 20 + 6 * 10 + 3 * 5, 5 + NUM_CLASSES)  # anchors at strides 8, 16, 32


# ---------------------------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("half", [False, True])
def test_cuda_backend_matches_the_cpu_backend(art: SimpleNamespace, half: bool, ieee_fp32: None) -> None:
    images = _random_batch(0)
    with TorchBackend(art.checkpoint, device="cpu") as cpu:
        expected = cpu.infer(images)["outputs"]
    with TorchBackend(art.checkpoint, device="cuda", half=half) as cuda:
        outputs = cuda.infer(images.numpy())["outputs"]
    assert outputs.device.type == "cuda" and outputs.dtype == (torch.float16 if half else torch.float32)
    got = outputs.float().cpu()
    if half:
        torch.testing.assert_close(got[..., :4], expected[..., :4], rtol=0, atol=FP16_BOX_ATOL_PX)
        torch.testing.assert_close(got[..., 4:], expected[..., 4:], rtol=0, atol=FP16_SCORE_ATOL)
    else:
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("half", [False, True])
def test_cuda_graph_replays_equal_eager_runs_and_each_batch_shape_gets_its_graph(
    art: SimpleNamespace, half: bool
) -> None:
    first, second = _random_batch(1).cuda(), _random_batch(2).cuda()
    single = _random_batch(3, (1, 3, 96, 160))
    with TorchBackend(art.checkpoint, device="cuda", half=half, cuda_graph=True) as graphed:
        got_first = graphed.infer(first)["outputs"]
        got_second = graphed.infer(second)["outputs"]  # replays over the static buffers got_first came from
        assert graphed.graph_shapes == [(2, 96, 160)]
        got_single = graphed.infer(single.numpy())["outputs"]
        assert graphed.graph_shapes == [(1, 96, 160), (2, 96, 160)]
    assert graphed.graph_shapes == []
    with pytest.raises(ArtifactError, match="closed"):
        graphed.infer(first)
    # the same kernels run eagerly and in the graph: equal up to one fp16 step (2**-10 relative) at most
    tolerance = {"rtol": 2**-10, "atol": 1e-4} if half else {"rtol": 1e-5, "atol": 1e-5}
    with TorchBackend(art.checkpoint, device="cuda", half=half) as eager:
        for got, batch in ((got_first, first), (got_second, second), (got_single, single)):
            expected = eager.infer(batch)["outputs"]
            assert got.dtype == expected.dtype and got.device == expected.device
            torch.testing.assert_close(got, expected, **tolerance)
    assert not torch.allclose(got_first, got_second, **tolerance)  # so a stale static output would fail above


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_detector_on_cuda_gives_the_cpu_boxes_within_1_px(
    art: SimpleNamespace, cuda_graph: bool, ieee_fp32: None
) -> None:
    images = [art.image, cv2.resize(art.image, (150, 70))]  # a downscale and an upscale into the 160 canvas
    with Detector(art.checkpoint, device="cpu", conf=art.conf, iou=IOU) as cpu:
        expected = cpu(images)
    with Detector(art.checkpoint, device="cuda", conf=art.conf, iou=IOU, cuda_graph=cuda_graph) as cuda:
        assert cuda.backend.wants_torch and cuda.device == "cuda:0"
        runs = [cuda(images) for _ in range(2)]  # with cuda_graph, the second run replays the captured graph
    assert len(expected[0]) >= 5
    for got in runs:
        for a, b in zip(expected, got, strict=True):
            assert isinstance(b.boxes, np.ndarray)
            _assert_same_detections(a, b, box_tol=1.0, score_tol=1e-2)  # device resize differs by <= 1 gray level


@pytest.mark.gpu
@needs_cuda
def test_threads_sharing_a_graphed_backend_each_get_their_shapes_results(art: SimpleNamespace, ieee_fp32: None) -> None:
    """Two threads replay graphs of different shapes on one backend (own streams, thread-local captures) while
    the main thread keeps the GPU busy; every result equals the eager run of its own batch."""
    import threading

    batches = {0: _random_batch(4).cuda(), 1: _random_batch(5, (1, 3, 64, 160)).cuda()}
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    errors: list[BaseException] = []
    with TorchBackend(art.checkpoint, device="cuda", cuda_graph=True) as graphed:

        def work(key: int) -> None:
            try:
                for _ in range(5):
                    results[key].append(graphed.infer(batches[key])["outputs"])
                torch.cuda.current_stream().synchronize()
            except BaseException as exc:  # reported below, with the thread's failure
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(key,)) for key in batches]
        for thread in threads:
            thread.start()
        busy = torch.rand(512, 512, device="cuda")
        for _ in range(50):
            busy = busy @ busy / 512  # other CUDA work while the threads capture and replay
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert graphed.graph_shapes == [(1, 64, 160), (2, 96, 160)]
    with TorchBackend(art.checkpoint, device="cuda") as eager:
        for key, batch in batches.items():
            expected = eager.infer(batch)["outputs"]
            for got in results[key]:
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
