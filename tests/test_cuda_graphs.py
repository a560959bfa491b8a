"""The CUDA bookkeeping the torch and TensorRT backends share, on the CPU: bounded shape caches, capture in
thread-local mode with a fallback, stream ordering. CUDA itself is replaced by recorders of the calls made (they
compute nothing); on CPU-only torch a real capture attempt fails, which is the fallback path."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.backends.cuda_graphs import CAPTURE_ERROR_MODE, ShapeCache, capture_graph, ordered_stream
from yolov6_sdk.runtime.backends.torch import TorchBackend
from yolov6_sdk.weights import save_checkpoint


def test_shape_cache_keeps_the_most_recently_used_and_releases_the_rest() -> None:
    released: list[str] = []
    cache: ShapeCache[tuple[int, ...], str] = ShapeCache(2, release=released.append)
    cache.put((1,), "a")
    cache.put((2,), "b")
    assert cache.get((1,)) == "a"  # (1,) is now the most recent
    assert cache.get_or_make((3,), lambda: "c") == "c"
    assert released == ["b"] and cache.keys() == [(1,), (3,)] and len(cache) == 2
    assert cache.get_or_make((1,), lambda: "never made") == "a"
    cache.put((3,), "c2")  # replacing a value releases the old one
    cache.clear()
    assert released == ["b", "c", "a", "c2"] and len(cache) == 0
    with pytest.raises(ValueError, match="capacity"):
        ShapeCache(0)


class CaptureRecorder:
    """Stands in for ``torch`` in :func:`capture_graph`: records the capture arguments, optionally failing."""

    def __init__(self, fail: bool) -> None:
        self.fail, self.captures = fail, []
        self.cuda = SimpleNamespace(CUDAGraph=lambda: SimpleNamespace(replay=lambda: None), graph=self._graph)

    @contextmanager
    def _graph(self, graph: Any, stream: Any = None, capture_error_mode: str = "global") -> Any:
        self.captures.append((stream, capture_error_mode))
        yield
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")


def test_capture_is_thread_local_and_a_failed_capture_returns_none(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []
    ok, failing = CaptureRecorder(fail=False), CaptureRecorder(fail=True)
    assert capture_graph(ok, "side", lambda: ran.append(1), "input [1, 3, 64, 64]") is not None
    with caplog.at_level(logging.WARNING, logger="yolov6_sdk.runtime.backends.cuda_graphs"):
        assert capture_graph(failing, "side", lambda: ran.append(2), "input [2, 3, 64, 64]") is None
    assert ok.captures == failing.captures == [("side", "thread_local")] and CAPTURE_ERROR_MODE == "thread_local"
    assert ran == [1, 2] and "capture of input [2, 3, 64, 64] failed" in caplog.text
    if not torch.cuda.is_available():  # CPU-only torch cannot even make a graph: that is a failed capture too
        assert capture_graph(torch, None, lambda: None, "cpu") is None


def test_own_stream_waits_for_the_caller_and_the_caller_for_it() -> None:
    events: list[str] = []

    class Stream:
        def __init__(self, name: str) -> None:
            self.name = name

        def wait_stream(self, other: Stream) -> None:
            events.append(f"{self.name} waits {other.name}")

    @contextmanager
    def current(stream: Stream) -> Any:
        events.append(f"on {stream.name}")
        yield

    fake = SimpleNamespace(cuda=SimpleNamespace(stream=current))
    own, caller = Stream("own"), Stream("caller")
    with ordered_stream(fake, own, caller) as used:
        assert used is own
        events.append("work")
    with pytest.raises(KeyError), ordered_stream(fake, own, caller):
        raise KeyError("failed inside")
    assert events == ["own waits caller", "on own", "work", "caller waits own"] + [
        "own waits caller", "on own", "caller waits own"  # the caller waits even when the block fails
    ]  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a capture that cannot happen")
def test_torch_backend_runs_a_shape_eagerly_when_its_capture_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = fuse(randomize_model(build_model("yolov6n", num_classes=2).eval(), seed=0))
    with TorchBackend(save_checkpoint(tmp_path / "m.pt", model, imgsz=64), device="cpu") as loaded:
        calls: list[tuple[int, ...]] = []
        loaded.model.register_forward_pre_hook(lambda _m, args: calls.append(tuple(args[0].shape)))
        with caplog.at_level(logging.WARNING), torch.inference_mode():
            captured = loaded._capture(torch.rand(1, 3, 64, 64), stream=None)
    assert captured.graph is None and captured.static_output is None  # the shape then runs eagerly
    assert calls == [(1, 3, 64, 64)] * 3 and "CUDA graph capture of input (1, 3, 64, 64)" in caplog.text
