from __future__ import annotations

import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.errors import ConfigError, YOLOv6Error
from yolov6_sdk.models import ZOO, build_model, fuse
from yolov6_sdk.models.anchors import make_anchor_points
from yolov6_sdk.models.blocks import (
    CSPSPPF,
    SPPF,
    BepC3,
    BottleRep,
    ConvBN,
    ConvFactory,
    RepVGGBlock,
)
from yolov6_sdk.models.info import model_info

# Official figures: v3.0 README table; paper line as the release-0.2.0 configs build.
OFFICIAL_PARAMS_GFLOPS = {
    "yolov6n": (4.7, 11.4),
    "yolov6s": (18.5, 45.3),
    "yolov6m": (34.9, 85.8),
    "yolov6l": (59.6, 150.7),
    "yolov6n6": (10.4, 49.8),  # v3.0 README, at 1280
    "yolov6s6": (41.4, 198.0),
    "yolov6m6": (79.6, 379.5),
    "yolov6l6": (140.4, 673.4),
    "yolov6lite-s": (0.55, 0.56),  # configs/yolov6_lite README, at 320
    "yolov6lite-m": (0.79, 0.67),
    "yolov6lite-l": (1.09, 0.87),
    "yolov6n-base": (4.65, 11.46),  # configs/base README
    "yolov6s-base": (13.14, 30.6),
    "yolov6m-base": (28.33, 72.30),
    "yolov6l-base": (59.61, 150.89),
    "yolov6n-v1": (4.3, 11.0),
    "yolov6t-v1": (9.7, 24.7),
    "yolov6s-v1": (17.2, 43.9),
    "yolov6m-v1": (34.3, 81.5),
    "yolov6l-v1": (58.5, 142.8),
    "yolov6l-relu-v1": (58.5, 144.0),  # release-0.2.0 README
    "yolov6n-qa": (4.7, 11.4),  # configs/qarepvgg README
    "yolov6s-qa": (18.5, 45.3),
    "yolov6m-qa": (34.9, 85.8),
    "yolov6s-mbla": (11.6, 29.8),  # configs/mbla README
    "yolov6m-mbla": (26.1, 66.7),
    "yolov6l-mbla": (46.3, 118.2),
    "yolov6x-mbla": (78.8, 199.0),
}
# RepOpt and hyper-search models deploy as the same single-3x3-conv network as their paper-line twin; both
# QARepVGG block versions fuse to the same network.
OFFICIAL_PARAMS_GFLOPS.update(
    {f"yolov6{size}-{kind}": OFFICIAL_PARAMS_GFLOPS[f"yolov6{size}-v1"] for size in "nts" for kind in ("repopt", "hs")}
)
OFFICIAL_PARAMS_GFLOPS.update({f"yolov6{size}-qa1": OFFICIAL_PARAMS_GFLOPS[f"yolov6{size}-qa"] for size in "nsm"})


def _assert_fused_matches(
    unfused: torch.Tensor, fused: torch.Tensor, imgsz: tuple[int, int], level_strides: tuple[int, ...]
) -> None:
    """Scores within 1e-4 absolute; boxes within 1e-4 in the head's own units (grid cells of their level).

    Box columns are the head's distances times the level's stride, so they are compared after dividing by it.
    """
    torch.testing.assert_close(fused[..., 4:], unfused[..., 4:], rtol=0, atol=1e-4)
    sizes = [(imgsz[0] // s, imgsz[1] // s) for s in level_strides]
    _, strides = make_anchor_points(sizes, level_strides)
    torch.testing.assert_close(fused[..., :4] / strides, unfused[..., :4] / strides, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(ZOO))
def test_every_config_runs_forward_with_the_official_output_layout(name: str) -> None:
    model = build_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 128))
    anchors = sum((64 // s) * (128 // s) for s in model.strides)
    assert out.shape == (2, anchors, 5 + 7)
    assert torch.all(out[..., 4] == 1.0)
    assert torch.all((out[..., 5:] >= 0) & (out[..., 5:] <= 1))


# Configs whose full-size fused check takes half a minute; test_zoo_families checks them at a small size.
BIG = {"yolov6m6", "yolov6l6", "yolov6l-mbla", "yolov6x-mbla", "yolov6l-relu-v1"}
# QARepVGG adds unnormalised branches that random BatchNorm statistics let grow layer by layer; test_zoo_families
# checks these with calibrated statistics.
CALIBRATED = {name for name, config in ZOO.items() if config.family == "qarepvgg"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in ZOO if n not in CALIBRATED]
)
def test_fused_model_matches_unfused_within_1e_4(name: str) -> None:
    model = randomize_model(build_model(name).eval())
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.rand(1, 3, 320, 320, generator=gen), torch.rand(1, 3, 256, 384, generator=gen)]
    with torch.no_grad():
        before = [model(x) for x in inputs]
        fuse(model)
        after = [model(x) for x in inputs]
    for x, unfused, fused in zip(inputs, before, after, strict=True):
        _assert_fused_matches(unfused, fused, tuple(x.shape[2:]), model.strides)
    assert not any("rbr_dense" in k or ".bn." in k or "rbr_identity" in k for k in model.state_dict())


