"""RepOptimizer: train a plain single-3x3-conv network as if it were the multi-branch block it replaces.

Two stages (facts from the official meituan/YOLOv6 configs/repopt and yolov6/utils/RepOptimizer.py):

1. Hyper-search: a ``yolov6X-hs`` model, whose blocks are :class:`~yolov6_sdk.models.blocks.LinearAddBlock`
   (3x3, 1x1 and identity branches, each with a learnable per-output-channel scale), is trained on the data like any
   model. Its checkpoint is the *scales file*.
2. RepOpt: the ``yolov6X-repopt`` model (every block a :class:`~yolov6_sdk.models.blocks.RealVGGBlock`, one 3x3
   conv + BN + ReLU) is initialised from the scales and trained with :class:`RepOptSGD`, an SGD whose gradients
   are multiplied by scale-derived masks.

Why the masks make the plain conv train like the multi-branch block. Take the block with constant scales
``a`` (3x3 branch) and ``b`` (1x1 branch) and a trainable per-channel identity ``d`` (the official freezes the two
conv scales but not the identity one). Its single equivalent kernel is ``W' = a*W + b*pad(V) + diag(d)`` at the
centre tap. With ``g = dL/dW'`` the branch gradients are ``a*g``, ``b*g[centre]`` and ``g[i, i, centre]``, so one
SGD step moves ``W'`` by ``-lr * M * g`` with

    M = a^2 everywhere, + b^2 at the centre tap, + 1 at the centre tap of the diagonal (i == j, identity blocks).

Weight decay, momentum and Nesterov are linear in the weights, so applying them after the mask keeps the two
trainings equal step for step (the masks are per output channel ``a``, ``b`` broadcast over the kernel).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from yolov6_sdk.errors import CheckpointError, ConfigError
from yolov6_sdk.models import ZOO, ModelConfig
from yolov6_sdk.models.blocks import LinearAddBlock, RealVGGBlock
from yolov6_sdk.weights import load

LOGGER = logging.getLogger("yolov6_sdk.training.repopt")


@dataclass(frozen=True)
class BranchScales:
    """Trained scales of one hyper-search block, each [C_out]: 3x3 branch, 1x1 branch, identity (or None)."""

    conv: torch.Tensor
    one_by_one: torch.Tensor
    identity: torch.Tensor | None


def twin_config(config: ModelConfig, block: str) -> ModelConfig:
    """The zoo config equal to the RepOpt or hyper-search ``config`` but for its ``block`` ("repopt" or
    "hyper_search"): ``yolov6n-repopt`` <-> ``yolov6n-hs``. Raises :class:`ConfigError` for any other model."""
    if config.block in ("repopt", "hyper_search"):
        for twin in ZOO.values():
            if twin == replace(config, name=twin.name, block=block):
                return twin
    pairs = ", ".join(f"{c.name} / {twin_config(c, 'hyper_search').name}" for c in ZOO.values() if c.block == "repopt")
    raise ConfigError(f"{config.name} is not a RepOptimizer model; the RepOpt / hyper-search pairs are {pairs}")


def hyper_search_twin(config: ModelConfig) -> ModelConfig:
    """The hyper-search config whose scales build the RepOptimizer of ``config``."""
    return twin_config(config, "hyper_search")


def read_scales(path: str | Path, config: ModelConfig) -> dict[str, BranchScales]:
    """The per-block scales of the scales file ``path`` (ours or an official one) for the RepOpt ``config``.

    Returns ``{block name: BranchScales}`` keyed by module name, which is the same in both models. Raises
    :class:`CheckpointError` naming the file when it does not hold the hyper-search twin of ``config``.
    """
    twin = hyper_search_twin(config)
    loaded = load(path)
    if loaded.model.config.block != "hyper_search" or loaded.name != twin.name:
        raise CheckpointError(
            f"{path} holds {loaded.name}, not {twin.name}: the scales of {config.name} come from its hyper-search "
            f"model; make them with yolov6-train --hyper-search --model {twin.name}"
        )
    blocks = {n: m for n, m in loaded.model.named_modules() if isinstance(m, LinearAddBlock)}
    if any(block.bn is None for block in blocks.values()):
        raise CheckpointError(f"{path} is fused and has no scales left; pass the unfused hyper-search checkpoint")
    scales = {
        name: BranchScales(
            block.scale_conv.weight.detach().clone(),
            block.scale_1x1.weight.detach().clone(),
            None if block.scale_identity is None else block.scale_identity.weight.detach().clone(),
        )
        for name, block in blocks.items()
    }
    LOGGER.info("read the scales of %d blocks from %s (%s)", len(scales), path, loaded.name)
    return scales


def _plain_blocks(model: nn.Module, scales: dict[str, BranchScales]) -> dict[str, RealVGGBlock]:
    """The model's RealVGGBlocks by name, checked to pair one to one with ``scales``."""
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, RealVGGBlock)}
    if blocks.keys() != scales.keys():
        missing = sorted(blocks.keys() - scales.keys())[:3]
        raise CheckpointError(f"the scales do not pair with the model's blocks (no scales for {missing})")
    for name, block in blocks.items():
        if (block.bn is None) or (scales[name].identity is not None) != _has_identity(block):
            raise CheckpointError(f"the scales of {name} do not fit its block (fused, or another shape)")
    return blocks


