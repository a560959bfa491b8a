"""Channel-wise distillation (CWD): match each channel's spatial distribution of a student to its teacher's.

Shu et al., *Channel-wise Knowledge Distillation for Dense Prediction* (ICCV 2021), the feature term of the
official YOLOv6 quantisation-aware training (neck outputs, temperature 1, weight 10). For one level with
features ``[B, C, H, W]``, every channel of every image becomes a distribution over its ``H * W`` positions,
``softmax(x / tau)``; the loss is ``KL(teacher || student)`` of those distributions, times ``tau ** 2`` (the
gradient scale of a softened softmax), averaged over the ``B * C`` channels. Levels are summed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from yolov6_sdk.errors import ConfigError

CWD_TEMPERATURE = 1.0
CWD_WEIGHT = 10.0


def channel_wise_divergence(student: torch.Tensor, teacher: torch.Tensor, tau: float = CWD_TEMPERATURE) -> torch.Tensor:
    """``KL(softmax(t / tau) || softmax(s / tau)) * tau**2`` over each channel's ``H * W`` positions, averaged
    over batch and channels.

    Args:
        student: [B, C, H, W] student features (gradients flow into them).
        teacher: [B, C, H, W] teacher features (treated as constants).
        tau: softmax temperature, > 0.

    Returns:
        scalar tensor (nats); 0 when the two are equal, > 0 otherwise.
    """
    if student.shape != teacher.shape or student.dim() != 4:
        raise ConfigError(f"CWD compares [B, C, H, W] features of one shape, got {tuple(student.shape)} (student) "
                          f"and {tuple(teacher.shape)} (teacher)")  # fmt: skip
    if tau <= 0:
        raise ConfigError(f"the CWD temperature must be > 0, got {tau}")
    log_s = F.log_softmax(student.float().flatten(2) / tau, dim=-1)  # [B, C, H*W]
    log_t = F.log_softmax(teacher.detach().float().flatten(2) / tau, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)  # [B, C]
    return kl.mean() * tau**2


def cwd_loss(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], tau: float = CWD_TEMPERATURE
) -> torch.Tensor:
    """:func:`channel_wise_divergence` summed over the levels of two feature pyramids (P3, P4, P5 of the neck)."""
    if len(student) != len(teacher) or not student:
        raise ConfigError(f"CWD needs the same number of levels from student and teacher, got {len(student)} "
                          f"and {len(teacher)}")  # fmt: skip
    return torch.stack([channel_wise_divergence(s, t, tau) for s, t in zip(student, teacher, strict=True)]).sum()


__all__ = ["CWD_TEMPERATURE", "CWD_WEIGHT", "channel_wise_divergence", "cwd_loss"]
