"""Building blocks of YOLOv6 and their reparameterisation.

Every block that can be simplified for deployment owns a ``fuse()`` method (in place, idempotent, deletes the
training-only branches). BN folding is the single pure function :func:`fold_batchnorm`.

Attribute names are frozen: they reproduce the official state_dict layout (meituan/YOLOv6). Two layouts exist:
the v3.0 release line wraps every conv+BN in a ``.block`` attribute (``x.block.conv.weight``), the paper line
(release 0.2.0) keeps them flat (``x.conv.weight``). :class:`ConvBN` is the flat form, :class:`WrappedConvBN` the
wrapped one; a :class:`ConvFactory` decides which a model uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS: dict[str | None, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    None: nn.Identity,
}


def fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an inference-mode BatchNorm into the preceding conv.

    Args:
        weight: conv kernel [C_out, C_in/groups, kH, kW].
        bias: conv bias [C_out] or None.
        bn: the BatchNorm2d that follows the conv; its own ``eps`` is used.

    Returns:
        (kernel, bias) of one conv equal to ``bn(conv(x))``.
    """
    # Computed in float64 so that folding adds no rounding of its own.
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    conv_bias = bias.double() if bias is not None else torch.zeros_like(scale)
    kernel = weight.double() * scale.reshape(-1, 1, 1, 1)
    fused_bias = bn.bias.double() + (conv_bias - bn.running_mean.double()) * scale
    return kernel.to(weight.dtype), fused_bias.to(weight.dtype)


def conv_with_weights(like: nn.Conv2d, kernel: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A biased Conv2d with ``like``'s geometry holding ``kernel`` and ``bias`` (built without a wasted init)."""
    conv = nn.Conv2d(
        like.in_channels,
        like.out_channels,
        like.kernel_size,
        like.stride,
        like.padding,
        groups=like.groups,
        bias=True,
        device="meta",
    )
    conv.weight = nn.Parameter(kernel.detach().clone(), requires_grad=like.weight.requires_grad)
    conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=like.weight.requires_grad)
    return conv


class ConvBN(nn.Module):
    """Conv2d -> BatchNorm2d -> activation, flat layout (``conv``, ``bn``).

    Shapes: [B, C_in, H, W] -> [B, C_out, H/stride, W/stride]; ``groups`` = C_in = C_out makes it depthwise. After
    :meth:`fuse` the BN is folded into ``conv`` (which then has a bias) and ``bn`` is None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: str | None = "relu",
        bias: bool = False,
        padding: int | None = None,
        deploy: bool = False,
        groups: int = 1,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias or deploy
        )
        self.bn = None if deploy else nn.BatchNorm2d(out_channels)
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    def kernel_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (kernel, bias) of the equivalent single conv, whether or not the BN is folded yet."""
        if self.bn is None:
            return self.conv.weight, self.conv.bias
        return fold_batchnorm(self.conv.weight, self.conv.bias, self.bn)

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn is None:
            return
        kernel, bias = self.kernel_and_bias()
        self.conv, self.bn = conv_with_weights(self.conv, kernel, bias), None


