"""The pieces of the YOLOv6 training recipe the trainer assembles: optimiser, learning-rate schedule, loss, and
the loading of pretrained weights for fine-tuning. Facts from the official meituan/YOLOv6 engine and its
optimizer/loss builders (parameter groups, cosine schedule, DFL only where the head has a DFL branch).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.models import YOLOv6
from yolov6_sdk.models.zoo import FAMILIES
from yolov6_sdk.weights import load

from .losses import YOLOv6Loss
from .repopt import RepOptSGD

LOGGER = logging.getLogger("yolov6_sdk.training.recipe")


def lr_factor(epoch: float, epochs: int, lrf: float) -> float:
    """Cosine decay of the learning rate: 1.0 at epoch 0 to ``lrf`` at ``epochs``."""
    return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1


def build_optimizer(
    model: nn.Module,
    lr: float,
    momentum: float,
    weight_decay: float,
    kind: str = "sgd",
    grad_masks: dict[nn.Parameter, torch.Tensor] | None = None,
) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW with the official groups: [BatchNorm weights, other weights (decayed), biases].

    ``momentum`` is SGD's momentum or AdamW's first beta (the second is 0.999). Parameters that are neither a
    module's ``weight`` nor its ``bias`` (BottleRep ``alpha``) and frozen ones are left out, as the official
    leaves them out. Each group records its ``initial_lr``. ``grad_masks`` (SGD only) makes it the RepOptimizer
    :class:`~yolov6_sdk.training.repopt.RepOptSGD` with these gradient multipliers.
    """
    bn_weights, weights, biases = [], [], []
    for module in model.modules():
        bias, weight = getattr(module, "bias", None), getattr(module, "weight", None)
        if isinstance(bias, nn.Parameter) and bias.requires_grad:
            biases.append(bias)
        if isinstance(weight, nn.Parameter) and weight.requires_grad:
            (bn_weights if isinstance(module, nn.modules.batchnorm._BatchNorm) else weights).append(weight)
    if kind == "adamw" and grad_masks is not None:
        raise ConfigError("a RepOptimizer is an SGD: train with --repopt-scales and --optimizer sgd")
    if kind == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW([{"params": bn_weights}], lr=lr, betas=(momentum, 0.999),
                                                             weight_decay=0.0, foreach=True)  # fmt: skip
    elif grad_masks is not None:
        optimizer = RepOptSGD(bn_weights, grad_masks, lr=lr, momentum=momentum, nesterov=True, foreach=True)
    else:
        # groups as dicts: a fused model (quantisation-aware training) has no BatchNorm weights
        optimizer = torch.optim.SGD([{"params": bn_weights}], lr=lr, momentum=momentum, nesterov=True, foreach=True)
    optimizer.add_param_group({"params": weights, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": biases})
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    return optimizer


def build_loss(model: YOLOv6, iou_type: str | None = None, atss_warmup_epochs: int = 0) -> YOLOv6Loss:
    """The loss the trainer uses: DFL (reg_max 16) on the DFL branch when the head has one (v3 n/s heads train
    ``reg_preds_dist`` plus an IoU term on ``reg_preds``), raw ltrb regression otherwise."""
    cfg = model.config
    use_dfl = cfg.use_dfl or cfg.distill_head
    return YOLOv6Loss(
        model.num_classes,
        model.strides,
        reg_max=cfg.head_reg_max if use_dfl else 0,
        use_dfl=use_dfl,
        iou_type=iou_type or cfg.iou_type,
        warmup_epochs=atss_warmup_epochs,
    )


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Copy the tensors of checkpoint ``path`` (ours or an official release) whose name and shape match.

    For fine-tuning on another number of classes: the class predictors are skipped and keep their initial
    values. Returns ``{"loaded": [...], "skipped": [...]}`` (skipped: keys of ``model`` left as initialised).
    Raises :class:`ConfigError` when fewer than half of the tensors fit (another model size).
    """
    loaded = load(path)
    if loaded.meta.get("fused"):
        raise ConfigError(f"{path} is fused (reparameterised) and cannot be trained; use the unfused checkpoint")
    _check_same_family(path, loaded.model, model)
    source, target = loaded.model.state_dict(), model.state_dict()
    matched = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if len(matched) < len(target) / 2:
        raise ConfigError(
            f"{path} holds {loaded.name}: only {len(matched)} of {len(target)} tensors fit this model; "
            f"train with --model {loaded.name}"
        )
    model.load_state_dict(matched, strict=False)
    skipped = sorted(set(target) - set(matched))
    LOGGER.info("loaded %d/%d tensors from %s (%s)", len(matched), len(target), path, loaded.name)
    if skipped:
        LOGGER.warning("kept the initial values of %d tensors that %s does not fit: %s", len(skipped), path,
                       ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))  # fmt: skip
    return {"loaded": sorted(matched), "skipped": skipped}


def _check_same_family(path: str | Path, source: YOLOv6, target: nn.Module) -> None:
    """Refuse weights of another release family (P6, Lite, base, MBLA, QARepVGG, ...): even where some tensor names
    coincide, they belong to other blocks."""
    config = getattr(target, "config", None)
    if config is None or source.config.family == config.family:
        return
    raise ConfigError(
        f"{path} holds {source.config.name}, a {FAMILIES[source.config.family]} model, but --model {config.name} "
        f"is a {FAMILIES[config.family]} model: weights of one family do not fit another. Train with --model "
        f"{source.config.name}, or pass {config.name} weights"
    )


__all__ = ["build_loss", "build_optimizer", "load_pretrained", "lr_factor"]
