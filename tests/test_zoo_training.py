"""Training the release families with their official recipes, and weights of one family refused for another."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.models import ZOO, build_model
from yolov6_sdk.training.augment import AugmentConfig
from yolov6_sdk.training.config import TrainConfig
from yolov6_sdk.training.datagen import generate_dataset
from yolov6_sdk.training.official_recipe import official_recipe
from yolov6_sdk.training.recipe import build_loss, load_pretrained
from yolov6_sdk.weights import load, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("shapes"), 8, 2, imgsz=(96, 128), seed=1, num_classes=3)


@pytest.mark.parametrize(
    ("name", "lr0", "momentum", "weight_decay", "atss", "scale", "mixup", "imgsz"),
    [
        ("yolov6lite-s", 0.4, 0.9, 4e-5, 4, 0.5, 0.0, 320),  # configs/yolov6_lite/yolov6_lite_s.py
        ("yolov6n6", 0.02, 0.937, 5e-4, 4, 0.5, 0.0, 1280),  # configs/yolov6n6.py
        ("yolov6l6", 0.01, 0.937, 5e-4, 4, 0.9, 0.2, 1280),  # configs/yolov6l6.py
        ("yolov6n-base", 0.01, 0.937, 5e-4, 0, 0.5, 0.0, 640),  # configs/base/yolov6n_base.py
        ("yolov6m-base", 0.01, 0.937, 5e-4, 0, 0.9, 0.1, 640),
        ("yolov6n-qa", 0.02, 0.937, 5e-4, 0, 0.5, 0.0, 640),  # configs/qarepvgg/yolov6n_qa.py
        ("yolov6m-qa", 0.01, 0.937, 5e-4, 0, 0.9, 0.1, 640),
        ("yolov6s-mbla", 0.01, 0.937, 5e-4, 0, 0.9, 0.1, 640),  # configs/mbla/yolov6s_mbla.py
        ("yolov6m", 0.01, 0.937, 5e-4, 0, 0.9, 0.1, 640),  # configs/yolov6m.py
        ("yolov6n", 0.02, 0.937, 5e-4, 0, 0.5, 0.0, 640),
    ],
)
def test_training_defaults_are_the_official_recipe_of_the_model(
    name: str, lr0: float, momentum: float, weight_decay: float, atss: int, scale: float, mixup: float, imgsz: int
) -> None:
    config = TrainConfig(model=name, data="x")
    assert (config.base_lr, config.momentum, config.weight_decay) == (lr0, momentum, weight_decay)
    assert (config.atss_warmup_epochs, config.imgsz) == (atss, imgsz)
    assert config.augment_config == AugmentConfig(scale=scale, mixup=mixup)
    assert official_recipe(ZOO[name]).lr0 == lr0


def test_given_settings_override_the_recipe() -> None:
    config = TrainConfig(model="yolov6lite-s", data="x", imgsz=256, momentum=0.8, atss_warmup_epochs=0)
    assert (config.imgsz, config.momentum, config.atss_warmup_epochs, config.weight_decay) == (256, 0.8, 0, 4e-5)


def test_lite_loss_regresses_raw_distances_on_four_levels() -> None:
    loss = build_loss(build_model("yolov6lite-s", num_classes=3))
    assert (loss.use_dfl, loss.reg_max) == (False, 0)
    assert tuple(loss.strides) == (8, 16, 32, 64) and loss.iou_type == "siou"


def test_yolov6_train_model_yolov6lite_s_trains_and_fine_tunes_at_its_size(shapes: Path, tmp_path: Path) -> None:
    from yolov6_sdk.cli.train import main

    common = ["--data", str(shapes), "--epochs", "1", "--batch", "4", "--workers", "0", "--device", "cpu",
              "--min-warmup-iters", "0", "--eval-interval", "1"]  # fmt: skip
    assert main(["--model", "yolov6lite-s", *common, "-o", str(tmp_path / "scratch")]) == 0
    scratch = load(tmp_path / "scratch" / "last.pt")
    assert scratch.name == "yolov6lite-s" and scratch.imgsz == 320
    recorded = scratch.meta["train_config"]
    assert (recorded["momentum"], recorded["weight_decay"], recorded["atss_warmup_epochs"]) == (0.9, 4e-5, 4)
    weights = str(tmp_path / "scratch" / "last.pt")
    assert main(["--model", "yolov6lite-s", "--weights", weights, *common, "-o", str(tmp_path / "tuned")]) == 0
    assert load(tmp_path / "tuned" / "best.pt").name == "yolov6lite-s"


def test_weights_of_another_family_are_one_error_naming_both(tmp_path: Path) -> None:
    lite = save_checkpoint(tmp_path / "lite.pt", build_model("yolov6lite-s", num_classes=3))
    with pytest.raises(ConfigError) as error:
        load_pretrained(build_model("yolov6n6", num_classes=3), lite)
    message = str(error.value)
    assert "yolov6lite-s" in message and "YOLOv6-Lite" in message
    assert "yolov6n6" in message and "P6" in message and str(lite) in message
    # QARepVGG and RepVGG share most tensor names; the family still tells them apart
    rep = save_checkpoint(tmp_path / "n.pt", build_model("yolov6n", num_classes=3))
    with pytest.raises(ConfigError, match=r"yolov6n, a YOLOv6 v3\.0 model, but --model yolov6n-qa"):
        load_pretrained(build_model("yolov6n-qa", num_classes=3), rep)


def test_build_with_model_of_another_family_than_the_checkpoint_names_both(tmp_path: Path) -> None:
    from yolov6_sdk.export.options import BuildOptions
    from yolov6_sdk.export.plan import plan_build

    lite = save_checkpoint(tmp_path / "lite.pt", build_model("yolov6lite-s", num_classes=3))
    with pytest.raises(ConfigError, match=r"--model yolov6n6 does not match .*lite\.pt, which holds a yolov6lite-s"):
        plan_build(BuildOptions(weights=lite, model="yolov6n6", output=tmp_path))
