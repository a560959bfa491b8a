"""RepOptimizer: masked SGD on one plain conv equals SGD on the multi-branch block; scales files; the two-stage CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import randomize_model
from torch import nn

from yolov6_sdk.errors import CheckpointError, ConfigError
from yolov6_sdk.models import build_model, fuse, get_config
from yolov6_sdk.models.blocks import LinearAddBlock, RealVGGBlock, RepVGGBlock
from yolov6_sdk.training.datagen import generate_dataset
from yolov6_sdk.training.recipe import build_optimizer
from yolov6_sdk.training.repopt import (
    BranchScales,
    RepOptSGD,
    gradient_masks,
    initialise_from_scales,
    prepare_repopt,
    read_scales,
)
from yolov6_sdk.weights import load, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_scales(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every hyper-search scale a distinct value in [0.3, 1.5] (fresh ones are all 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".scale_" in f".{name}":
                param.copy_(torch.rand(param.shape, generator=gen) * 1.2 + 0.3)
    return model


def _block_pair(in_channels: int, out_channels: int, stride: int) -> tuple[nn.ModuleDict, nn.ModuleDict]:
    """A multi-branch block with constant conv scales and a trainable identity, and the plain block equal to it."""
    torch.manual_seed(0)
    branchy = randomize_model(LinearAddBlock(in_channels, out_channels, stride))
    _random_scales(branchy)
    branchy.scale_conv.requires_grad_(False)  # constant scales; the identity scale trains
    branchy.scale_1x1.requires_grad_(False)
    plain = RealVGGBlock(in_channels, out_channels, stride)
    with torch.no_grad():
        plain.conv.weight.copy_(branchy.merged_kernel())
    plain.bn.load_state_dict(branchy.bn.state_dict())
    return nn.ModuleDict({"block": branchy}), nn.ModuleDict({"block": plain})


def _scales_of(branchy: LinearAddBlock) -> dict[str, BranchScales]:
    identity = branchy.scale_identity
    return {
        "block": BranchScales(
            branchy.scale_conv.weight.detach(),
            branchy.scale_1x1.weight.detach(),
            None if identity is None else identity.weight.detach(),
        )
    }


def _train_step(model: nn.ModuleDict, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor) -> None:
    optimizer.zero_grad()
    loss = ((model["block"](x) - target) ** 2).mean()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize(("in_channels", "out_channels", "stride"), [(8, 8, 1), (8, 16, 2)])
@pytest.mark.parametrize(
    ("momentum", "weight_decay", "nesterov"), [(0.0, 0.0, False), (0.9, 0.0, False), (0.937, 5e-3, True)]
)
def test_repopt_steps_equal_sgd_steps_on_the_multi_branch_block_merged(
    in_channels: int, out_channels: int, stride: int, momentum: float, weight_decay: float, nesterov: bool
) -> None:
    branchy, plain = _block_pair(in_channels, out_channels, stride)
    settings = dict(lr=0.2, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    reference = torch.optim.SGD([p for p in branchy.parameters() if p.requires_grad], **settings)
    masks = gradient_masks(plain, _scales_of(branchy["block"]))
    repopt = RepOptSGD(plain.parameters(), masks, **settings)
    unmasked = RealVGGBlock(in_channels, out_channels, stride)  # the same plain conv under plain SGD
    unmasked.load_state_dict(plain["block"].state_dict())
    unmasked = nn.ModuleDict({"block": unmasked})
    sgd = torch.optim.SGD(unmasked.parameters(), **settings)
    gen = torch.Generator().manual_seed(1)
    start = plain["block"].conv.weight.detach().clone()
    for _ in range(3):
        x = torch.randn(4, in_channels, 12, 12, generator=gen)
        target = torch.randn(4, out_channels, 12 // stride, 12 // stride, generator=gen)
        for model, optimizer in ((branchy, reference), (plain, repopt), (unmasked, sgd)):
            _train_step(model, optimizer, x, target)
        merged = branchy["block"].merged_kernel().detach()
        torch.testing.assert_close(plain["block"].conv.weight.detach(), merged, rtol=0, atol=1e-5)
        torch.testing.assert_close(plain["block"].bn.weight.detach(), branchy["block"].bn.weight.detach())
    assert (plain["block"].conv.weight - start).abs().max() > 1e-2  # the steps moved the kernel
    assert (unmasked["block"].conv.weight - plain["block"].conv.weight).abs().max() > 1e-3  # the masks matter


def test_trainer_optimizer_is_the_repoptimizer_when_given_masks() -> None:
    branchy, plain = _block_pair(8, 8, 1)
    masks = gradient_masks(plain, _scales_of(branchy["block"]))
    reference = build_optimizer(branchy, lr=0.05, momentum=0.937, weight_decay=5e-4)
    repopt = build_optimizer(plain, lr=0.05, momentum=0.937, weight_decay=5e-4, grad_masks=masks)
    assert isinstance(repopt, RepOptSGD)
    assert [len(g["params"]) for g in repopt.param_groups] == [1, 1, 1]  # BN weight, kernel (decayed), BN bias
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):
        x, target = torch.randn(2, 8, 10, 10, generator=gen), torch.randn(2, 8, 10, 10, generator=gen)
        _train_step(branchy, reference, x, target)
        _train_step(plain, repopt, x, target)
    merged = branchy["block"].merged_kernel().detach()
    torch.testing.assert_close(plain["block"].conv.weight.detach(), merged, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="SGD"):
        build_optimizer(plain, lr=0.01, momentum=0.9, weight_decay=0.0, kind="adamw", grad_masks=masks)


def test_gradient_mask_values_follow_the_scales() -> None:
    branchy, plain = _block_pair(4, 4, 1)
    scales = _scales_of(branchy["block"])["block"]
    mask = gradient_masks(plain, _scales_of(branchy["block"]))[plain["block"].conv.weight]
    a2, b2 = scales.conv**2, scales.one_by_one**2
    torch.testing.assert_close(mask[:, :, 0, 2], a2.view(-1, 1).expand(4, 4))
    torch.testing.assert_close(mask[2, 2, 1, 1], a2[2] + b2[2] + 1)
    torch.testing.assert_close(mask[2, 3, 1, 1], a2[2] + b2[2])


def test_hyper_search_scales_load_into_the_repopt_model(tmp_path: Path) -> None:
    hs = _random_scales(build_model("yolov6n-hs", num_classes=3))
    path = save_checkpoint(tmp_path / "scales.pt", hs)
    scales = read_scales(path, get_config("yolov6n-repopt"))
    torch.manual_seed(0)
    model = build_model("yolov6n-repopt", num_classes=5)  # the scales do not depend on the classes
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, RealVGGBlock)}
    assert scales.keys() == blocks.keys() and len(blocks) > 20
    sources = dict(hs.named_modules())
    for name, found in scales.items():
        torch.testing.assert_close(found.conv, sources[name].scale_conv.weight.detach())
        assert (found.identity is None) == (sources[name].scale_identity is None)
    name = "backbone.ERBlock_3.1.conv1"  # 64 -> 64, stride 1: has an identity branch
    before = blocks[name].conv.weight.detach().clone()
    masks = prepare_repopt(model, path, initialise=True)
    after = blocks[name].conv.weight.detach()
    a = scales[name].conv.view(-1, 1, 1, 1)
    torch.testing.assert_close(after[:, :, 0], before[:, :, 0] * a[:, :, 0])  # off-centre taps: 3x3 branch only
    assert not torch.allclose(after[:, :, 1, 1], before[:, :, 1, 1] * a[:, :, 0, 0])  # 1x1 and identity added
    assert len(masks) == len(blocks) and masks[blocks[name].conv.weight].shape == after.shape


def test_official_scales_file_and_repopt_weights_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Release-0.2.0-style pickles (LinearAddBlock / ScaleLayer / RealVGGBlock of yolov6.layers.common) load strictly."""
    import test_weights as official

    for kind in ("LinearAddBlock", "ScaleLayer", "RealVGGBlock"):
        monkeypatch.setitem(official.NAMES_020, kind, f"yolov6.layers.common.{kind}")
    hs = _random_scales(build_model("yolov6n-hs", num_classes=80))
    expected = {n: m.scale_1x1.weight.detach().half().float() for n, m in hs.named_modules() if hasattr(m, "scale_1x1")}
    path = official.write_official(tmp_path / "yolov6n_v2_scale.pt", hs, legacy=True)
    scales = read_scales(path, get_config("yolov6n-repopt"))
    assert scales.keys() == expected.keys()
    assert all(torch.equal(scales[n].one_by_one, expected[n]) for n in expected)

    repopt = randomize_model(build_model("yolov6n-repopt", num_classes=80)).eval()
    with torch.no_grad():
        reference = repopt.half().float()(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    path = official.write_official(tmp_path / "yolov6n_opt.pt", repopt, legacy=True)
    loaded = load(path)
    assert loaded.name == "yolov6n-repopt" and loaded.source == "official"
    with torch.no_grad():
        got = loaded.model(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(got, reference)


@pytest.mark.parametrize("wrong", ["yolov6t-hs", "yolov6n-repopt", "yolov6n-v1"])
def test_scales_file_of_another_model_is_one_clear_error(tmp_path: Path, wrong: str) -> None:
    path = save_checkpoint(tmp_path / f"{wrong}.pt", build_model(wrong, num_classes=3))
    with pytest.raises(CheckpointError) as err:
        read_scales(path, get_config("yolov6n-repopt"))
    assert str(path) in str(err.value) and "yolov6n-hs" in str(err.value)


def test_scales_need_a_repopt_model(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "scales.pt", build_model("yolov6n-hs", num_classes=3))
    with pytest.raises(ConfigError, match="RepOpt model"):
        prepare_repopt(build_model("yolov6n-v1", num_classes=3), path, initialise=True)


@pytest.mark.parametrize("size", ["n", "t", "s"])
def test_key_layout_is_the_official_repopt_one(size: str) -> None:
    """Official configs/repopt: the paper-line network with every RepVGGBlock replaced by LinearAddBlock
    (``conv``, ``scale_conv``, ``conv_1x1``, ``scale_1x1``, ``scale_identity`` when in == out and stride 1, ``bn``)
    or RealVGGBlock (``conv``, ``bn``); every other key stays as in the paper line."""
    with torch.device("meta"):
        reference = build_model(f"yolov6{size}-v1")
        hs, repopt = build_model(f"yolov6{size}-hs"), build_model(f"yolov6{size}-repopt")
    bn = ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    expected_hs, expected_repopt = {}, {}
    rep_blocks = {n: m for n, m in reference.named_modules() if isinstance(m, RepVGGBlock)}
    for key, value in reference.state_dict().items():
        if not any(key.startswith(f"{n}.") for n in rep_blocks):
            expected_hs[key] = expected_repopt[key] = value.shape
    for name, block in rep_blocks.items():
        dense, c_out = block.rbr_dense.conv.weight.shape, block.rbr_dense.conv.weight.shape[0]
        tails = {"conv.weight": dense, "scale_conv.weight": (c_out,), "conv_1x1.weight": (*dense[:2], 1, 1)}
        tails["scale_1x1.weight"] = (c_out,)
        if block.rbr_identity is not None:
            tails["scale_identity.weight"] = (c_out,)
        tails.update({tail: hs.state_dict()[f"{name}.{tail}"].shape for tail in bn})
        expected_hs.update({f"{name}.{tail}": shape for tail, shape in tails.items()})
        expected_repopt.update({f"{name}.{t}": tails[t] for t in ["conv.weight", *bn]})
    assert {k: tuple(v.shape) for k, v in hs.state_dict().items()} == {k: tuple(v) for k, v in expected_hs.items()}
    assert {k: tuple(v.shape) for k, v in repopt.state_dict().items()} == {
        k: tuple(v) for k, v in expected_repopt.items()
    }
    assert "backbone.ERBlock_2.1.conv1.scale_identity.weight" in hs.state_dict()
    assert "backbone.stem.scale_identity.weight" not in hs.state_dict()


@pytest.mark.parametrize("name", ["yolov6n-hs", "yolov6n-repopt"])
def test_fused_hyper_search_and_repopt_models_match_unfused(name: str) -> None:
    model = randomize_model(_random_scales(build_model(name, num_classes=3))).eval()
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        expected = model(x)
        got = fuse(model)(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.device("meta"):
        deployed = build_model(name, num_classes=3, deploy=True)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in deployed.state_dict().items()}


def test_hyper_search_then_repopt_through_the_cli_then_export(tmp_path: Path, capsys) -> None:
    from yolov6_sdk.cli.train import main
    from yolov6_sdk.export.build import build

    data = generate_dataset(tmp_path / "data", 4, 2, imgsz=(64, 64), seed=3, num_classes=2)
    common = ["--data", str(data), "--epochs", "1", "--batch", "4", "--imgsz", "64", "--workers", "0",
              "--device", "cpu", "--min-warmup-iters", "0"]  # fmt: skip
    assert main(["--hyper-search", "--model", "yolov6n-repopt", "-o", str(tmp_path / "hs"), *common]) == 0
    scales = tmp_path / "hs" / "last.pt"
    assert load(scales).name == "yolov6n-hs"
    assert f"--repopt-scales {scales}" in capsys.readouterr().out
    assert main(["--repopt-scales", str(scales), "-o", str(tmp_path / "opt"), *common]) == 0
    trained = load(tmp_path / "opt" / "last.pt")
    assert trained.name == "yolov6n-repopt" and trained.meta["train_config"]["repopt_scales"] == str(scales)

    wrong = save_checkpoint(tmp_path / "tiny-scales.pt", build_model("yolov6t-hs", num_classes=2))
    assert main(["--repopt-scales", str(wrong), "-o", str(tmp_path / "refused"), *common]) == 2
    error = capsys.readouterr().err
    assert error.count("error:") == 1 and str(wrong) in error
    assert not (tmp_path / "refused").exists()

    result = build(weights=tmp_path / "opt" / "last.pt", backend="onnxruntime", precision="fp32",
                   imgsz=64, output=tmp_path / "engines")  # fmt: skip
    assert result.artifact.is_file() and result.artifact.suffix == ".onnx"


def test_initialisation_leaves_kernels_of_blocks_without_identity_on_the_3x3_and_1x1_only() -> None:
    _, plain = _block_pair(8, 16, 2)
    scales = {"block": BranchScales(torch.full((16,), 2.0), torch.zeros(16), None)}
    before = plain["block"].conv.weight.detach().clone()
    initialise_from_scales(plain, scales)
    torch.testing.assert_close(plain["block"].conv.weight.detach(), before * 2.0)
