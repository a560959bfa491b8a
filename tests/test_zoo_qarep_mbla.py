"""QARepVGG, MBLA and the paper line's ReLU YOLOv6-L: the official state_dict layout (a table written down from the
official code), blocks and configs that fuse to the same function, and release-format files that load exactly."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import randomize_model
from test_official_families import CSP_NAMES, write_release
from test_weights import assert_same_outputs, prepared, run
from torch import nn

from yolov6_sdk.errors import CheckpointError
from yolov6_sdk.models import ZOO, YOLOv6, build_model, fuse
from yolov6_sdk.models.blocks import WrappedConvBN
from yolov6_sdk.models.mbla import BottleRep3, MBLABlock, mbla_branch_depths
from yolov6_sdk.models.qarepvgg import QARepVGGBlock, QARepVGGBlockV2
from yolov6_sdk.weights import load_official

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_QA_N, _QA_S = (
    {
        "backbone.stem.rbr_1x1.weight": (width, 3, 1, 1),
        "backbone.ERBlock_2.1.conv1.bn.running_var": (2 * width,),
        "backbone.ERBlock_3.1.block.0.rbr_dense.conv.weight": (4 * width, 4 * width, 3, 3),
        "detect.reg_preds.2.weight": (4, 8 * width, 1, 1),
    }
    for width in (16, 32)
)
_QA_M = {
    "backbone.stem.rbr_1x1.weight": (48, 3, 1, 1),
    "neck.Rep_n4.m.conv1.conv1.rbr_1x1.weight": (256, 256, 1, 1),
    "neck.Rep_n4.m.conv1.conv1.bn.weight": (256,),
    "neck.Rep_n4.m.block.0.conv2.rbr_dense.conv.weight": (256, 256, 3, 3),
    "detect.reg_preds.2.weight": (68, 384, 1, 1),
}


def _mbla(width: int, cv1_in: int, cv2_in: int) -> dict[str, tuple[int, ...]]:
    last = min(width, 1024)
    return {
        "backbone.ERBlock_5.1.cv1.conv.weight": (cv1_in, last, 1, 1),
        "backbone.ERBlock_5.1.cv2.conv.weight": (last, cv2_in, 1, 1),
        "backbone.ERBlock_5.1.m.0.0.alpha": (1,),
        "backbone.ERBlock_4.1.m.1.1.conv3.block.conv.weight": (last // 4, last // 4, 3, 3),
        "neck.Rep_n4.cv2.bn.running_mean": (last // 2,),
        "backbone.ERBlock_5.2.sppf.cv2.block.conv.weight": (last, 2 * last, 1, 1),
        "detect.reg_preds.2.weight": (68, last // 2, 1, 1),
    }


# name -> (tensor count incl. num_batches_tracked, {sample key: shape}) of the official model built from its config
# (configs/qarepvgg and configs/mbla at HEAD; configs/yolov6l_relu.py at release 0.2.0).
QA_MBLA_LAYOUT: dict[str, tuple[int, dict[str, tuple[int, ...]]]] = {
    **{f"yolov6n-{kind}": (606, _QA_N) for kind in ("qa", "qa1")},
    **{f"yolov6s-{kind}": (606, _QA_S) for kind in ("qa", "qa1")},
    **{f"yolov6m-{kind}": (960, _QA_M) for kind in ("qa", "qa1")},
    "yolov6s-mbla": (662, _mbla(512, 512, 768)),
    "yolov6m-mbla": (662, _mbla(768, 768, 1152)),
    "yolov6l-mbla": (662, _mbla(1024, 1024, 1536)),
    "yolov6x-mbla": (1080, _mbla(1024, 1536, 3072)),
    "yolov6l-relu-v1": (
        1887,
        {
            "backbone.ERBlock_5.1.cv1.conv.weight": (512, 1024, 1, 1),
            "backbone.ERBlock_5.2.cv2.conv.weight": (1024, 2048, 1, 1),
            "backbone.ERBlock_2.1.cv3.conv.weight": (128, 128, 1, 1),
            "neck.reduce_layer0.conv.weight": (256, 1024, 1, 1),
            "neck.Rep_n4.m.block.0.conv2.rbr_dense.conv.weight": (256, 256, 3, 3),
            "detect.reg_preds.2.weight": (68, 512, 1, 1),
        },
    ),
}


def test_every_new_config_is_in_the_layout_table() -> None:
    new = {name for name, c in ZOO.items() if c.family in ("qarepvgg", "mbla")} | {"yolov6l-relu-v1"}
    assert new == set(QA_MBLA_LAYOUT)


def calibrated(model: nn.Module, *shape: int) -> nn.Module:
    """Random weights, then BatchNorm statistics measured on one random batch of ``shape`` (as training would
    leave them): QARepVGG's unnormalised branches make random statistics grow the activations layer by layer.
    The batch needs a few dozen values per channel at the coarsest level (e.g. 4 images of 64x64)."""
    randomize_model(model)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.rand(*shape, generator=torch.Generator().manual_seed(5)))
    for bn in batchnorms:
        bn.momentum = 0.03
    return model.eval()


def _basic(cin: int, cout: int, stride: int = 1) -> nn.Module:
    return WrappedConvBN(cin, cout, 3, stride, act="silu")


@pytest.mark.parametrize(
    ("make_block", "channels"),
    [
        (lambda: QARepVGGBlock(8, 8), 8),
        (lambda: QARepVGGBlock(8, 16, stride=2), 8),
        (lambda: QARepVGGBlockV2(8, 8), 8),
        (lambda: QARepVGGBlockV2(3, 16, stride=2), 3),
        (lambda: BottleRep3(8, 8, _basic, weight=True), 8),
        (lambda: MBLABlock(8, 16, 8, 0.5, QARepVGGBlockV2, False, "relu"), 8),
        (lambda: MBLABlock(16, 16, 2, 0.5, _basic, False, "silu"), 16),
    ],
)
def test_each_new_block_type_fuses_to_the_same_function(make_block, channels: int) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    block = calibrated(make_block(), 4, channels, 16, 16)
    for name, alpha in block.named_parameters():
        if name.endswith("alpha"):
            alpha.data.fill_(0.7)  # not the initial 1.0
    with torch.no_grad():
        x = torch.randn(2, channels, 16, 16)
        expected = block(x)
        got = fuse(nn.Sequential(block))(x)  # the block itself too, not only its children
        again = fuse(nn.Sequential(block))(x)  # idempotent
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(again, got)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())


def test_qarepvgg_fuse_folds_the_post_batchnorm_and_matches_the_deploy_build() -> None:
    block = calibrated(QARepVGGBlockV2(8, 8), 4, 8, 12, 12)
    block.fuse()
    assert block.bn is None and not hasattr(block, "rbr_avg") and not hasattr(block, "rbr_dense")
    deployed = QARepVGGBlockV2(8, 8, deploy=True)
    assert deployed.state_dict().keys() == block.state_dict().keys() == {"rbr_reparam.weight", "rbr_reparam.bias"}


def test_qarepvgg_v1_and_v2_share_every_tensor_but_compute_different_functions() -> None:
    v2 = calibrated(build_model("yolov6n-qa", 3), 4, 3, 64, 64)
    v1 = build_model("yolov6n-qa1", 3).eval()
    v1.load_state_dict(v2.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert (v1(x)[..., 5:] - v2(x)[..., 5:]).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("name", "imgsz"),
    [("yolov6n-qa", (64, 96)), ("yolov6s-qa", (32, 64)), ("yolov6m-qa", (64, 64))]
    + [("yolov6n-qa1", (32, 64)), ("yolov6s-qa1", (64, 64)), ("yolov6m-qa1", (32, 64)), ("yolov6s-mbla", (64, 96))]
    + [pytest.param(n, (64, 64), marks=pytest.mark.slow) for n in ("yolov6m-mbla", "yolov6l-mbla")]
    + [("yolov6x-mbla", (32, 64)), ("yolov6l-relu-v1", (32, 64))],
)
def test_new_config_fused_matches_unfused_within_1e_4(name: str, imgsz: tuple[int, int]) -> None:
    torch.manual_seed(0)  # the initial weights, whatever ran before
    # statistics from 4 images of 64x64: smaller batches leave the stride-32 BatchNorms a handful of values each
    model = calibrated(build_model(name, num_classes=3), 4, 3, 64, 64)
    exact = copy.deepcopy(model).double()
    x = torch.rand(1, 3, *imgsz, generator=torch.Generator().manual_seed(2))
    scale = torch.cat([torch.full((imgsz[0] * imgsz[1] // s**2, 1), float(s)) for s in model.strides])
    with torch.no_grad():
        unfused, unfused64 = model(x), exact(x.double())
        fused, fused64 = fuse(model)(x), fuse(exact)(x.double())
    # The fusion itself is exact: in float64 boxes (grid cells of their level) and scores agree to 1e-4 and far below.
    torch.testing.assert_close(fused64[..., :4] / scale, unfused64[..., :4] / scale, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused64[..., 4:], unfused64[..., 4:], rtol=0, atol=1e-4)
    assert (fused64 - unfused64).abs().max() < 1e-8 * unfused64.abs().max()
    # In float32 the random networks' box distances reach tens of cells, and the unfused model alone departs from
    # exact arithmetic by ~1e-4 relative (QARepVGG's identity chains): fused and unfused agree to that.
    assert_same_outputs(fused[..., :4] / scale, unfused[..., :4] / scale)
    torch.testing.assert_close(fused[..., 4:], unfused[..., 4:], rtol=0, atol=1e-3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.device("meta"):
        deployed = build_model(name, num_classes=3, deploy=True)
    assert {k: v.shape for k, v in deployed.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_mbla_branches_are_laid_out_from_half_the_repeats() -> None:
    assert [mbla_branch_depths(n) for n in (1, 2, 3, 4, 8, 12, 16)] == [
        [0, 1], [0, 1], [0, 1], [0, 1, 2], [0, 2, 4], [0, 4, 6], [0, 4, 8]
    ]  # fmt: skip
    block = MBLABlock(16, 32, 8, 0.5, _basic, False, "silu")
    assert [len(chain) for chain in block.m] == [2, 4]
    assert block.cv2.conv.in_channels == (3 + 6) * 16


def _qa_release(name: str) -> tuple[YOLOv6, YOLOv6]:
    model = calibrated(build_model(name, num_classes=3), 4, 3, 64, 64)
    return model, copy.deepcopy(model).half().float()


@pytest.mark.parametrize(("name", "names"), [("yolov6n-qa1", None), ("yolov6n-qa", None), ("yolov6m-qa", CSP_NAMES)])
def test_qarepvgg_release_file_loads_as_the_block_version_it_pickles(
    name: str, names: dict[str, str] | None, tmp_path: Path
) -> None:
    model, reference = _qa_release(name)
    loaded = load_official(write_release(tmp_path / "qa.pt", model, names))
    assert loaded.name == name and loaded.meta["epoch"] == 299
    assert_same_outputs(run(loaded.model), run(reference))


def test_qarepvgg_n_release_file_with_the_distillation_branch_loads(tmp_path: Path) -> None:
    from dataclasses import replace

    model = calibrated(YOLOv6(replace(ZOO["yolov6n-qa1"], distill_head=True), 3), 4, 3, 64, 64)
    reference = copy.deepcopy(model).half().float()
    loaded = load_official(write_release(tmp_path / "yolov6n_qa.pt", model))
    assert loaded.name == "yolov6n-qa1" and loaded.meta["distill_head"] is True
    assert_same_outputs(run(loaded.model), run(reference))


def test_mbla_release_file_in_the_stripped_format_loads_exactly(tmp_path: Path) -> None:
    model, reference = prepared("yolov6s-mbla")
    model.requires_grad_(False)  # the stripped format: the EMA copy, eval mode, no gradients
    loaded = load_official(write_release(tmp_path / "yolov6s_mbla.pt", model, CSP_NAMES))
    assert loaded.name == "yolov6s-mbla"
    assert loaded.meta["official_classes"]["backbone"] == "yolov6.models.efficientrep.CSPBepBackbone"
    assert_same_outputs(run(loaded.model), run(reference))


def test_relu_l_v1_release_file_loads_as_the_relu_l_not_the_silu_l(tmp_path: Path) -> None:
    model, reference = prepared("yolov6l-relu-v1")
    names = {
        "EfficientRep": "yolov6.models.efficientrep.CSPBepBackbone",
        "RepPAN": "yolov6.models.reppan.CSPRepPANNeck",
        "ConvBN": "yolov6.layers.common.Conv_C3",
    }
    loaded = load_official(write_release(tmp_path / "yolov6l_relu.pt", model, names))
    assert loaded.name == "yolov6l-relu-v1"
    assert_same_outputs(run(loaded.model), run(reference))


def test_qarepvgg_file_with_a_plain_repvgg_block_class_is_refused(tmp_path: Path) -> None:
    model, _ = _qa_release("yolov6n-qa")
    path = write_release(tmp_path / "odd.pt", model, {"QARepVGGBlockV2": "yolov6.layers.common.RepVGGBlock"})
    with pytest.raises(CheckpointError, match=r"matches no zoo config") as error:
        load_official(path)
    assert str(tmp_path / "odd.pt") in str(error.value)
