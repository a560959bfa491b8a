"""Quantisation-aware training: CWD loss, fake-quant placement = PTQ placement, Q/DQ export, training, build."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import randomize_model
from onnx import numpy_helper

from yolov6_sdk.errors import BuildError, ConfigError
from yolov6_sdk.export import calibration, fake_quant, ort_quant, qdq
from yolov6_sdk.export.build import build
from yolov6_sdk.export.onnx import ExportOptions, export_onnx, read_metadata
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.training.cwd import channel_wise_divergence, cwd_loss
from yolov6_sdk.training.datagen import generate_dataset
from yolov6_sdk.training.plots import read_results_csv
from yolov6_sdk.training.qat import prepare_qat
from yolov6_sdk.training.trainer import TrainConfig, Trainer
from yolov6_sdk.weights import load, save_checkpoint

IMGSZ = 64
NAMES = ["circle", "square", "triangle"]
TARGETS = ("tensorrt", "onnxruntime-cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qat")


@pytest.fixture(scope="module")
def shapes(work: Path) -> Path:
    return generate_dataset(work / "shapes", 8, 2, imgsz=(IMGSZ, 128), seed=1, num_classes=3)


@pytest.fixture(scope="module")
def teacher(work: Path) -> Path:
    model = randomize_model(build_model("yolov6n", num_classes=3), seed=3)
    return save_checkpoint(work / "teacher.pt", model, NAMES, IMGSZ)


@pytest.fixture(scope="module")
def calib_set(shapes: Path) -> calibration.CalibrationSet:
    return calibration.load_calibration_set(shapes / "images" / "train", IMGSZ, size=8, batch=4)


@pytest.fixture(scope="module")
def fused(teacher: Path) -> torch.nn.Module:
    model = fuse(load(teacher).model.eval())
    with torch.no_grad():  # predictors that training left near their init: weights ~1e-9, bias 1.0; their
        for level in (1, 2):  # biases stay 1.0 on the int32 grid, and the exporter shares one constant for both
            model.detect.reg_preds[level].weight.mul_(1e-8)
            model.detect.reg_preds[level].bias.fill_(1.0)
    return model


@pytest.fixture(scope="module")
def ptq(work: Path, fused: torch.nn.Module, calib_set: calibration.CalibrationSet) -> dict[str, Path]:
    """PTQ Q/DQ models of the fused teacher for both targets, as yolov6-build makes them."""
    fp32 = export_onnx(fused, work / "fp32.onnx", ExportOptions(imgsz=(IMGSZ, IMGSZ)))
    ranges = ort_quant.calibrate(onnx.load(str(fp32)), calib_set, "minmax")
    return {t: ort_quant.quantize_model(fp32, work / f"ptq-{t}.onnx", ranges, t).path for t in TARGETS}


@pytest.fixture(scope="module", params=TARGETS)
def qat_pair(request: pytest.FixtureRequest, work: Path, fused: torch.nn.Module, ptq: dict) -> tuple:
    """(target, fake-quant model, its Q/DQ export, PTQ model) for one target."""
    target = request.param
    plan = fake_quant.plan_from_qdq(fused, onnx.load(str(ptq[target])), target)
    model = fake_quant.attach(copy.deepcopy(fused), plan)
    exported = fake_quant.export_qat_onnx(model, work / f"qat-{target}.onnx", ExportOptions(imgsz=(IMGSZ, IMGSZ)))
    return target, model, onnx.load(str(exported)), onnx.load(str(ptq[target]))


# ------------------------------------------------------------------------------------------------------- CWD


def test_cwd_is_zero_for_identical_features_and_positive_otherwise() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 4, 6, 5, generator=gen), torch.randn(2, 8, 3, 3, generator=gen)]
    assert cwd_loss(feats, [f.clone() for f in feats]).item() == pytest.approx(0.0, abs=1e-6)
    student = [f + 0.3 * torch.randn(f.shape, generator=gen) for f in feats]
    student = [s.requires_grad_() for s in student]
    loss = cwd_loss(student, feats, tau=2.0)
    assert loss.item() > 0
    loss.backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    # a constant shift of a channel leaves its spatial distribution unchanged
    assert channel_wise_divergence(feats[0] + 5.0, feats[0]).item() == pytest.approx(0.0, abs=1e-6)


def test_cwd_matches_a_hand_computed_case() -> None:
    # two channels over two positions; channel 0 identical, channel 1: teacher (ln 3, 0), student (0, 0)
    teacher = torch.tensor([[[[1.0, 2.0]], [[math.log(3.0), 0.0]]]])
    student = torch.tensor([[[[1.0, 2.0]], [[0.0, 0.0]]]])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL((3/4, 1/4) || (1/2, 1/2))
    assert channel_wise_divergence(student, teacher, tau=1.0).item() == pytest.approx(kl / 2, rel=1e-6)
    p = math.sqrt(3.0) / (1.0 + math.sqrt(3.0))  # softmax((ln 3) / 2, 0)
    kl_tau2 = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert channel_wise_divergence(student, teacher, tau=2.0).item() == pytest.approx(4 * kl_tau2 / 2, rel=1e-6)


def test_cwd_refuses_mismatched_features() -> None:
    with pytest.raises(ConfigError, match="one shape"):
        channel_wise_divergence(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="levels"):
        cwd_loss([torch.zeros(1, 2, 4, 4)], [])


# ------------------------------------------------------------------------------------------ placement, export


def _quantised_inputs(model: onnx.ModelProto) -> set[tuple[str, int]]:
    """(node, input index) of every non-Q/DQ node that reads a dequantised tensor."""
    producers = {out: node for node in model.graph.node for out in node.output}
    return {
        (node.name, i)
        for node in model.graph.node
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
        for i, name in enumerate(node.input)
        if name in producers and producers[name].op_type == "DequantizeLinear"
    }


def test_qat_export_has_the_ptq_placement(qat_pair: tuple) -> None:
    target, _, exported, ptq_model = qat_pair
    ptq_inputs = _quantised_inputs(ptq_model)
    assert len(ptq_inputs) > 150
    assert _quantised_inputs(exported) == ptq_inputs
    split = qdq.split_head(exported)
    assert qdq.concat_scale_mismatches(exported) == []
    assert qdq.qdq_nodes_among(exported, split.tail) == []
    types = {numpy_helper.to_array(i).dtype for i in exported.graph.initializer if i.name.endswith("_quantized")}
    # int8 weights; int32 biases for ONNX Runtime, float biases for TensorRT (its parser takes no int32 DQ)
    assert types == ({np.dtype(np.int8)} if target == "tensorrt" else {np.dtype(np.int8), np.dtype(np.int32)})
    assert int32_dequantizers(exported) == int32_dequantizers(ptq_model)
    assert (int32_dequantizers(exported) == 0) == (target == "tensorrt")
    meta = read_metadata_of(exported)
    assert meta["precision"] == "int8" and meta["quant_target"] == target and meta["calibration_method"] == "qat"


def int32_dequantizers(model: onnx.ModelProto) -> int:
    """DequantizeLinear nodes reading an int32 initializer (quantised biases)."""
    int32 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT32}
    return sum(node.op_type == "DequantizeLinear" and node.input[0] in int32 for node in model.graph.node)


def read_metadata_of(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value.strip('"') for p in model.metadata_props}


def _quantiser_outputs(model: torch.nn.Module, images: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The model's output and each once-called quantiser's output, keyed by its name (q0, q1, ...)."""
    seen: dict[str, list[np.ndarray]] = {}
    handles = [
        quant.register_forward_hook(lambda _m, _i, out, key=key: seen.setdefault(key, []).append(out.clone().numpy()))
        for key, quant in model.qat_quantizers.items()
    ]
    with torch.no_grad():
        output = model(images).numpy()
    for handle in handles:
        handle.remove()
    return output, {key: outs[0] for key, outs in seen.items() if len(outs) == 1}


