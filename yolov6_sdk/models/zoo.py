"""The model zoo: one frozen dataclass per config, a plain dict from name to config (style rule S4).

Numbers follow the official configs of meituan/YOLOv6: the v3.0 release line (``configs/yolov6{n,s,m,l}.py`` at
release 0.4.x) and the paper's line (release 0.2.0 ``configs/yolov6{n,t,s,m,l}.py``), named ``yolov6X-v1`` here.
Every config scales the same base lists: repeats by ``depth_multiple`` (Python round, entries of 1 stay 1),
channels by ``width_multiple`` (rounded up to a multiple of 8).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace

from yolov6_sdk.errors import ConfigError

BASE_REPEATS = (1, 6, 12, 18, 6, 12, 12, 12, 12)
"""Backbone stem + 4 stages, then neck Rep_p4, Rep_p3, Rep_n3, Rep_n4."""
BASE_CHANNELS = (64, 128, 256, 512, 1024, 256, 128, 128, 256, 256, 512)
"""Backbone stem, P2..P5, then neck reduce0, reduce1, down2 out, Rep_n3 out, down1 out, Rep_n4 out."""
P6_REPEATS = (1, 6, 12, 18, 6, 6, 12, 12, 12, 12, 12, 12)
"""P6 models: backbone stem + 5 stages, then neck Rep_p5, Rep_p4, Rep_p3, Rep_n4, Rep_n5, Rep_n6."""
P6_CHANNELS = (64, 128, 256, 512, 768, 1024, 512, 256, 128, 256, 512, 1024)
"""P6 models: backbone stem, P2..P6, then neck reduce0, reduce1, reduce2 / P3' out, P4', P5', P6' out."""
MBLA_REPEATS = (1, 4, 8, 8, 4, 8, 8, 8, 8)
"""MBLA models (official configs/mbla): the repeats their MBLABlock stages are laid out from."""

FAMILIES = {
    "v3.0": "YOLOv6 v3.0",
    "p6": "YOLOv6 P6 (four levels, 1280 px)",
    "lite": "YOLOv6-Lite (320 px)",
    "base": "YOLOv6 base (ReLU)",
    "mbla": "YOLOv6 MBLA",
    "qarepvgg": "YOLOv6 QARepVGG",
    "paper": "YOLOv6 v1 (paper line)",
    "repopt": "YOLOv6 RepOpt",
}
"""Family key -> the name a message gives it; :attr:`ModelConfig.family` picks the key."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides a YOLOv6 network's structure.

    Attributes:
        name: zoo name.
        line: "v3.0" (release 0.4.x weights) or "paper" (release 0.2.0, the v1 technical report).
        depth_multiple, width_multiple: scale factors of BASE_REPEATS / BASE_CHANNELS.
        csp: CSPBepBackbone + CSP neck (BepC3 stages) instead of EfficientRep + RepBlock stages.
        bifusion: v3.0 BiFusion neck fed by P2..P5, instead of the plain Rep-PAN fed by P3..P5.
        block: basic block type: "repvgg" (RepVGG), "conv_silu" (conv+BN+SiLU), "conv_relu" (conv+BN+ReLU, the
            base models), "qarepvgg" / "qarepvgg_v2" (the quantisation-aware RepVGG blocks V1 / V2 of
            :mod:`yolov6_sdk.models.qarepvgg`), "repopt" (one 3x3 conv+BN+ReLU,
            trained with a RepOptimizer) or "hyper_search" (3x3, 1x1 and identity branches with learnable
            per-channel scales, whose trained values build the RepOptimizer).
        mbla: the CSP stages are MBLABlocks (:mod:`yolov6_sdk.models.mbla`) instead of BepC3.
        csp_e: hidden-width ratio of BepC3.
        cspsppf: CSP form of the SPPF merge layer (v3.0 n/s).
        use_dfl, reg_max: distribution focal loss regression with reg_max + 1 bins per side.
        distill_head: the head has the extra 68-channel ``reg_preds_dist`` branch of the released n/s students.
        iou_type: IoU loss used in training.
        legacy_layout: paper-line state_dict key layout (conv+BN flat instead of under ``.block``).
        strides: output strides of the head levels: (8, 16, 32), or (8, 16, 32, 64) for the P6 models, whose
            backbone has a sixth stage and whose repeat and channel lists have 12 entries.
        imgsz: the official training and evaluation size (square, pixels).
        lite: a YOLOv6-Lite network (:mod:`yolov6_sdk.models.lite`): only ``width_multiple``, ``strides`` and the
            head settings apply; its widths are rounded to multiples of 16 and its repeats are fixed.
    """

    name: str
    line: str
    depth_multiple: float
    width_multiple: float
    csp: bool = False
    bifusion: bool = True
    block: str = "repvgg"
    csp_e: float = 0.5
    mbla: bool = False
    cspsppf: bool = False
    use_dfl: bool = False
    reg_max: int = 0
    distill_head: bool = False
    iou_type: str = "giou"
    legacy_layout: bool = False
    strides: tuple[int, ...] = (8, 16, 32)
    imgsz: int = 640
    lite: bool = False
    base_repeats: tuple[int, ...] = field(default=BASE_REPEATS, repr=False)
    base_channels: tuple[int, ...] = field(default=BASE_CHANNELS, repr=False)

    @property
    def p6(self) -> bool:
        """Four output levels, down to stride 64."""
        return len(self.strides) == 4

    @property
    def family(self) -> str:
        """Key of :data:`FAMILIES`: which release line the network belongs to."""
        if self.lite or self.p6 or self.mbla:
            return "lite" if self.lite else "p6" if self.p6 else "mbla"
        if self.block.startswith("qarepvgg"):
            return "qarepvgg"
        if self.line == "paper":
            return "repopt" if self.block in ("repopt", "hyper_search") else "paper"
        return "base" if self.block == "conv_relu" else "v3.0"

    @property
    def repeats(self) -> list[int]:
        """Scaled repeat counts (len 9, or 12 for P6): backbone stem + stages, then neck stages."""
        return [max(round(n * self.depth_multiple), 1) if n > 1 else n for n in self.base_repeats]

    @property
    def channels(self) -> list[int]:
        """Scaled channel counts (len 11, or 12 for P6), multiples of 8."""
        return [math.ceil(c * self.width_multiple / 8) * 8 for c in self.base_channels]

    @property
    def input_multiple(self) -> int:
        """What each input side must be a multiple of: the largest stride (64 for P6, whose neck upsamples the
        stride-64 map onto the stride-32 one), but 32 for Lite, whose stride-64 level only downsamples (the
        official 224x128 size included)."""
        return 32 if self.lite else max(self.strides)

    def check_imgsz(self, imgsz: int | tuple[int, int]) -> tuple[int, int]:
        """``imgsz`` (a side, or (H, W)) as (H, W); raises :class:`ConfigError` naming the nearest valid sizes when a
        side is not a positive multiple of :attr:`input_multiple`."""
        stride = self.input_multiple
        size = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
        for side in size:
            if isinstance(side, bool) or not isinstance(side, int) or side <= 0 or side % stride:
                below = max(stride, int(side) // stride * stride) if isinstance(side, (int, float)) else stride
                nearest = sorted({below, below + stride} if below < side else {below})
                raise ConfigError(
                    f"image size {side!r} does not fit {self.name}: each side must be a multiple of {stride}"
                    f"{' (its largest stride)' if stride == max(self.strides) else ''}; nearest valid: "
                    f"{' or '.join(map(str, nearest))}"
                )
        return int(size[0]), int(size[1])

    @property
    def head_reg_max(self) -> int:
        """Bins - 1 of the DFL branch the head trains: 16 when it has DFL or the distillation branch."""
        return 16 if (self.use_dfl or self.distill_head) else 0


_V3_N = ModelConfig("yolov6n", "v3.0", 0.33, 0.25, cspsppf=True, distill_head=True, iou_type="siou")
_BASE_N = ModelConfig("yolov6n-base", "v3.0", 0.33, 0.25, block="conv_relu", cspsppf=True, use_dfl=True, reg_max=16)
_BASE_S = ModelConfig(
    "yolov6s-base", "v3.0", 0.70, 0.50, csp=True, block="conv_relu", cspsppf=True, use_dfl=True, reg_max=16
)
_V3_S = replace(_V3_N, name="yolov6s", width_multiple=0.50, iou_type="giou")
_V3_M = ModelConfig("yolov6m", "v3.0", 0.60, 0.75, csp=True, csp_e=2 / 3, use_dfl=True, reg_max=16)
_MBLA_S = ModelConfig(
    "yolov6s-mbla", "v3.0", 0.5, 0.5, csp=True, block="conv_silu", mbla=True, use_dfl=True, reg_max=16,
    base_repeats=MBLA_REPEATS,
)  # fmt: skip
_P6 = {"strides": (8, 16, 32, 64), "imgsz": 1280, "base_repeats": P6_REPEATS, "base_channels": P6_CHANNELS}
_P6_N = ModelConfig("yolov6n6", "v3.0", 0.33, 0.25, cspsppf=True, iou_type="siou", **_P6)
_P6_M = ModelConfig("yolov6m6", "v3.0", 0.60, 0.75, csp=True, csp_e=2 / 3, use_dfl=True, reg_max=16, **_P6)
_LITE = {"lite": True, "iou_type": "siou", "strides": (8, 16, 32, 64), "imgsz": 320}
_PAPER_N = ModelConfig("yolov6n-v1", "paper", 0.33, 0.25, bifusion=False, iou_type="siou", legacy_layout=True)
_PAPER_M = ModelConfig(
    "yolov6m-v1",
    "paper",
    0.60,
    0.75,
    csp=True,
    bifusion=False,
    csp_e=2 / 3,
    use_dfl=True,
    reg_max=16,
    legacy_layout=True,
)

ZOO: dict[str, ModelConfig] = {
    cfg.name: cfg
    for cfg in (
        _V3_N,
        _V3_S,
        _V3_M,
        ModelConfig("yolov6l", "v3.0", 1.0, 1.0, csp=True, block="conv_silu", csp_e=0.5, use_dfl=True, reg_max=16),
        _BASE_N,
        _BASE_S,
        replace(_BASE_S, name="yolov6m-base", depth_multiple=0.80, width_multiple=0.75, cspsppf=False),
        replace(_BASE_S, name="yolov6l-base", depth_multiple=1.0, width_multiple=1.0, cspsppf=False),
        _P6_N,
        replace(_P6_N, name="yolov6s6", width_multiple=0.50, iou_type="giou"),
        _P6_M,
        replace(_P6_M, name="yolov6l6", depth_multiple=1.0, width_multiple=1.0, block="conv_silu", csp_e=0.5),
        *(
            ModelConfig(f"yolov6lite-{size}", "v3.0", 1.0, width, **_LITE)
            for size, width in (("s", 0.7), ("m", 1.1), ("l", 1.5))
        ),
        *(
            replace(config, name=f"{config.name}-{suffix}", block=block, distill_head=False)
            for suffix, block in (("qa", "qarepvgg_v2"), ("qa1", "qarepvgg"))
            for config in (_V3_N, _V3_S, _V3_M)
        ),
        _MBLA_S,
        replace(_MBLA_S, name="yolov6m-mbla", width_multiple=0.75),
        replace(_MBLA_S, name="yolov6l-mbla", width_multiple=1.0),
        replace(_MBLA_S, name="yolov6x-mbla", depth_multiple=1.0, width_multiple=1.0),
        _PAPER_N,
        replace(_PAPER_N, name="yolov6t-v1", width_multiple=0.375),
        replace(_PAPER_N, name="yolov6s-v1", width_multiple=0.50, iou_type="giou"),
        _PAPER_M,
        replace(_PAPER_M, name="yolov6l-v1", depth_multiple=1.0, width_multiple=1.0, block="conv_silu", csp_e=0.5),
        replace(_PAPER_M, name="yolov6l-relu-v1", depth_multiple=1.0, width_multiple=1.0, csp_e=0.5),
        *(
            replace(_PAPER_N, name=f"yolov6{size}-{suffix}", width_multiple=width, iou_type=iou, block=block)
            for size, width, iou in (("n", 0.25, "siou"), ("t", 0.375, "siou"), ("s", 0.50, "giou"))
            for suffix, block in (("repopt", "repopt"), ("hs", "hyper_search"))
        ),
    )
}
"""The P6 models (official configs/yolov6{n,s,m,l}6.py) add a stride-64 level and run at 1280 px; N6/S6 regress
raw distances, M6/L6 use DFL.

