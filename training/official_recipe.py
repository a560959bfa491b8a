"""The official per-model training hyper-parameters (meituan/YOLOv6 ``configs/**/*.py``: solver, data_aug and the
head's ``atss_warmup_epoch``), for every zoo family; :class:`~yolov6_sdk.training.config.TrainConfig` takes its
defaults from here.

Facts of the official configs: the v3.0 N (and its P6, QARepVGG and paper-line twins) starts at lr 0.02, the other
SGD models at 0.01; the M and L sizes of every family, and all MBLA models, zoom by up to 0.9 and mix up 10 % of
their images (L6: 20 %), the others zoom by 0.5 without mixup; P6 and Lite assign with ATSS for their first 4
epochs; Lite trains with lr 0.4, momentum 0.9 and weight decay 4e-5. The training size is the model's own
(:attr:`~yolov6_sdk.models.zoo.ModelConfig.imgsz`: 1280 for P6, 320 for Lite, 640 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

from yolov6_sdk.models import ModelConfig

from .augment import AugmentConfig


@dataclass(frozen=True)
class OfficialRecipe:
    """One model's official settings: initial lr (before batch scaling), SGD momentum, weight decay (before batch
    scaling), epochs assigned by ATSS before TAL, the augmentation, and the training size in pixels."""

    lr0: float
    momentum: float
    weight_decay: float
    atss_warmup_epochs: int
    augment: AugmentConfig
    imgsz: int


def official_recipe(config: ModelConfig) -> OfficialRecipe:
    """The official training settings of the zoo config ``config``."""
    if config.lite:
        return OfficialRecipe(0.4, 0.9, 4e-5, 4, AugmentConfig(), config.imgsz)
    size = config.name[len("yolov6")]  # n, t, s, m, l or x
    lr0 = 0.02 if size == "n" and config.block != "conv_relu" else 0.01
    if size in "ml" or config.mbla:
        augment = AugmentConfig(scale=0.9, mixup=0.2 if config.name == "yolov6l6" else 0.1)
    else:
        augment = AugmentConfig()
    return OfficialRecipe(lr0, 0.937, 5e-4, 4 if config.p6 else 0, augment, config.imgsz)


__all__ = ["OfficialRecipe", "official_recipe"]