class WrappedConvBN(nn.Module):
    """:class:`ConvBN` held under ``block`` (the v3.0 ConvBNReLU / ConvBNSiLU layout). Same shapes as ConvBN."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.block = ConvBN(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


@dataclass(frozen=True)
class ConvFactory:
    """Makes the conv+BN modules of one model: which layout, and whether they are built fused."""

    wrapped: bool
    deploy: bool = False

    def __call__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        act: str | None = "relu",
    ) -> nn.Module:
        cls = WrappedConvBN if self.wrapped else ConvBN
        return cls(in_channels, out_channels, kernel_size, stride, act=act, deploy=self.deploy)


class RepVGGBlock(nn.Module):
    """RepVGG block: ReLU(BN(3x3) + BN(1x1) [+ BN(identity)]), fused into one 3x3 conv for deployment.

    The identity branch exists only when in == out and stride == 1. Shapes: [B, C_in, H, W] -> [B, C_out, H/s, W/s].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, deploy: bool = False) -> None:
        super().__init__()
        self.nonlinearity = nn.ReLU(inplace=True)
        self.se = nn.Identity()
        if deploy:
            self.rbr_reparam = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=True)
            return
        has_identity = in_channels == out_channels and stride == 1
        self.rbr_identity = nn.BatchNorm2d(in_channels) if has_identity else None
        self.rbr_dense = ConvBN(in_channels, out_channels, 3, stride, act=None)
        self.rbr_1x1 = ConvBN(in_channels, out_channels, 1, stride, act=None, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "rbr_reparam"):
            return self.nonlinearity(self.se(self.rbr_reparam(x)))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(self.se(out))

    def _identity_kernel_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        channels = self.rbr_dense.conv.in_channels
        weight = self.rbr_identity.weight
        kernel = torch.zeros(channels, channels, 3, 3, device=weight.device, dtype=weight.dtype)
        kernel[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
        return fold_batchnorm(kernel, None, self.rbr_identity)

    @torch.no_grad()
    def fuse(self) -> None:
        if hasattr(self, "rbr_reparam"):
            return
        kernel, bias = self.rbr_dense.kernel_and_bias()
        k1, b1 = self.rbr_1x1.kernel_and_bias()
        kernel = kernel + nn.functional.pad(k1, [1, 1, 1, 1])
        bias = bias + b1
        if self.rbr_identity is not None:
            kid, bid = self._identity_kernel_and_bias()
            kernel, bias = kernel + kid, bias + bid
        self.rbr_reparam = conv_with_weights(self.rbr_dense.conv, kernel, bias)
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity


class RealVGGBlock(ConvBN):
    """The plain block a RepOptimizer trains: one 3x3 conv (no bias) -> BN -> ReLU, keys ``conv``, ``bn``.

    There are no branches to merge: :meth:`fuse` only folds the BN into the conv, as for any :class:`ConvBN`.
    Shapes: [B, C_in, H, W] -> [B, C_out, H/stride, W/stride].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, deploy: bool = False) -> None:
        super().__init__(in_channels, out_channels, 3, stride, act="relu", deploy=deploy)


class ScaleLayer(nn.Module):
    """Per-channel learnable scale without bias: ``x * weight`` with ``weight`` [C] (initialised to ``init``)."""

    def __init__(self, channels: int, init: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


class LinearAddBlock(nn.Module):
    """Hyper-search block: ReLU(BN(s_3x3 * conv3x3(x) + s_1x1 * conv1x1(x) [+ s_id * x])).

    The per-branch, per-output-channel scales (``scale_conv``, ``scale_1x1``, ``scale_identity`` [C_out], all
    initialised to 1) are trained with the network; the trained values are what a RepOptimizer is built from.
    The identity branch exists only when in == out and stride == 1. Shapes: [B, C_in, H, W] -> [B, C_out, H/s, W/s].
    After :meth:`fuse` (or with ``deploy=True``) only ``conv`` remains, a biased 3x3 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, deploy: bool = False) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.se = nn.Identity()
        if deploy:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=True)
            self.bn = None
            return
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.scale_conv = ScaleLayer(out_channels)
        self.conv_1x1 = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)
        self.scale_1x1 = ScaleLayer(out_channels)
        has_identity = in_channels == out_channels and stride == 1
        self.scale_identity = ScaleLayer(out_channels) if has_identity else None
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None:
            return self.relu(self.se(self.conv(x)))
        out = self.scale_conv(self.conv(x)) + self.scale_1x1(self.conv_1x1(x))
        if self.scale_identity is not None:
            out = out + self.scale_identity(x)
        return self.relu(self.se(self.bn(out)))

    def merged_kernel(self) -> torch.Tensor:
        """The 3x3 kernel [C_out, C_in, 3, 3] of one conv equal to the scaled branch sum (before the BN)."""
        kernel = self.conv.weight * self.scale_conv.weight.view(-1, 1, 1, 1)
        kernel = kernel + nn.functional.pad(self.conv_1x1.weight * self.scale_1x1.weight.view(-1, 1, 1, 1), [1] * 4)
        if self.scale_identity is not None:
            channels = torch.arange(kernel.shape[0], device=kernel.device)
            identity = torch.zeros_like(kernel)
            identity[channels, channels, 1, 1] = self.scale_identity.weight
            kernel = kernel + identity
        return kernel

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn is None:
            return
        kernel, bias = fold_batchnorm(self.merged_kernel(), None, self.bn)
        self.conv = conv_with_weights(self.conv, kernel, bias)
        self.bn = None
        del self.scale_conv, self.conv_1x1, self.scale_1x1, self.scale_identity


BasicBlock = Callable[..., nn.Module]
"""Signature of a stage's basic block: ``basic(in_channels, out_channels, stride=1) -> module``."""


class BottleRep(nn.Module):
    """Two basic blocks with a (learnable-scale) residual: conv2(conv1(x)) + alpha * x when in == out."""

    def __init__(self, in_channels: int, out_channels: int, basic: BasicBlock, weight: bool = False) -> None:
        super().__init__()
        self.conv1 = basic(in_channels, out_channels)
        self.conv2 = basic(out_channels, out_channels)
        self.shortcut = in_channels == out_channels
        self.alpha = nn.Parameter(torch.ones(1)) if weight else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + self.alpha * x if self.shortcut else out


