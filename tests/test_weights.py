"""Checkpoints: our format round-trips exactly; official release files load safely and give the same outputs."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_model
from torch import nn

from yolov6_sdk.errors import CheckpointError, ConfigError
from yolov6_sdk.models import ZOO, YOLOv6, build_model
from yolov6_sdk.models.blocks import RepVGGBlock
from yolov6_sdk.weights import FORMAT, load, load_official, save_checkpoint

IMAGES = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))

_COMMON = "yolov6.layers.common"
# Our class name -> official qualified class name. v3.0 files pickle release 0.4.x classes ...
NAMES_04X = {
    "YOLOv6": "yolov6.models.yolo.Model",
    "EfficientRep": "yolov6.models.efficientrep.EfficientRep",
    "RepBiFPAN": "yolov6.models.reppan.RepBiFPANNeck",
    "EffiDeHead": "yolov6.models.heads.effidehead_distill_ns.Detect",
    "RepVGGBlock": f"{_COMMON}.RepVGGBlock",
    "RepBlock": f"{_COMMON}.RepBlock",
    "ConvBN": f"{_COMMON}.ConvModule",
    "CSPSPPFWrapper": f"{_COMMON}.SimCSPSPPF",
    "CSPSPPF": f"{_COMMON}.CSPSPPFModule",
    "BiFusion": f"{_COMMON}.BiFusion",
    "Transpose": f"{_COMMON}.Transpose",
}
# ... and paper-line files release 0.2.0 classes (RepVGG branches were plain nn.Sequential there).
NAMES_020 = {
    "YOLOv6": "yolov6.models.yolo.Model",
    "EfficientRep": "yolov6.models.efficientrep.EfficientRep",
    "RepPAN": "yolov6.models.reppan.RepPANNeck",
    "EffiDeHead": "yolov6.models.effidehead.Detect",
    "RepVGGBlock": f"{_COMMON}.RepVGGBlock",
    "RepBlock": f"{_COMMON}.RepBlock",
    "SPPF": f"{_COMMON}.SimSPPF",
    "Transpose": f"{_COMMON}.Transpose",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _official_name(module: nn.Module, parent: nn.Module | None, names: dict[str, str], legacy: bool) -> str:
    """The official class a module of ours stands for in a release file."""
    kind = type(module).__name__
    if kind == "WrappedConvBN":
        return f"{_COMMON}.ConvBNSiLU" if isinstance(module.block.act, nn.SiLU) else f"{_COMMON}.ConvBNReLU"
    if kind == "ConvBN" and legacy:
        if isinstance(parent, RepVGGBlock):
            return "torch.nn.modules.container.Sequential"
        return f"{_COMMON}.Conv" if isinstance(module.act, nn.SiLU) else f"{_COMMON}.SimConv"
    return names[kind]


@contextlib.contextmanager
def fake_official_package() -> Iterator[Callable[[str], type]]:
    """Put importable stand-ins of the official ``yolov6`` modules in sys.modules, and remove them afterwards."""
    added: list[str] = []
    classes: dict[str, type] = {}

    def module(name: str) -> types.ModuleType:
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
        return sys.modules[name]

    def make(qualified: str) -> type:
        if qualified not in classes:
            module_name, short = qualified.rsplit(".", 1)
            parts = module_name.split(".")
            for i in range(1, len(parts) + 1):
                module(".".join(parts[:i]))
            cls = type(short, (nn.Module,), {"__module__": module_name, "__qualname__": short})
            setattr(sys.modules[module_name], short, cls)
            classes[qualified] = cls
        return classes[qualified]

    try:
        yield make
    finally:
        for name in reversed(added):
            del sys.modules[name]


def _to_official(model: YOLOv6, make: Callable[[str], type], legacy: bool, head: str | None) -> YOLOv6:
    """Re-class every module of ours (in place) to the official class a release file pickles; fp16 like a release."""
    names = {**(NAMES_020 if legacy else NAMES_04X), **({"EffiDeHead": head} if head else {})}
    nc = model.num_classes
    parents = {child: parent for parent in model.modules() for child in parent.children()}
    for module in list(model.modules()):
        if type(module).__module__.startswith("yolov6_sdk"):
            qualified = _official_name(module, parents.get(module), names, legacy)
            module.__class__ = nn.Sequential if qualified.startswith("torch.nn.") else make(qualified)
    del model.config, model.num_classes  # the official Model keeps nc, names and stride instead
    model.nc, model.names = nc, [f"class{i}" for i in range(nc)]
    model.stride = model.detect.stride = torch.tensor([8.0, 16.0, 32.0])
    return model.half()


def write_official(
    path: Path,
    model: YOLOv6,
    legacy: bool,
    ema: YOLOv6 | None = None,
    head: str | None = None,
    zip_format: bool = True,
) -> Path:
    """torch.save ``model`` (and ``ema``) as a release file does, with the official classes importable only meanwhile."""
    with fake_official_package() as make:
        checkpoint = {
            "model": _to_official(model, make, legacy, head),
            "ema": _to_official(ema, make, legacy, head) if ema is not None else None,
            "updates": None,
            "optimizer": None,
            "epoch": 3,
            "results": (np.float64(0.25), np.float64(0.125)),  # pycocotools gives numpy floats
        }
        torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    assert not any(name == "yolov6" or name.startswith("yolov6.") for name in sys.modules)
    return path


def prepared(config_name: str, **changes: object) -> tuple[YOLOv6, YOLOv6]:
    """A randomised model with a few BNs at eps 1e-5 (and small variances, so eps matters), and its fp32 reference
    taken from the same fp16 weights a release file holds."""
    config = replace(ZOO[config_name], **changes)
    model = randomize_model(YOLOv6(config, num_classes=3))
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in batchnorms[:4]:
        bn.eps = 1e-5
        bn.running_var.fill_(2e-3)
    model.eval()
    reference = copy.deepcopy(model).half().float()
    return model, reference


def assert_same_outputs(got: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@torch.no_grad()
def run(model: nn.Module) -> torch.Tensor:
    return model.eval()(IMAGES)


# ------------------------------------------------------------------------------------------------ our format


@pytest.fixture(scope="module")
def trained() -> YOLOv6:
    model = randomize_model(build_model("yolov6n", num_classes=3)).eval()
    model.names = ["person", "car", "dog"]
    return model


def test_sdk_checkpoint_round_trips_with_identical_outputs(trained: YOLOv6, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "n.pt", trained, imgsz=320, meta={"epoch": 7, "mAP": 0.5})
    loaded = load(path)
    assert loaded.source == "sdk" and loaded.name == "yolov6n" and loaded.imgsz == 320
    assert loaded.names == ("person", "car", "dog") and loaded.model.names == ["person", "car", "dog"]
    assert loaded.meta["epoch"] == 7 and loaded.meta["fused"] is False and loaded.meta["distill_head"] is True
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not loaded.model.training and next(loaded.model.parameters()).dtype == torch.float32
    assert torch.equal(run(loaded.model), run(trained))


def test_sdk_checkpoint_loads_with_weights_only(trained: YOLOv6, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "n.pt", trained)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["format"] == FORMAT and checkpoint["model"] == "yolov6n" and checkpoint["num_classes"] == 3
    assert checkpoint["state_dict"].keys() == trained.state_dict().keys()


def test_fused_checkpoint_is_rebuilt_fused_with_identical_outputs(tmp_path: Path) -> None:
    fused = randomize_model(build_model("yolov6n", num_classes=3, deploy=True)).eval()  # what fuse() leaves
    loaded = load(save_checkpoint(tmp_path / "fused.pt", fused))
    assert loaded.meta["fused"] is True
    assert loaded.model.state_dict().keys() == fused.state_dict().keys()
    assert torch.equal(run(loaded.model), run(fused))


def test_loading_with_fuse_matches_the_unfused_model(trained: YOLOv6, tmp_path: Path) -> None:
    loaded = load(save_checkpoint(tmp_path / "n.pt", trained), fuse=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in loaded.model.modules())
    assert_same_outputs(run(loaded.model), run(trained))


def test_batchnorm_eps_survives_our_format(tmp_path: Path) -> None:
    model, _ = prepared("yolov6n-v1")
    loaded = load(save_checkpoint(tmp_path / "v1.pt", model))
    assert loaded.model.backbone.stem.rbr_dense.bn.eps == model.backbone.stem.rbr_dense.bn.eps == 1e-5
    assert torch.equal(run(loaded.model), run(model))


def test_non_distilled_variant_round_trips(tmp_path: Path) -> None:
    model = YOLOv6(replace(ZOO["yolov6n"], distill_head=False), num_classes=2)
    loaded = load(save_checkpoint(tmp_path / "plain.pt", model))
    assert loaded.name == "yolov6n" and not hasattr(loaded.model.detect, "reg_preds_dist")


def test_save_rejects_wrong_names_and_non_plain_meta(trained: YOLOv6, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="3 strings"):
        save_checkpoint(tmp_path / "x.pt", trained, names=["a"])
    with pytest.raises(ConfigError, match="numpy"):
        save_checkpoint(tmp_path / "x.pt", trained, meta={"mAP": np.float32(0.5)})
    assert not list(tmp_path.iterdir())


def test_failed_save_leaves_the_previous_file_and_no_temporary(
    trained: YOLOv6, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "n.pt", trained)
    before = path.read_bytes()

    def broken_save(obj: object, stream: object) -> None:
        stream.write(b"PK\x03\x04 half")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, trained)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["n.pt"]


# ----------------------------------------------------------------------------------------- official files


def test_official_v3_release_file_loads_with_identical_outputs(tmp_path: Path) -> None:
    model, reference = prepared("yolov6n")
    write_official(tmp_path / "yolov6n.pt", model, legacy=False)
    loaded = load_official(tmp_path / "yolov6n.pt")
    assert loaded.source == "official" and loaded.name == "yolov6n" and loaded.meta["distill_head"] is True
    assert loaded.names == ("class0", "class1", "class2") and loaded.meta["epoch"] == 3
    assert loaded.meta["results"] == [0.25, 0.125]
    assert loaded.meta["official_classes"]["detect"] == "yolov6.models.heads.effidehead_distill_ns.Detect"
    assert loaded.model.backbone.stem.rbr_dense.bn.eps == 1e-5
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert_same_outputs(run(loaded.model), run(reference))


def test_official_paper_line_release_file_loads_with_identical_outputs(tmp_path: Path) -> None:
    model, reference = prepared("yolov6n-v1")
    write_official(tmp_path / "yolov6n-v1.pt", model, legacy=True)
    loaded = load(tmp_path / "yolov6n-v1.pt")  # auto-detected
    assert loaded.source == "official" and loaded.name == "yolov6n-v1"
    eps = [m.eps for m in loaded.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert eps[:4] == [1e-5] * 4 and set(eps[4:]) == {1e-3}
    assert_same_outputs(run(loaded.model), run(reference))


def test_official_file_without_distillation_and_with_anchor_aided_branch_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, reference = prepared("yolov6n", distill_head=False)
    model.detect.cls_preds_ab = nn.ModuleList(nn.Conv2d(c.in_channels, 9, 1) for c in model.detect.cls_preds)
    model.detect.reg_preds_ab = nn.ModuleList(nn.Conv2d(c.in_channels, 12, 1) for c in model.detect.cls_preds)
    write_official(tmp_path / "ab.pt", model, legacy=False, head="yolov6.models.heads.effidehead_fuseab.Detect")
    with caplog.at_level(logging.INFO, logger="yolov6_sdk.official"):
        loaded = load_official(tmp_path / "ab.pt")
    assert "anchor-aided" in caplog.text
    assert loaded.meta["distill_head"] is False and not hasattr(loaded.model.detect, "reg_preds_dist")
    assert_same_outputs(run(loaded.model), run(reference))


def test_fused_official_file_is_rebuilt_fused(tmp_path: Path) -> None:
    model = randomize_model(build_model("yolov6n-v1", num_classes=3, deploy=True)).eval()
    reference = copy.deepcopy(model).half().float()
    loaded = load_official(write_official(tmp_path / "fused.pt", model, legacy=True))
    assert loaded.meta["fused"] is True and loaded.name == "yolov6n-v1"
    assert_same_outputs(run(loaded.model), run(reference))


@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")  # legacy torch.save of the stand-in classes
def test_official_file_in_legacy_torch_serialization_loads(tmp_path: Path) -> None:
    model, reference = prepared("yolov6n-v1")
    loaded = load(write_official(tmp_path / "legacy.pt", model, legacy=True, zip_format=False))
    assert loaded.source == "official"
    assert_same_outputs(run(loaded.model), run(reference))


def test_official_model_of_unknown_layout_is_refused_with_what_was_found(tmp_path: Path) -> None:
    model, _ = prepared("yolov6n-v1")
    del model.detect.reg_preds
    write_official(tmp_path / "odd.pt", model, legacy=True)
    with pytest.raises(CheckpointError, match=r"matches no zoo config: 3 classes.*missing \(6\): detect.reg_preds"):
        load_official(tmp_path / "odd.pt")


def test_truthy_ema_is_preferred_over_model(tmp_path: Path) -> None:
    model = randomize_model(build_model("yolov6n-v1", num_classes=5))
    ema, reference = prepared("yolov6n-v1")
    loaded = load_official(write_official(tmp_path / "ema.pt", model, legacy=True, ema=ema))
    assert loaded.model.num_classes == 3
    assert_same_outputs(run(loaded.model), run(reference))


# ----------------------------------------------------------------------------------------- hostile files


SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux and macOS


class _Payload:
    def __init__(self, call: object, *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call, self.args


def test_pickle_payload_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(os.system, f"touch {marker}"), "epoch": 1}, path)
    with pytest.raises(CheckpointError, match=rf"refusing to load .*evil.pt: it references {SYSTEM}"):
        load_official(path)
    with pytest.raises(CheckpointError, match=SYSTEM):
        load(path)
    assert not marker.exists()


def test_builtin_eval_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"ema": _Payload(eval, f"open({str(marker)!r}, 'w')")}, path)
    with pytest.raises(CheckpointError, match="builtins.eval, which is not part of a YOLOv6 model"):
        load(path)
    assert not marker.exists()


def test_payload_hidden_inside_an_official_model_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    model, _ = prepared("yolov6n-v1")
    model.detect.__dict__["hook"] = _Payload(os.system, f"touch {marker}")
    write_official(tmp_path / "evil.pt", model, legacy=True)
    with pytest.raises(CheckpointError, match=SYSTEM):
        load_official(tmp_path / "evil.pt")
    assert not marker.exists()


def test_missing_empty_truncated_and_foreign_files_are_refused(trained: YOLOv6, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "absent.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load(tmp_path / "empty.pt")
    whole = save_checkpoint(tmp_path / "n.pt", trained).read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_official(tmp_path / "cut.pt")
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        load(tmp_path / "notes.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="neither a yolov6-sdk checkpoint"):
        load(tmp_path / "other.pt")