def _has_identity(block: RealVGGBlock) -> bool:
    conv = block.conv
    return conv.in_channels == conv.out_channels and conv.stride == (1, 1)


@torch.no_grad()
def initialise_from_scales(model: nn.Module, scales: dict[str, BranchScales]) -> None:
    """Set every 3x3 kernel to the merged kernel of a freshly initialised multi-branch block with these scales.

    ``W <- a*W + b*pad(V) + diag(s_id)`` at the centre tap, with ``W`` the kernel's own initial value and ``V`` a
    fresh default-initialised 1x1 kernel (the official initialisation when training from scratch).
    """
    for name, block in _plain_blocks(model, scales).items():
        weight, found = block.conv.weight, scales[name]
        one_by_one = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=False, device=weight.device).weight
        kernel = weight * found.conv.to(weight).view(-1, 1, 1, 1)
        kernel += nn.functional.pad(one_by_one * found.one_by_one.to(weight).view(-1, 1, 1, 1), [1, 1, 1, 1])
        if found.identity is not None:
            channels = torch.arange(weight.shape[0], device=weight.device)
            kernel[channels, channels, 1, 1] += found.identity.to(weight)
        weight.copy_(kernel)


def gradient_masks(model: nn.Module, scales: dict[str, BranchScales]) -> dict[nn.Parameter, torch.Tensor]:
    """``{3x3 kernel: gradient multiplier}``, each mask shaped like its kernel [C_out, C_in, 3, 3] (see module doc)."""
    masks = {}
    for name, block in _plain_blocks(model, scales).items():
        weight, found = block.conv.weight, scales[name]
        mask = (found.conv.to(weight) ** 2).view(-1, 1, 1, 1).expand_as(weight).clone()
        mask[:, :, 1, 1] += (found.one_by_one.to(weight) ** 2).view(-1, 1)
        if found.identity is not None:
            channels = torch.arange(weight.shape[0], device=weight.device)
            mask[channels, channels, 1, 1] += 1.0
        masks[weight] = mask
    return masks


class RepOptSGD(torch.optim.SGD):
    """SGD that multiplies the gradient of each masked parameter by its mask before the usual update.

    Weight decay, momentum and Nesterov then act on the masked gradient, as the official RepVGGOptimizer does.
    ``masks`` maps parameters (they must also be in ``params``) to tensors of their shape.
    """

    def __init__(self, params, masks: dict[nn.Parameter, torch.Tensor], **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.masks = masks

    @torch.no_grad()
    def step(self, closure=None):
        for param, mask in self.masks.items():
            if param.grad is not None:
                param.grad.mul_(mask)
        return super().step(closure)


def prepare_repopt(
    model: nn.Module, path: str | Path | None, initialise: bool
) -> dict[nn.Parameter, torch.Tensor] | None:
    """Read the scales file ``path`` for ``model`` (a ``yolov6X-repopt``), initialise its kernels from the scales
    when ``initialise`` (training from scratch, as the official does), and return the gradient masks of
    :class:`RepOptSGD`. Without ``path`` there is no RepOptimizer: returns None (and warns for a RepOpt model)."""
    config = getattr(model, "config", None)
    if path is None:
        if config is not None and config.block == "repopt":
            LOGGER.warning("%s without a scales file trains as a plain VGG network (no RepOptimizer)", config.name)
        return None
    if config is None or config.block != "repopt":
        name = getattr(config, "name", type(model).__name__)
        raise ConfigError(f"--repopt-scales trains a RepOpt model (yolov6n-repopt, ...), not {name}")
    scales = read_scales(path, config)
    try:
        masks = gradient_masks(model, scales)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if initialise:
        initialise_from_scales(model, scales)
    return masks


__all__ = [
    "BranchScales",
    "RepOptSGD",
    "gradient_masks",
    "hyper_search_twin",
    "initialise_from_scales",
    "prepare_repopt",
    "read_scales",
    "twin_config",
]
