"""QARepVGG: the quantisation-aware RepVGG blocks (official ``QARepVGGBlock`` and ``QARepVGGBlockV2``).

Unlike :class:`~yolov6_sdk.models.blocks.RepVGGBlock`, only the 3x3 branch has its own BatchNorm: the 1x1 branch is
a bare conv, the identity branch has no BN, and one BatchNorm follows the sum. V2 adds a 3x3 average-pooling branch.
V1 and V2 have the same tensors (average pooling has none), so a release file's pickled class name is the only
thing telling them apart; the class names here are the official ones so that a model's structure signature
(:mod:`yolov6_sdk.models.signature`) says which it is.

:meth:`fuse` merges the branches into one 3x3 kernel (1x1 padded, identity and pooling written as kernels) and then
folds the post-sum BatchNorm into it as well. The official deploy conversion keeps that BatchNorm after the merged
conv; folding it too leaves no BatchNorm and moves the output by float rounding only.
"""

from __future__ import annotations

import torch
from torch import nn

from yolov6_sdk.models.blocks import ConvBN, conv_with_weights, fold_batchnorm


class QARepVGGBlock(nn.Module):
    """QARepVGG V1: ReLU(BN(BN(3x3(x)) + 1x1(x) [+ x])), the identity branch only when in == out and stride 1.

    Keys: ``rbr_dense.conv.weight``, ``rbr_dense.bn.*``, ``rbr_1x1.weight``, ``bn.*`` (after :meth:`fuse`, or with
    ``deploy=True``: ``rbr_reparam.weight``, ``rbr_reparam.bias``). Shapes: [B, C_in, H, W] -> [B, C_out, H/s, W/s].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, deploy: bool = False) -> None:
        super().__init__()
        self.nonlinearity = nn.ReLU(inplace=True)
        self.se = nn.Identity()
        if deploy:
            self.rbr_reparam = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=True)
            self.bn = None
            return
        self.same_shape = in_channels == out_channels and stride == 1
        self.rbr_dense = ConvBN(in_channels, out_channels, 3, stride, act=None)
        self.rbr_1x1 = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)
        self.rbr_identity = nn.Identity() if self.same_shape else None
        self.bn = nn.BatchNorm2d(out_channels)

    def branch_sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of the branches before the post-BN: [B, C_out, H/s, W/s]."""
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        return out + self.rbr_identity(x) if self.rbr_identity is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "rbr_reparam"):
            return self.nonlinearity(self.se(self.rbr_reparam(x)))
        return self.nonlinearity(self.bn(self.se(self.branch_sum(x))))

    def extra_kernel(self) -> torch.Tensor | None:
        """Kernel [C, C, 3, 3] of the parameter-free branches besides the identity (None for V1)."""
        return None

    def merged_kernel_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(kernel [C_out, C_in, 3, 3], bias [C_out]) of one conv equal to :meth:`branch_sum`."""
        kernel, bias = self.rbr_dense.kernel_and_bias()
        kernel = kernel + nn.functional.pad(self.rbr_1x1.weight, [1, 1, 1, 1])
        if self.same_shape:
            kernel = kernel + _identity_kernel(kernel)
        extra = self.extra_kernel()
        return (kernel if extra is None else kernel + extra), bias

    @torch.no_grad()
    def fuse(self) -> None:
        if hasattr(self, "rbr_reparam"):
            return
        kernel, bias = fold_batchnorm(*self.merged_kernel_and_bias(), self.bn)
        self.rbr_reparam = conv_with_weights(self.rbr_dense.conv, kernel, bias)
        self.bn = None
        for branch in ("rbr_dense", "rbr_1x1", "rbr_identity", "rbr_avg"):
            if hasattr(self, branch):
                delattr(self, branch)


class QARepVGGBlockV2(QARepVGGBlock):
    """QARepVGG V2 (the official HEAD block): V1 plus a 3x3 average pooling (stride 1, padding 1, zero padding
    counted) when in == out and stride 1: ReLU(BN(BN(3x3(x)) + 1x1(x) + x + avgpool3(x))). Same keys as V1."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, deploy: bool = False) -> None:
        super().__init__(in_channels, out_channels, stride, deploy)
        if not deploy:
            self.rbr_avg = nn.AvgPool2d(3, stride, 1) if self.same_shape else None

    def branch_sum(self, x: torch.Tensor) -> torch.Tensor:
        out = super().branch_sum(x)
        return out + self.rbr_avg(x) if self.rbr_avg is not None else out

    def extra_kernel(self) -> torch.Tensor | None:
        """The average pooling as a kernel: 1/9 at every tap of each channel's own input."""
        if self.rbr_avg is None:
            return None
        weight = self.rbr_1x1.weight
        channels = weight.shape[0]
        kernel = torch.zeros(channels, channels, 3, 3, device=weight.device, dtype=weight.dtype)
        kernel[torch.arange(channels), torch.arange(channels)] = 1.0 / 9.0
        return kernel


def _identity_kernel(like: torch.Tensor) -> torch.Tensor:
    """The identity as a 3x3 kernel shaped like ``like`` [C, C, 3, 3]: 1 at the centre tap of each own input."""
    channels = like.shape[0]
    kernel = torch.zeros_like(like)
    kernel[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
    return kernel
