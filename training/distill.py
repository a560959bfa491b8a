"""Self-distillation teacher: loading, checks and its outputs for :class:`~training.losses.Distillation`.

The official recipe (meituan/YOLOv6, ``--distill``) trains a student against a teacher of the same config that
was trained first; the KD terms act on class scores and DFL bin distributions with temperature 20, decayed from
1.0 to 0.01 by a cosine over the epochs (:func:`training.losses.distill_decay`).

One deliberate difference: the official keeps the teacher in training mode, so its BatchNorm layers normalise
with each batch's statistics. Here the teacher's BatchNorm layers use their running statistics (eval mode), the
teacher the checkpoint describes. The teacher module itself stays in training mode only so that its head returns
the raw training outputs (class scores and the DFL branch) instead of decoded boxes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.models import YOLOv6
from yolov6_sdk.weights import load

from .losses import DEFAULT_DISTILL_WEIGHTS, Distillation

LOGGER = logging.getLogger("yolov6_sdk.training.distill")

DISTILL_WEIGHTS: dict[str, dict[str, float]] = {
    "yolov6m": {"class": 0.8, "dfl": 1.0},
    "yolov6l": {"class": 2.0, "dfl": 1.0},
}
"""Official ``distill_weight`` of the student configs that differ from the default 1.0 / 1.0 (n, s)."""


def distill_weights(student: str) -> dict[str, float]:
    """Scale of the class and DFL KD terms for the student config ``student``."""
    return dict(DISTILL_WEIGHTS.get(student, DEFAULT_DISTILL_WEIGHTS))


def prepare_teacher(teacher: nn.Module) -> nn.Module:
    """Freeze ``teacher``: no gradients, BatchNorm on running statistics, module in training mode (raw outputs)."""
    teacher.train()
    for module in teacher.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def check_teacher(teacher: YOLOv6, student: YOLOv6, source: str = "teacher") -> None:
    """Raise :class:`ConfigError` unless ``teacher``'s outputs line up with ``student``'s for the KD terms."""
    if teacher.num_classes != student.num_classes:
        raise ConfigError(
            f"{source} has {teacher.num_classes} classes but the student has {student.num_classes}; "
            "distil from a teacher trained on the same dataset"
        )
    if tuple(teacher.strides) != tuple(student.strides):
        raise ConfigError(f"{source} has strides {teacher.strides}, the student {student.strides}; they must match")
    if not (teacher.config.use_dfl or teacher.config.distill_head):
        raise ConfigError(
            f"{source} ({teacher.config.name}) has no DFL branch to distil from; use a teacher with DFL "
            "(yolov6m/l, or yolov6n/s trained by yolov6-train, which trains their reg_preds_dist branch)"
        )


def load_teacher(path: str | Path, student: YOLOv6, device: torch.device | str = "cpu") -> YOLOv6:
    """Read a teacher checkpoint (ours or an official release), check it against ``student`` and freeze it."""
    loaded = load(path, device=device)
    teacher = loaded.model
    check_teacher(teacher, student, str(path))
    LOGGER.info("teacher %s (%s, %d classes) from %s", loaded.name, loaded.source, teacher.num_classes, path)
    return prepare_teacher(teacher)


@torch.no_grad()
def teacher_targets(
    teacher: nn.Module,
    images: torch.Tensor,
    max_epochs: int,
    weights: dict[str, float] | None = None,
    temperature: float = 20.0,
) -> Distillation:
    """Run ``teacher`` on ``images`` (float [B, 3, H, W] RGB 0..1) and package its outputs for the loss.

    The teacher's ``reg_dist`` is its 68-channel DFL output (``reg_preds_dist`` of n/s heads, ``reg_preds``
    of m/l heads).
    """
    out = teacher(images)
    return Distillation(
        out.cls_scores.float(),
        out.reg_dist.float(),
        max_epochs,
        weights if weights is not None else DEFAULT_DISTILL_WEIGHTS,
        temperature,
    )


__all__ = ["DISTILL_WEIGHTS", "check_teacher", "distill_weights", "load_teacher", "prepare_teacher", "teacher_targets"]