def test_fake_quant_model_matches_the_onnx_runtime_run_within_one_step(
    qat_pair: tuple, calib_set: calibration.CalibrationSet
) -> None:
    _, model, exported, _ = qat_pair
    images = torch.from_numpy(np.concatenate(list(calib_set.batches())))
    expected, quantised = _quantiser_outputs(model, images)
    inits = {i.name: numpy_helper.to_array(i) for i in exported.graph.initializer}
    probes = {}  # quantiser name -> (its DequantizeLinear output in the graph, scale)
    for node in exported.graph.node:
        found = re.search(r"(?:^|/)(q\d+)/DequantizeLinear$", node.name)
        if node.op_type == "DequantizeLinear" and found and found.group(1) in quantised:
            probes[found.group(1)] = (node.output[0], float(inits[node.input[1]]))
    graph = copy.deepcopy(exported)
    graph.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n, _ in
                              probes.values())  # fmt: skip
    # graph optimisations off: ONNX Runtime runs the Q/DQ semantics as written instead of its integer kernels,
    # whose uint8 x int8 products may saturate on AVX2 CPUs (a property of the runtime, PTQ's models alike)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})
    assert len(probes) > 50
    worst, beyond = [], []
    for (key, (_, step)), value in zip(probes.items(), got[1:], strict=True):
        steps = np.abs(value - quantised[key]) / step
        worst.append(steps.max())
        beyond.append(np.mean(steps > 1.01))
    # the input and the first layers agree within one step; deeper, values that land on a rounding tie (x / s
    # against x * (1 / s), another summation order) move by a step and later layers inherit a few such flips
    assert worst[0] == 0.0 and max(worst[:3]) <= 1.0 + 1e-3
    assert max(beyond) < 0.2 and np.mean(beyond) < 0.03, f"values beyond one step: {np.round(beyond, 3)}"
    assert np.abs(got[0][..., 5:] - expected[..., 5:]).max() < 0.02  # class scores
    assert np.abs(got[0][..., :4] - expected[..., :4]).mean() < 0.1  # boxes (pixels); the bias grid fits int32
    optimised = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.abs(optimised.run(None, {"images": images.numpy()})[0][..., 5:] - expected[..., 5:]).max() < 0.05


