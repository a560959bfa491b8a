"""The settings of a training run: :class:`TrainConfig`, defaults the official recipe's (meituan/YOLOv6
tools/train.py and configs/*.py), checked on construction; :class:`~yolov6_sdk.training.trainer.Trainer` runs it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.evaluate import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET
from yolov6_sdk.models import get_config

from .augment import AugmentConfig
from .cwd import CWD_TEMPERATURE, CWD_WEIGHT
from .official_recipe import official_recipe
from .qat import QAT_LR0, QAT_TARGETS

OPTIMIZERS = ("sgd", "adamw")
# AdamW's lr0 before batch scaling: 0.002 at batch 8, the AdamW rate that short detector runs commonly use
ADAMW_LR0 = 0.008


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; defaults are the official ones (tools/train.py and configs/*.py).

    Settings left None take the model's official value (:func:`~yolov6_sdk.training.official_recipe.official_recipe`):
    ``imgsz`` (1280 for P6, 320 for Lite, 640 otherwise), ``momentum``, ``weight_decay``, ``atss_warmup_epochs``
    and ``lr0`` (0.02 for yolov6n, 0.01 for most others, 0.4 for Lite); like the official, ``lr0`` is then scaled
    by ``per-device batch / bs_per_gpu`` and ``weight_decay`` by ``batch * accumulate / 64``.
    Warm-up lasts ``max(round(warmup_epochs * iterations per epoch), min_warmup_iters)`` iterations (official
    minimum 1000; lower it for short runs). ``close_mosaic_epochs`` None means ``min(15, epochs // 4)``.
    ``augment`` None is the official recipe of the model (zoom 0.9 and mixup 0.1 for the M/L sizes and MBLA). ``iou_type`` None is the
    model's. Evaluation runs every ``eval_interval`` epochs, every ``min(3, eval_interval)`` in the last
    ``heavy_eval_range`` epochs, and after the last epoch. ``ema_tau`` is the EMA ramp in optimiser steps.
    """

    model: str = "yolov6n"
    data: str = ""
    epochs: int = 400
    batch: int = 32
    imgsz: int | None = None
    workers: int = 8
    device: str = "auto"
    out: str = "runs/train"
    weights: str | None = None
    seed: int = 0
    optimizer: str = "sgd"
    lr0: float | None = None
    lrf: float = 0.01
    momentum: float | None = None
    weight_decay: float | None = None
    nominal_batch: int = 64
    bs_per_gpu: int = 32
    warmup_epochs: float = 3.0
    min_warmup_iters: int = 1000
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    iou_type: str | None = None
    atss_warmup_epochs: int | None = None
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0
    amp: bool = True
    close_mosaic_epochs: int | None = None
    augment: AugmentConfig | None = None
    eval_interval: int = 20
    heavy_eval_range: int = 50
    eval_conf: float = EVAL_CONF
    eval_iou: float = EVAL_IOU
    eval_max_det: int = EVAL_MAX_DET
    distill: bool = False
    teacher: str | None = None
    temperature: float = 20.0
    repopt_scales: str | None = None
    qat: bool = False
    qat_target: str = "tensorrt"
    qat_calib: str | None = None
    cwd_weight: float = CWD_WEIGHT
    cwd_temperature: float = CWD_TEMPERATURE

    def __post_init__(self) -> None:
        model = get_config(self.model)
        recipe = official_recipe(model)
        for name in ("imgsz", "momentum", "weight_decay", "atss_warmup_epochs"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(recipe, name))
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"TrainConfig.optimizer={self.optimizer!r}: expected one of {OPTIMIZERS}")
        positive = ("epochs", "batch", "nominal_batch", "bs_per_gpu", "eval_interval", "eval_max_det")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name}={getattr(self, name)!r}: expected an integer >= 1")
        try:
            model.check_imgsz(self.imgsz)
        except ConfigError as exc:
            raise ConfigError(f"TrainConfig.imgsz={self.imgsz!r}: {exc}") from None
        if not self.data:
            raise ConfigError("TrainConfig.data is empty: pass a COCO-layout folder or a YOLO data.yaml")
        if self.repopt_scales and (get_config(self.model).block != "repopt" or self.optimizer != "sgd"):
            raise ConfigError(f"repopt_scales trains a RepOpt model with SGD (e.g. yolov6n-repopt), not "
                              f"{self.model} with {self.optimizer}")  # fmt: skip
        if self.distill and not self.teacher:
            raise ConfigError("distill=True needs a teacher checkpoint (--teacher PATH)")
        if self.qat and not self.teacher:
            raise ConfigError("qat=True fine-tunes and distils from an fp32 checkpoint: pass it with --teacher PATH")
        if self.qat_target not in QAT_TARGETS:
            raise ConfigError(f"TrainConfig.qat_target={self.qat_target!r}: expected one of {QAT_TARGETS}")
        for name in ("lrf", "momentum", "weight_decay", "warmup_epochs", "min_warmup_iters", "ema_tau", "temperature"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name}={getattr(self, name)!r}: expected a value >= 0")

    @property
    def base_lr(self) -> float:
        if self.lr0 is not None:
            return self.lr0
        if self.qat:
            return QAT_LR0
        if self.optimizer == "adamw":
            return ADAMW_LR0
        return official_recipe(get_config(self.model)).lr0

    @property
    def mosaic_off_epochs(self) -> int:
        return self.close_mosaic_epochs if self.close_mosaic_epochs is not None else min(15, self.epochs // 4)

    @property
    def augment_config(self) -> AugmentConfig:
        if self.augment is not None:
            return self.augment
        return official_recipe(get_config(self.model)).augment

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (the checkpoint ``meta`` and the resume state hold it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training settings {unknown}; known: {sorted(known)}")
        values = dict(values)
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig(**values["augment"])
        return cls(**values)


__all__ = ["ADAMW_LR0", "OPTIMIZERS", "TrainConfig"]
