"""The whole deployment chain for one model of every release family at a small size: checkpoint -> fp32 ONNX equal
to torch -> INT8 build with Q/DQ on every body convolution and one scale per concatenation and residual addition
-> detections through the Detector; and each family's default image size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import randomize_model
from test_zoo_qarep_mbla import calibrated

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.export import qdq
from yolov6_sdk.export.build import build
from yolov6_sdk.models import ZOO, build_model
from yolov6_sdk.training.datagen import write_calibration_images
from yolov6_sdk.weights import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE_PER_FAMILY = {
    "qarepvgg": ("yolov6n-qa", 64),
    "mbla": ("yolov6s-mbla", 64),
    "lite": ("yolov6lite-s", 128),
    "p6": ("yolov6n6", 128),
    "base": ("yolov6n-base", 64),
    "paper": ("yolov6n-v1", 64),
    "v3.0": ("yolov6n", 64),
}
"""family -> (a small model of it, a square size that is a multiple of its largest stride)."""
RESIDUAL_ADDS = {"mbla": 10, "lite": 1}
"""Quantised residual additions at least in the family's model: MBLA's BottleRep3 shortcuts, Lite's stride-64 sum."""


def test_every_family_has_a_chain_case() -> None:
    assert set(ONE_PER_FAMILY) | {"repopt"} == {config.family for config in ZOO.values()}


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    write_calibration_images(folder, 4, seed=3, imgsz=(96, 128))
    return folder


def _checkpoint(name: str, imgsz: int, folder: Path) -> tuple[Path, torch.nn.Module]:
    """A checkpoint of random weights whose outputs are not trivial (non-identity BatchNorms, live predictors)."""
    model = build_model(name, num_classes=3)
    model = calibrated(model, 4, 3, imgsz, imgsz) if ZOO[name].family == "qarepvgg" else randomize_model(model)
    model.names = ["a", "b", "c"]
    return save_checkpoint(folder / f"{name}.pt", model.eval(), imgsz=imgsz), model


def _dequantized_inputs(model: onnx.ModelProto, node: onnx.NodeProto) -> set[tuple[float, int]]:
    """(scale, zero point) of the DequantizeLinear producers of ``node``'s inputs."""
    producers = {out: n for n in model.graph.node for out in n.output}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    found = set()
    for tensor in node.input:
        dq = producers.get(tensor)
        if dq is not None and dq.op_type == "DequantizeLinear":
            zero = int(inits[dq.input[2]].ravel()[0]) if len(dq.input) > 2 else 0
            found.add((float(inits[dq.input[1]].ravel()[0]), zero))
    return found


@pytest.mark.parametrize(
    "family",
    [f if f in ("qarepvgg", "mbla", "lite") else pytest.param(f, marks=pytest.mark.slow) for f in ONE_PER_FAMILY],
)  # the families on main are also built by test_build, test_quantize and test_zoo_families
def test_family_chain_onnx_equals_torch_int8_places_qdq_and_detects(
    family: str, calib_dir: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    from yolov6_sdk.runtime.detector import Detector

    name, imgsz = ONE_PER_FAMILY[family]
    weights, model = _checkpoint(name, imgsz, tmp_path)
    common = {"weights": weights, "backend": "onnxruntime", "output": tmp_path / "engines", "batch_sizes": [1, 2]}
    fp32 = build(**common, precision="fp32").artifact
    images = torch.rand(2, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(images).numpy()
    got = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"images": images.numpy()})
    np.testing.assert_allclose(got[0], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())

    int8 = build(**common, precision="int8", calib=calib_dir, calib_size=4).artifact
    graph = onnx.load(str(int8))
    split = qdq.split_head(graph)
    assert len(split.preds) == 2 * len(model.strides)
    assert qdq.conv_inputs_without_dq(graph, skip=split.tail) == []
    assert qdq.qdq_nodes_among(graph, split.tail) == []
    assert qdq.concat_scale_mismatches(graph) == []
    adds = [n for n in graph.graph.node if n.op_type == "Add" and n.name not in set(split.tail)]
    assert all(len(_dequantized_inputs(graph, add)) <= 1 for add in adds)  # one scale for both addends
    quantised_adds = [add for add in adds if _dequantized_inputs(graph, add)]
    assert len(quantised_adds) >= RESIDUAL_ADDS.get(family, 0)

    frame = (np.random.default_rng(0).random((imgsz + 20, imgsz, 3)) * 255).astype(np.uint8)
    with Detector(int8, device="cpu", conf=0.01) as detector:
        assert detector.imgsz == (imgsz, imgsz)
        (result,) = detector(frame)
    assert result.orig_shape == frame.shape[:2]
    assert result.boxes.xyxy.shape == (len(result), 4)


@pytest.mark.parametrize(("name", "side"), [("yolov6n6", 1280), ("yolov6lite-m", 320), ("yolov6s-mbla", 640)])
def test_default_image_size_comes_from_the_model(name: str, side: int, tmp_path: Path) -> None:
    from yolov6_sdk.bench import BenchOptions
    from yolov6_sdk.export.options import BuildOptions
    from yolov6_sdk.export.plan import plan_build
    from yolov6_sdk.training.config import TrainConfig

    plan = plan_build(BuildOptions(random_weights=True, model=name, backend="onnxruntime", output=tmp_path))
    assert plan.imgsz == (side, side)
    assert TrainConfig(model=name, data="x").imgsz == side
    assert BenchOptions(models=(name,), cache=tmp_path).model_imgsz(name) == (side, side)


def test_an_image_size_off_the_largest_stride_is_refused_with_the_nearest_valid_sizes(tmp_path: Path) -> None:
    from yolov6_sdk.export.options import BuildOptions
    from yolov6_sdk.export.plan import plan_build
    from yolov6_sdk.training.config import TrainConfig

    expected = r"multiple of 64 \(its largest stride\); nearest valid: 640 or 704"
    with pytest.raises(ConfigError, match=expected):
        plan_build(BuildOptions(random_weights=True, model="yolov6n6", imgsz=672, output=tmp_path))
    with pytest.raises(ConfigError, match=expected):
        TrainConfig(model="yolov6n6", data="x", imgsz=672)
    assert ZOO["yolov6lite-l"].check_imgsz((224, 128)) == (224, 128)  # an official Lite size: multiples of 32


def test_lite_runs_at_its_official_224x128_size() -> None:
    with torch.no_grad():
        out = build_model("yolov6lite-l", num_classes=3).eval()(torch.rand(1, 3, 224, 128))
    assert out.shape == (1, 28 * 16 + 14 * 8 + 7 * 4 + 4 * 2, 8)


def test_info_prints_each_model_at_its_own_size(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    from yolov6_sdk.cli import info
    from yolov6_sdk.models import info as model_info

    monkeypatch.setattr(model_info, "ZOO", {name: ZOO[name] for name in ("yolov6n6", "yolov6lite-s", "yolov6n-qa")})
    assert info.main([]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["yolov6n6"][-1] == "1280x1280" and rows["yolov6lite-s"][-1] == "320x320"
    assert abs(float(rows["yolov6n-qa"][2]) - 4.7) / 4.7 < 0.02  # official params (M)