def test_plan_round_trips_through_checkpoint_metadata(qat_pair: tuple) -> None:
    _, model, _, _ = qat_pair
    plan = model.qat_plan
    assert fake_quant.QuantPlan.from_meta(plan.to_meta(), "x") == plan
    scale, zero = plan.activations[fake_quant.INPUT_SITE]  # the fixed 0..1 input range
    assert zero == 0 and scale == pytest.approx(1 / 127 if plan.signed else 1 / 255, rel=1e-6)
    with pytest.raises(Exception, match="unreadable"):
        fake_quant.QuantPlan.from_meta({"format": "other"}, "x.pt")


# ------------------------------------------------------------------------------------------- training, build


def _qat_config(shapes: Path, out: Path, teacher: Path, **changes: object) -> TrainConfig:
    values = dict(
        model="yolov6n", data=str(shapes), epochs=1, batch=4, imgsz=IMGSZ, workers=0, device="cpu", out=str(out),
        min_warmup_iters=0, warmup_epochs=0.0, eval_interval=1, qat=True, teacher=str(teacher),
        qat_target="onnxruntime-cpu", lr0=1e-4,
    )  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def test_qat_training_writes_a_qat_checkpoint_that_builds_without_calibration(
    shapes: Path, teacher: Path, ptq: dict[str, Path], tmp_path: Path
) -> None:
    target = "onnxruntime-cpu"
    Trainer(_qat_config(shapes, tmp_path / "run", teacher, qat_target=target)).fit()
    row = read_results_csv(tmp_path / "run" / "results.csv")[0]
    assert float(row["cwd"]) > 0 and row["mAP50-95"] != ""
    loaded = load(tmp_path / "run" / "last.pt")
    assert loaded.meta["fused"] and loaded.meta["qat"]["target"] == "onnxruntime-cpu"

    out = tmp_path / "engines"
    with pytest.raises(BuildError, match="--qat"):  # a QAT checkpoint is no plain checkpoint
        build(weights=tmp_path / "run" / "last.pt", precision="int8", output=out, backend="onnxruntime")
    assert not out.exists() or not any(out.glob("*.onnx"))
    result = build(qat=tmp_path / "run" / "last.pt", output=out, backend="onnxruntime")
    assert result.precision == "int8" and result.calibration_images == 0
    meta = read_metadata(result.artifact)
    assert meta.calibration_method == "qat" and meta.quant_target == "onnxruntime-cpu"
    assert _quantised_inputs(onnx.load(str(result.artifact))) == _quantised_inputs(onnx.load(str(ptq[target])))
    again = build(onnx=result.artifact, output=tmp_path / "from-onnx", backend="onnxruntime")  # the QAT export
    assert again.precision == "int8" and again.calibration_images == 0


