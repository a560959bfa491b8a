"""What makes CPU training fast keeps it exact: bfloat16 only where the CPU has it, the fused EMA update, and
the decoded-image cache."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.labels import load_coco
from yolov6_sdk.models import build_model
from yolov6_sdk.training import precision
from yolov6_sdk.training.augment import AugmentConfig
from yolov6_sdk.training.datagen import generate_dataset
from yolov6_sdk.training.datasets import TrainDataset
from yolov6_sdk.training.ema import ModelEMA
from yolov6_sdk.training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("shapes"), 4, 1, imgsz=(96, 160), seed=2, num_classes=3)


def _trainer(data: Path, out: Path, amp: bool = True) -> Trainer:
    config = TrainConfig(model="yolov6n", data=str(data), epochs=1, batch=2, imgsz=96, workers=0, device="cpu",
                         out=str(out), min_warmup_iters=0, warmup_epochs=1.0, amp=amp)  # fmt: skip
    return Trainer(config)


def test_cpu_without_native_bf16_trains_in_float32(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    trainer = _trainer(shapes, tmp_path / "run")
    assert trainer.precision.dtype is None and trainer.precision.name == "float32"
    assert "AVX512-BF16" in trainer.precision.reason
    trainer.fit()  # the whole epoch runs on the fallback path


def test_cpu_with_native_bf16_autocasts_the_model_and_keeps_the_loss_in_float32(shapes: Path, tmp_path: Path,
                                                                                 monkeypatch) -> None:  # fmt: skip
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    trainer = _trainer(shapes, tmp_path / "run")
    assert trainer.precision.dtype is torch.bfloat16 and not trainer.precision.scaler
    seen = {}
    loss_fn = trainer.loss_fn

    def spy(cls_scores, reg_dist, *args, **kwargs):
        seen["dtypes"] = (cls_scores.dtype, reg_dist.dtype)
        loss, parts = loss_fn(cls_scores, reg_dist, *args, **kwargs)
        seen["loss"] = loss.dtype
        return loss, parts

    trainer.loss_fn = spy
    with trainer.precision.autocast():
        inner = trainer.model.backbone.stem(torch.rand(1, 3, 32, 32))
    assert inner.dtype == torch.bfloat16  # convolutions run in bfloat16 under the step's autocast
    images, targets, _ = next(iter(trainer.loader))
    trainer._train_step(0, 0, images, targets)
    assert seen == {"dtypes": (torch.float32, torch.float32), "loss": torch.float32}


def test_no_amp_is_float32_everywhere() -> None:
    for device in ("cpu", "cuda"):
        chosen = precision.choose_precision(torch.device(device), amp=False)
        assert chosen.dtype is None and not chosen.scaler and "--no-amp" in chosen.reason


def test_fused_ema_update_equals_the_formula() -> None:
    torch.manual_seed(0)
    model = randomize_model(build_model("yolov6n", num_classes=3))
    ema = ModelEMA(model, decay=0.99, tau=10.0)
    before = copy.deepcopy(ema.ema.state_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # the optimiser changes the weights in place
    ema.update(model)
    d = ema.decay(1)
    current = model.state_dict()
    for key, value in ema.ema.state_dict().items():
        if value.dtype.is_floating_point:
            expected = before[key] * d + current[key] * (1 - d)
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=key)
        else:
            assert torch.equal(value, before[key]), key
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    ema.update(model)  # a second update sees the in-place change
    key = next(k for k, v in model.state_dict().items() if v.dtype.is_floating_point)
    assert not torch.equal(ema.ema.state_dict()[key], before[key])


def test_image_cache_gives_the_same_samples_as_reading_from_disk(shapes: Path) -> None:
    data = load_coco(shapes, "train")
    augment = AugmentConfig(mosaic=0.5, scale=0.3)
    cached = TrainDataset(data, 128, augment, seed=4)
    uncached = TrainDataset(data, 128, augment, seed=4, cache_bytes=0)
    for epoch in (0, 1):
        cached.set_epoch(epoch), uncached.set_epoch(epoch)
        for i in range(len(data)):
            a, b = cached[i], uncached[i]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(cached._cache) == len(data) and not uncached._cache
    small = TrainDataset(data, 128, augment, cache_bytes=128 * 128 * 3 + 1)  # room for one image at most
    for i in range(len(data)):
        small[i]
    assert len(small._cache) <= 1
