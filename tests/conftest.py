"""Shared test helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn


def randomize_model(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BN layers non-trivial statistics and the zero-initialised predictors random weights.

    A freshly built model has identity BNs and all-zero predictor weights, which would make equivalence tests
    pass trivially.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                uniform(module.running_mean, -0.5, 0.5)
                uniform(module.running_var, 0.5, 2.0)
                uniform(module.weight, 0.5, 1.5)
                uniform(module.bias, -0.2, 0.2)
        head = getattr(model, "detect", None)
        if head is not None:
            for name, p in head.named_parameters():
                if "preds" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for a module of tiny models: on a shared 2-core machine more threads only
    contend, and forked children start without thread pools."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)