class RepBlock(nn.Module):
    """A stage of ``n`` basic blocks (``conv1`` then ``block``), or of n // 2 BottleReps when ``bottleneck``."""

    def __init__(
        self, in_channels: int, out_channels: int, n: int, basic: BasicBlock, bottleneck: bool = False
    ) -> None:
        super().__init__()
        if bottleneck:
            n = n // 2
            self.conv1 = BottleRep(in_channels, out_channels, basic, weight=True)
            rest = [BottleRep(out_channels, out_channels, basic, weight=True) for _ in range(n - 1)]
        else:
            self.conv1 = basic(in_channels, out_channels)
            rest = [basic(out_channels, out_channels) for _ in range(n - 1)]
        self.block = nn.Sequential(*rest) if rest else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.block(x) if self.block is not None else x


class BepC3(nn.Module):
    """CSPStackRep: cv3(cat(m(cv1(x)), cv2(x))) with m a RepBlock of BottleReps and hidden width out * e."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n: int,
        e: float,
        basic: BasicBlock,
        conv: ConvFactory,
        act: str = "relu",
    ) -> None:
        super().__init__()
        hidden = int(out_channels * e)
        self.cv1 = conv(in_channels, hidden, 1, 1, act)
        self.cv2 = conv(in_channels, hidden, 1, 1, act)
        self.cv3 = conv(2 * hidden, out_channels, 1, 1, act)
        self.m = RepBlock(hidden, hidden, n, basic, bottleneck=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: cv2(cat(y, p(y), p(p(y)), p(p(p(y))))) with y = cv1(x), p = maxpool k s1."""

    def __init__(
        self, in_channels: int, out_channels: int, conv: ConvFactory, act: str = "relu", kernel_size: int = 5
    ) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.cv1 = conv(in_channels, hidden, 1, 1, act)
        self.cv2 = conv(hidden * 4, out_channels, 1, 1, act)
        self.m = nn.MaxPool2d(kernel_size, 1, kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        p1 = self.m(x)
        p2 = self.m(p1)
        return self.cv2(torch.cat((x, p1, p2, self.m(p2)), dim=1))


class CSPSPPF(nn.Module):
    """CSP form of SPPF (v3.0 n/s): cv7(cat(cv2(x), cv6(cv5(cat(y, p1, p2, p3))))) with y = cv4(cv3(cv1(x)))."""

    def __init__(
        self, in_channels: int, out_channels: int, conv: ConvFactory, act: str = "relu", kernel_size: int = 5
    ) -> None:
        super().__init__()
        hidden = int(out_channels * 0.5)
        self.cv1 = conv(in_channels, hidden, 1, 1, act)
        self.cv2 = conv(in_channels, hidden, 1, 1, act)
        self.cv3 = conv(hidden, hidden, 3, 1, act)
        self.cv4 = conv(hidden, hidden, 1, 1, act)
        self.m = nn.MaxPool2d(kernel_size, 1, kernel_size // 2)
        self.cv5 = conv(4 * hidden, hidden, 1, 1, act)
        self.cv6 = conv(hidden, hidden, 3, 1, act)
        self.cv7 = conv(2 * hidden, out_channels, 1, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv4(self.cv3(self.cv1(x)))
        p1 = self.m(y)
        p2 = self.m(p1)
        main = self.cv6(self.cv5(torch.cat((y, p1, p2, self.m(p2)), dim=1)))
        return self.cv7(torch.cat((self.cv2(x), main), dim=1))


class SPPFWrapper(nn.Module):
    """v3.0 layout of SPPF (``sppf`` attribute)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.sppf = SPPF(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sppf(x)


class CSPSPPFWrapper(nn.Module):
    """v3.0 layout of CSPSPPF (``cspsppf`` attribute)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.cspsppf = CSPSPPF(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cspsppf(x)


class Transpose(nn.Module):
    """2x learned upsampling: ConvTranspose2d(k=2, s=2) with bias, no BN or activation."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.upsample_transpose = nn.ConvTranspose2d(in_channels, out_channels, 2, 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample_transpose(x)


class BiFusion(nn.Module):
    """v3.0 neck fusion of three scales into the middle one.

    ``forward([top, same, finer])``: top [B, C_out, H/2, W/2] (upsampled), same [B, C_a, H, W] (1x1),
    finer [B, C_b, 2H, 2W] (1x1 then 3x3 stride 2) -> cv3(cat) [B, C_out, H, W].
    """

    def __init__(self, in_channels: tuple[int, int], out_channels: int, conv: ConvFactory) -> None:
        super().__init__()
        self.cv1 = conv(in_channels[0], out_channels, 1, 1)
        self.cv2 = conv(in_channels[1], out_channels, 1, 1)
        self.cv3 = conv(out_channels * 3, out_channels, 1, 1)
        self.upsample = Transpose(out_channels, out_channels)
        self.downsample = conv(out_channels, out_channels, 3, 2)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        top = self.upsample(x[0])
        same = self.cv1(x[1])
        finer = self.downsample(self.cv2(x[2]))
        return self.cv3(torch.cat((top, same, finer), dim=1))