@pytest.mark.parametrize("name", ["yolov6n", "yolov6m", "yolov6l", "yolov6n-v1", "yolov6l-v1"])
def test_deploy_build_has_the_fused_state_dict_layout(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        fused = fuse(build_model(name))
        deployed = build_model(name, deploy=True)
    assert {k: v.shape for k, v in fused.state_dict().items()} == {k: v.shape for k, v in deployed.state_dict().items()}


def test_fuse_is_idempotent() -> None:
    model = randomize_model(build_model("yolov6n").eval())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        once = fuse(model)(x)
        twice = fuse(model)(x)
    torch.testing.assert_close(once, twice, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("make_block", "channels"),
    [
        (lambda: RepVGGBlock(8, 8), 8),
        (lambda: RepVGGBlock(8, 16, stride=2), 8),
        (lambda: ConvBN(8, 16, 3, 1, act="silu"), 8),
        (lambda: BottleRep(8, 8, RepVGGBlock, weight=True), 8),
        (lambda: BepC3(8, 8, 4, 0.5, RepVGGBlock, ConvFactory(wrapped=True)), 8),
        (lambda: SPPF(8, 8, ConvFactory(wrapped=False)), 8),
        (lambda: CSPSPPF(8, 8, ConvFactory(wrapped=True), act="silu"), 8),
    ],
)
def test_each_block_type_fuses_to_the_same_function(make_block, channels: int) -> None:
    torch.manual_seed(0)
    block = randomize_model(make_block().eval())
    x = torch.randn(2, channels, 16, 16)
    with torch.no_grad():
        expected = block(x)
        fuse(block)
        got = block(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_repvgg_identity_branch_only_when_shapes_allow() -> None:
    assert RepVGGBlock(8, 8).rbr_identity is not None
    assert RepVGGBlock(8, 16).rbr_identity is None
    assert RepVGGBlock(8, 8, stride=2).rbr_identity is None


@pytest.mark.parametrize(
    ("name", "expected_keys"),
    [
        (
            "yolov6n",
            [
                "backbone.ERBlock_5.2.cspsppf.cv7.block.conv.weight",
                "detect.reg_preds_dist.2.weight",
                "neck.Bifusion0.upsample.upsample_transpose.weight",
                "backbone.ERBlock_2.1.block.0.rbr_identity.running_var",
            ],
        ),
        (
            "yolov6m",
            [
                "backbone.ERBlock_5.2.sppf.cv1.block.conv.weight",
                "backbone.ERBlock_3.1.m.block.0.alpha",
                "neck.Rep_p4.m.conv1.conv1.rbr_dense.conv.weight",
                "detect.proj",
            ],
        ),
        (
            "yolov6l",
            ["backbone.stem.block.conv.weight", "backbone.ERBlock_2.1.m.conv1.conv1.block.conv.weight"],
        ),
        (
            "yolov6n-v1",
            [
                "backbone.ERBlock_5.2.cv1.conv.weight",
                "detect.stems.0.conv.weight",
                "neck.upsample0.upsample_transpose.bias",
                "neck.reduce_layer0.bn.running_mean",
            ],
        ),
        ("yolov6l-v1", ["backbone.stem.block.conv.bias", "backbone.ERBlock_2.1.cv1.conv.weight"]),
    ],
)
def test_state_dict_uses_the_official_key_names(name: str, expected_keys: list[str]) -> None:
    keys = build_model(name).state_dict().keys()
    for key in expected_keys:
        assert key in keys


@pytest.mark.parametrize(("name", "count"), [("yolov6n", 762), ("yolov6s", 762), ("yolov6m", 1200), ("yolov6l", 915)])
def test_state_dict_tensor_counts_match_the_official_release_layout(name: str, count: int) -> None:
    # Counts of the official 0.4.x modules (num_batches_tracked included); n/s carry the distillation branch.
    assert len(build_model(name).state_dict()) == count


def test_reg_max_head_shapes() -> None:
    state = build_model("yolov6m").state_dict()
    assert state["detect.reg_preds.0.weight"].shape[0] == 68
    assert state["detect.proj_conv.weight"].shape == (1, 17, 1, 1)
    assert build_model("yolov6n").state_dict()["detect.reg_preds.0.weight"].shape[0] == 4


@pytest.mark.parametrize("name", list(ZOO))
def test_params_and_gflops_within_2_percent_of_official(name: str) -> None:
    size = ZOO[name].imgsz
    info = model_info(name, (size, size))
    params, gflops = OFFICIAL_PARAMS_GFLOPS[name]
    assert abs(info.params_m - params) / params <= 0.02
    # The official Lite count (thop on its deploy form) adds the 40 BatchNorms that form keeps and every bias and
    # elementwise op, about 3 % of these depthwise-heavy models; the count here is the fused convolutions only.
    assert abs(info.gflops - gflops) / gflops <= (0.04 if ZOO[name].lite else 0.02)


def test_unknown_model_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("yolov6x")
    assert isinstance(err.value, KeyError) and isinstance(err.value, YOLOv6Error)
    assert "yolov6n" in str(err.value) and "yolov6l-v1" in str(err.value)


def test_training_mode_returns_flat_tensors_for_the_loss() -> None:
    model = build_model("yolov6n", num_classes=3).train()
    out = model(torch.rand(2, 3, 64, 64))
    anchors = 8 * 8 + 4 * 4 + 2 * 2
    assert out.cls_scores.shape == (2, anchors, 3)
    assert out.reg_dist.shape == (2, anchors, 68)
    assert out.reg_lrtb.shape == (2, anchors, 4)
    assert out.feature_sizes == [(8, 8), (4, 4), (2, 2)]