def test_bad_qat_inputs_are_one_clear_error_and_write_nothing(shapes: Path, teacher: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--teacher"):
        TrainConfig(data=str(shapes), qat=True)
    with pytest.raises(ConfigError, match="qat_target"):
        TrainConfig(data=str(shapes), qat=True, teacher=str(teacher), qat_target="cpu")
    other = save_checkpoint(tmp_path / "t.pt", build_model("yolov6n-v1", num_classes=3), NAMES, IMGSZ)
    with pytest.raises(ConfigError, match="holds a yolov6n-v1"):
        Trainer(_qat_config(shapes, tmp_path / "run", other))
    five = save_checkpoint(tmp_path / "five.pt", build_model("yolov6n", num_classes=5), imgsz=IMGSZ)
    with pytest.raises(ConfigError, match="5 classes"):
        prepare_qat("yolov6n", str(five), None, str(shapes), IMGSZ, "tensorrt", (10.0, 1.0), names=NAMES)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    with pytest.raises(BuildError, match="not a quantisation-aware training checkpoint"):
        build(qat=teacher, output=tmp_path / "engines", backend="onnxruntime")
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())
    with pytest.raises(ConfigError, match="drop --weights"):
        build(qat=teacher, weights=teacher, output=tmp_path / "engines", backend="onnxruntime")


def test_qat_command_lines_report_bad_sources(
    shapes: Path, teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from yolov6_sdk.cli.build import main as build_main
    from yolov6_sdk.cli.train import main as train_main

    other = save_checkpoint(tmp_path / "v1.pt", build_model("yolov6n-v1", num_classes=3), NAMES, IMGSZ)
    argv = ["--data", str(shapes), "--qat", "--teacher", str(other), "--model", "yolov6n", "--epochs", "1",
            "--imgsz", str(IMGSZ), "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "run")]  # fmt: skip
    assert train_main(argv) == 2
    assert "holds a yolov6n-v1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    assert build_main(["--qat", str(teacher), "-o", str(tmp_path / "engines"), "--backend", "onnxruntime"]) == 2
    assert "not a quantisation-aware training checkpoint" in capsys.readouterr().err


@pytest.mark.tensorrt
def test_qat_checkpoint_builds_a_tensorrt_engine(shapes: Path, teacher: Path, tmp_path: Path) -> None:
    Trainer(_qat_config(shapes, tmp_path / "run", teacher, qat_target="tensorrt")).fit()
    result = build(qat=tmp_path / "run" / "last.pt", output=tmp_path / "engines", backend="tensorrt")
    assert result.artifact.suffix == ".engine" and result.precision == "int8"
