"""Official release files are recognised by what they pickle (module classes, activations), not by tensor names alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_weights import assert_same_outputs, fake_official_package, prepared, run, write_official
from torch import nn

from yolov6_sdk.errors import CheckpointError
from yolov6_sdk.models import build_model
from yolov6_sdk.models.signature import structure_signature
from yolov6_sdk.weights import load_official

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_COMMON = "yolov6.layers.common"
# Our class name -> the official (release 0.4.x) class a release file pickles; blocks that share their official
# name are not listed. Per-config differences (backbone and neck names, head module) are passed by each test.
RELEASE_NAMES = {
    "YOLOv6": "yolov6.models.yolo.Model",
    "EfficientRep": "yolov6.models.efficientrep.EfficientRep",
    "RepBiFPAN": "yolov6.models.reppan.RepBiFPANNeck",
    "EffiDeHead": "yolov6.models.effidehead.Detect",
    "ConvBN": f"{_COMMON}.ConvModule",
    "SPPF": f"{_COMMON}.SPPFModule",
    "CSPSPPF": f"{_COMMON}.CSPSPPFModule",
}
LITE_NAMES = {
    "YOLOv6": "yolov6.models.yolo_lite.Model",
    "LiteBackbone": "yolov6.models.efficientrep.Lite_EffiBackbone",
    "LiteNeck": "yolov6.models.reppan.Lite_EffiNeck",
    "LiteHead": "yolov6.models.heads.effidehead_lite.Detect",
}
CSP_NAMES = {
    "EfficientRep": "yolov6.models.efficientrep.CSPBepBackbone",
    "RepBiFPAN": "yolov6.models.reppan.CSPRepBiFPANNeck",
}


def _release_class(module: nn.Module, names: dict[str, str]) -> str:
    kind = type(module).__name__
    if kind == "WrappedConvBN":
        wrapper = {"SiLU": "ConvBNSiLU", "ReLU": "ConvBNReLU", "Hardswish": "ConvBNHS", "Identity": "ConvBN"}
        return f"{_COMMON}.{wrapper[type(module.block.act).__name__]}"
    if kind in ("SPPFWrapper", "CSPSPPFWrapper"):
        inner = module.sppf if kind == "SPPFWrapper" else module.cspsppf
        silu = isinstance(inner.cv1.block.act, nn.SiLU)
        return f"{_COMMON}.{'' if silu else 'Sim'}{'SPPF' if kind == 'SPPFWrapper' else 'CSPSPPF'}"
    return names.get(kind, f"{_COMMON}.{kind}")


def write_release(path: Path, model: nn.Module, names: dict[str, str] | None = None) -> Path:
    """torch.save ``model`` as a converted-format release file (fp16 training-mode model under ``model``, epoch
    299), every module of ours re-classed in place to a stand-in of its official class."""
    table = {**RELEASE_NAMES, **(names or {})}
    nc = model.num_classes
    with fake_official_package() as make:
        for module in list(model.modules()):
            if type(module).__module__.startswith("yolov6_sdk"):
                module.__class__ = make(_release_class(module, table))
        strides = model.config.strides
        del model.config, model.num_classes
        model.nc, model.names = nc, [f"class{i}" for i in range(nc)]
        model.stride = model.detect.stride = torch.tensor([float(s) for s in strides])
        torch.save({"model": model.half(), "ema": None, "optimizer": None, "epoch": 299}, path)
    return path


def _swap_activations(model: nn.Module, old: type[nn.Module], new: type[nn.Module], under: str = "") -> int:
    """Replace every ``old`` activation layer below the module path ``under`` by ``new``; returns how many."""
    swapped = 0
    for path, module in model.named_modules():
        if not path.startswith(under):
            continue
        for name, child in module.named_children():
            if type(child) is old:
                setattr(module, name, new(inplace=True))
                swapped += 1
    return swapped


def test_signature_keys_activations_by_their_owner_and_counts_shared_instances() -> None:
    shared = nn.ReLU()
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 1), shared), nn.Sequential(shared), nn.Identity())
    assert structure_signature(model) == {"0": "ReLU", "1": "ReLU"}


def test_yolov6l_and_a_relu_twin_share_every_tensor_but_not_the_signature() -> None:
    silu, relu = build_model("yolov6l", 3), build_model("yolov6l", 3)
    assert _swap_activations(relu, nn.SiLU, nn.ReLU, under="backbone") > 0
    assert {k: v.shape for k, v in silu.state_dict().items()} == {k: v.shape for k, v in relu.state_dict().items()}
    assert structure_signature(silu) != structure_signature(relu)


def test_official_file_with_matching_tensors_but_other_activations_is_refused(tmp_path: Path) -> None:
    model, _ = prepared("yolov6n")
    _swap_activations(model, nn.SiLU, nn.ReLU, under="detect")  # no official config has a ReLU head
    write_official(tmp_path / "relu-head.pt", model, legacy=False)
    with pytest.raises(
        CheckpointError, match=r"tensors match yolov6n.*detect\.cls_convs\.0\.block: ReLU \(expected SiLU\)"
    ):
        load_official(tmp_path / "relu-head.pt")


def test_official_file_with_matching_activations_still_loads_exactly(tmp_path: Path) -> None:
    model, reference = prepared("yolov6l")
    loaded = load_official(write_release(tmp_path / "yolov6l.pt", model, CSP_NAMES))
    assert loaded.name == "yolov6l"
    assert_same_outputs(run(loaded.model), run(reference))
