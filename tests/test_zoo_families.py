"""The release families beyond the v3.0 N/S/M/L: each config has the official state_dict layout (a table written
down from the official code), runs, fuses to the same function and loads its release-format file exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_model
from test_official_families import CSP_NAMES, LITE_NAMES, write_release
from test_weights import assert_same_outputs, prepared, run
from test_zoo_qarep_mbla import QA_MBLA_LAYOUT
from torch import nn

from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.models.lite import CSPBlock, DPBlock, Lite_EffiBlockS1, Lite_EffiBlockS2, lite_widths
from yolov6_sdk.weights import load_official

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# name -> (tensor count incl. num_batches_tracked, {sample key: shape}) of the official model built from its config.
OFFICIAL_LAYOUT: dict[str, tuple[int, dict[str, tuple[int, ...]]]] = {
    "yolov6n6": (
        998,
        {
            "backbone.ERBlock_6.2.cspsppf.cv7.block.conv.weight": (256, 256, 1, 1),
            "neck.Bifusion0.cv2.block.conv.weight": (128, 128, 1, 1),
            "neck.Rep_n6.conv1.rbr_dense.conv.weight": (256, 256, 3, 3),
            "detect.reg_preds.3.weight": (4, 256, 1, 1),
        },
    ),
    "yolov6s6": (
        998,
        {
            "backbone.ERBlock_6.2.cspsppf.cv7.block.conv.weight": (512, 512, 1, 1),
            "neck.Bifusion0.cv2.block.conv.weight": (256, 256, 1, 1),
            "neck.Rep_n6.conv1.rbr_dense.conv.weight": (512, 512, 3, 3),
            "detect.stems.3.block.conv.weight": (512, 512, 1, 1),
        },
    ),
    "yolov6m6": (
        1606,
        {
            "backbone.ERBlock_6.2.sppf.cv2.block.conv.weight": (768, 1536, 1, 1),
            "neck.Bifusion0.cv2.block.conv.weight": (384, 384, 1, 1),
            "neck.Rep_n6.cv3.block.conv.weight": (768, 1024, 1, 1),
            "detect.reg_preds.3.weight": (68, 768, 1, 1),
        },
    ),
    "yolov6l6": (
        1230,
        {
            "backbone.ERBlock_6.2.sppf.cv2.block.conv.weight": (1024, 2048, 1, 1),
            "neck.Bifusion0.cv2.block.conv.weight": (512, 512, 1, 1),
            "neck.Rep_n6.cv3.block.conv.weight": (1024, 1024, 1, 1),
            "detect.reg_preds.3.weight": (68, 1024, 1, 1),
        },
    ),
    **{
        f"yolov6lite-{size}": (
            820,
            {
                "backbone.conv_0.block.conv.weight": (24, 3, 3, 3),
                "backbone.lite_effiblock_4.0.conv_dw_3.block.conv.weight": (last, 1, 3, 3),
                "backbone.lite_effiblock_3.6.se.conv1.bias": (se,),
                "neck.reduce_layer0.block.conv.weight": (96, last, 1, 1),
                "neck.p6_conv_2.conv_dw_1.bias": (96,),
                "neck.Csp_n4.blocks.conv_2.bn_2.running_var": (48,),
                "detect.reg_preds.3.weight": (4, 96, 1, 1),
                "detect.stems.0.conv_dw_1.weight": (96, 1, 5, 5),
            },
        )
        for size, last, se in (("s", 176, 12), ("m", 288, 18), ("l", 384, 24))
    },
    "yolov6n-base": (
        396,
        {
            "backbone.stem.block.conv.weight": (16, 3, 3, 3),
            "backbone.ERBlock_5.2.cspsppf.cv7.block.conv.weight": (256, 256, 1, 1),
            "neck.Rep_p3.block.0.block.conv.weight": (32, 32, 3, 3),
            "detect.reg_preds.2.weight": (68, 128, 1, 1),
        },
    ),
    "yolov6s-base": (
        750,
        {
            "backbone.stem.block.conv.weight": (32, 3, 3, 3),
            "backbone.ERBlock_5.2.cspsppf.cv7.block.conv.weight": (512, 512, 1, 1),
            "neck.Rep_n4.m.conv1.conv1.block.conv.weight": (128, 128, 3, 3),
            "detect.reg_preds.2.weight": (68, 256, 1, 1),
        },
    ),
    "yolov6m-base": (
        798,
        {
            "backbone.stem.block.conv.weight": (48, 3, 3, 3),
            "backbone.ERBlock_5.2.sppf.cv2.block.conv.weight": (768, 1536, 1, 1),
            "neck.Rep_n4.m.conv1.conv1.block.conv.weight": (192, 192, 3, 3),
            "detect.reg_preds.2.weight": (68, 384, 1, 1),
        },
    ),
    "yolov6l-base": (
        915,
        {
            "backbone.stem.block.conv.weight": (64, 3, 3, 3),
            "backbone.ERBlock_5.2.sppf.cv2.block.conv.weight": (1024, 2048, 1, 1),
            "neck.Rep_n4.m.conv1.conv1.block.conv.weight": (256, 256, 3, 3),
            "detect.reg_preds.2.weight": (68, 512, 1, 1),
        },
    ),
}


@pytest.mark.parametrize("name", [*OFFICIAL_LAYOUT, *QA_MBLA_LAYOUT])
def test_state_dict_matches_the_official_layout_table(name: str) -> None:
    count, samples = {**OFFICIAL_LAYOUT, **QA_MBLA_LAYOUT}[name]
    with torch.device("meta"):
        state = build_model(name).state_dict()
    assert len(state) == count
    assert {key: tuple(state[key].shape) for key in samples} == samples


@pytest.mark.parametrize("name", ["yolov6n-base", "yolov6s-base", "yolov6m-base", "yolov6l-base"])
def test_base_models_are_relu_except_the_silu_head_convs(name: str) -> None:
    model = build_model(name)
    kinds = {
        (path.split(".")[0], type(m).__name__) for path, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.SiLU))
    }
    assert kinds == {("backbone", "ReLU"), ("neck", "ReLU"), ("detect", "SiLU")}


@pytest.mark.parametrize("name", ["yolov6n6", "yolov6s6", "yolov6m6", "yolov6l6"])
def test_p6_fused_model_matches_unfused_within_1e_4(name: str) -> None:
    model = randomize_model(build_model(name, num_classes=3)).eval()
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        unfused = model(x)
        fused = fuse(model)(x)
    assert unfused.shape == (1, 8 * 16 + 4 * 8 + 2 * 4 + 1 * 2, 8)
    scale = torch.cat(
        [torch.full((h * w, 1), float(s)) for h, w, s in ((8, 16, 8), (4, 8, 16), (2, 4, 32), (1, 2, 64))]
    )
    torch.testing.assert_close(fused[..., :4] / scale, unfused[..., :4] / scale, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused[..., 4:], unfused[..., 4:], rtol=0, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_p6_has_four_levels_and_8500_anchor_points_at_640() -> None:
    with torch.device("meta"), torch.no_grad():
        model = build_model("yolov6n6").eval()
        out = model(torch.zeros(1, 3, 640, 640))
    assert model.strides == (8, 16, 32, 64) and model.config.imgsz == 1280
    assert out.shape == (1, 8500, 85)


@pytest.mark.parametrize(
    ("name", "names"),
    [
        ("yolov6n6", {"EfficientRep6": "yolov6.models.efficientrep.EfficientRep6",
                      "RepBiFPAN6": "yolov6.models.reppan.RepBiFPANNeck6"}),
        ("yolov6m6", {"EfficientRep6": "yolov6.models.efficientrep.CSPBepBackbone_P6",
                      "RepBiFPAN6": "yolov6.models.reppan.CSPRepBiFPANNeck_P6"}),
    ],
)  # fmt: skip
def test_p6_release_file_loads_exactly(name: str, names: dict[str, str], tmp_path: Path) -> None:
    model, reference = prepared(name)
    loaded = load_official(write_release(tmp_path / f"{name}.pt", model, names))
    assert loaded.name == name and loaded.model.strides == (8, 16, 32, 64)
    assert_same_outputs(run(loaded.model), run(reference))


@pytest.mark.parametrize("name", ["yolov6lite-s", "yolov6lite-m", "yolov6lite-l"])
def test_lite_fuse_folds_every_batchnorm_and_keeps_the_outputs(name: str) -> None:
    model = randomize_model(build_model(name, num_classes=3)).eval()
    x = torch.rand(2, 3, 128, 192, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        unfused = model(x)
        fused = fuse(model)(x)
    assert unfused.shape == (2, 16 * 24 + 8 * 12 + 4 * 6 + 2 * 3, 8)
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.device("meta"):
        deployed = build_model(name, num_classes=3, deploy=True)
    assert {k: v.shape for k, v in deployed.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("make_block", "channels"),
    [
        (lambda: DPBlock(8, 5, 2), 8),
        (lambda: Lite_EffiBlockS1(16, 8, 16), 16),
        (lambda: Lite_EffiBlockS2(8, 16, 16), 8),
        (lambda: CSPBlock(16, 8, 5), 16),
    ],
)
def test_each_lite_block_fuses_to_the_same_function(make_block, channels: int) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    block = randomize_model(make_block().eval())
    x = torch.randn(2, channels, 16, 16)
    with torch.no_grad():
        expected = block(x)
        got = fuse(block)(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_lite_has_2125_anchor_points_at_320_and_lite_channel_rounding() -> None:
    with torch.device("meta"), torch.no_grad():
        model = build_model("yolov6lite-s").eval()
        out = model(torch.zeros(1, 3, 320, 320))
    assert out.shape == (1, 2125, 85) and model.config.imgsz == 320
    assert lite_widths(0.7) == ([24, 32, 48, 96, 176], [8, 16, 24, 48, 88])
    assert not hasattr(model.detect, "proj")


def test_lite_release_file_in_the_stripped_format_loads_exactly(tmp_path: Path) -> None:
    model, reference = prepared("yolov6lite-m")
    model.requires_grad_(False)  # the stripped format: the EMA copy, eval mode, no gradients
    loaded = load_official(write_release(tmp_path / "yolov6lite_m.pt", model, LITE_NAMES))
    assert loaded.name == "yolov6lite-m" and loaded.imgsz == 320
    assert loaded.meta["official_classes"]["detect"] == "yolov6.models.heads.effidehead_lite.Detect"
    assert_same_outputs(run(loaded.model), run(reference))


def test_relu_l_base_release_file_loads_as_l_base_not_the_silu_l(tmp_path: Path) -> None:
    model, reference = prepared("yolov6l-base")
    loaded = load_official(write_release(tmp_path / "yolov6l_base.pt", model, CSP_NAMES))
    assert loaded.name == "yolov6l-base" and loaded.meta["epoch"] == 299
    assert_same_outputs(run(loaded.model), run(reference))


def test_n_base_release_file_loads_exactly(tmp_path: Path) -> None:
    model, reference = prepared("yolov6n-base")
    loaded = load_official(write_release(tmp_path / "yolov6n_base.pt", model))
    assert loaded.name == "yolov6n-base"
    assert_same_outputs(run(loaded.model), run(reference))


ONE_PER_FAMILY = {"yolov6s-base": (64, 96), "yolov6n6": (64, 128), "yolov6lite-s": (128, 192)}
"""A model of each family and an (H, W) that is a multiple of its largest stride, for the export checks."""


@pytest.mark.parametrize("name", list(ONE_PER_FAMILY))
def test_onnx_export_matches_torch_raw_and_end_to_end(name: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    from yolov6_sdk.export.onnx import ExportOptions, export_onnx

    imgsz = ONE_PER_FAMILY[name]
    model = randomize_model(build_model(name, num_classes=4)).eval()
    images = torch.rand(2, 3, *imgsz, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(images).numpy()
    raw = export_onnx(model, tmp_path / "raw.onnx", ExportOptions(imgsz=imgsz, simplify=False))
    got = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"]).run(None, {"images": images.numpy()})
    np.testing.assert_allclose(got[0], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    e2e = export_onnx(model, tmp_path / "e2e.onnx", ExportOptions(imgsz=imgsz, nms="ort", conf=0.01, simplify=False))
    session = ort.InferenceSession(str(e2e), providers=["CPUExecutionProvider"])
    num_dets, boxes, scores, classes = session.run(None, {"images": images.numpy()})
    assert num_dets.shape == (2, 1) and boxes.shape[:2] == scores.shape == classes.shape
    assert 0 < int(num_dets[0, 0]) <= boxes.shape[1]


def test_p6_default_image_size_is_1280_in_our_checkpoints_and_release_files(tmp_path: Path) -> None:
    from yolov6_sdk.weights import load, save_checkpoint

    model, _ = prepared("yolov6n6")
    assert load(save_checkpoint(tmp_path / "ours.pt", model)).imgsz == 1280
    assert (
        load(
            write_release(
                tmp_path / "release.pt",
                model,
                {
                    "EfficientRep6": "yolov6.models.efficientrep.EfficientRep6",
                    "RepBiFPAN6": "yolov6.models.reppan.RepBiFPANNeck6",
                },
            )
        ).imgsz
        == 1280
    )
    assert load(save_checkpoint(tmp_path / "n.pt", build_model("yolov6n", 3))).imgsz == 640
