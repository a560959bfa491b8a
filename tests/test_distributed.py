"""Device selection and the single-process default of the training process group."""

from __future__ import annotations

import pytest
import torch

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.training.distributed import DistInfo, init_distributed, select_device


def test_single_process_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = init_distributed()
    assert dist == DistInfo() and dist.main and not dist.owns_group


def test_device_names() -> None:
    assert select_device("cpu", DistInfo()) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto", DistInfo()).type == expected
    with pytest.raises(ConfigError, match="device must be"):
        select_device("tpu:x", DistInfo())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    for name in ("cuda", "0", "cuda:1"):
        with pytest.raises(ConfigError, match="--device cpu"):
            select_device(name, DistInfo())