The base models (official configs/base/*) are the v3.0 networks built of plain conv+BN+ReLU blocks (CSP
stages from S up), ReLU everywhere except the SiLU head convs, all with a DFL head.

The QARepVGG models (official configs/qarepvgg) are the v3.0 N/S/M with quantisation-aware RepVGG blocks:
``yolov6X-qa`` with the official HEAD block (QARepVGGBlockV2, from release 0.4.0), ``yolov6X-qa1`` with the first
version (QARepVGGBlock, releases 0.3.x, which the 0.3.0 release files pickle); their tensors are the same. N/S are
built as their config builds them, without the distillation branch (release files with it load too).

The MBLA models (official configs/mbla) are CSP networks of conv+BN+SiLU blocks whose stages are MBLABlocks, all
with a DFL head. ``yolov6l-relu-v1`` is the paper line's ReLU YOLOv6-L (release 0.2.0): the L network of RepVGG
blocks.

The paper line's RepOptimizer pair (official configs/repopt/*): ``yolov6X-hs`` is the hyper-search model
(``training_mode='hyper_search'``) whose trained scales build the optimizer of ``yolov6X-repopt``
(``training_mode='repopt'``), the plain single-3x3-conv network deployed as trained."""


def get_config(name: str) -> ModelConfig:
    """The config called ``name``; raises :class:`ConfigError` (a KeyError) listing the valid names."""
    try:
        return ZOO[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(ZOO), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; valid names: {', '.join(ZOO)}") from None
