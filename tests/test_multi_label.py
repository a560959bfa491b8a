"""One NMS semantics (``multi_label``) for every artifact of a model: checkpoint, raw ONNX, end-to-end ONNX."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.artifact.preprocess import preprocess_batch
from yolov6_sdk.artifact.sidecar import onnx_sidecar
from yolov6_sdk.errors import ArtifactError
from yolov6_sdk.export.onnx import ExportOptions, export_onnx, read_metadata
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.backends.onnxruntime import OnnxRuntimeBackend
from yolov6_sdk.runtime.backends.torch import TorchBackend
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.postprocess import Detections, postprocess_raw
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.training.datagen import make_image
from yolov6_sdk.weights import save_checkpoint

NUM_CLASSES = 12
IMGSZ = 160
IOU = 0.45
MAX_DET = 300


def _overlapping_boxes_and_spread_scores(model: torch.nn.Module) -> torch.nn.Module:
    """Boxes about three strides wide (neighbours overlap near the IoU threshold, so NMS has work to do) and
    class scores spread out, several classes of a box above the same threshold."""
    with torch.no_grad():
        for name, param in model.detect.named_parameters():
            if name.startswith("cls_preds"):
                param.mul_(10.0) if name.endswith("weight") else param.fill_(-3.0)
            if name.startswith("reg_preds"):
                param.mul_(3.0) if name.endswith("weight") else param.fill_(1.5)
    return model


def _conf_in_a_score_gap(model: torch.nn.Module, images: list[np.ndarray]) -> float:
    """The middle of the widest gap between class scores in 0.1..0.2 (no score near the threshold)."""
    batch, _ = preprocess_batch(images, IMGSZ)
    with torch.no_grad():
        scores = np.sort(model(torch.from_numpy(batch))[..., 5:].numpy().reshape(-1))
    window = scores[(scores > 0.1) & (scores < 0.2)]
    k = int(np.argmax(np.diff(window)))
    return float(window[k] + window[k + 1]) / 2


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One fused model as checkpoint, raw ONNX and end-to-end ONNX (ORT and TensorRT NMS) per mode, three images
    (padded, never resized, so the numpy and torch letterboxes give the same pixels), a threshold in a score gap."""
    folder = tmp_path_factory.mktemp("multi_label")
    torch.manual_seed(0)
    model = fuse(_overlapping_boxes_and_spread_scores(randomize_model(build_model("yolov6n", NUM_CLASSES).eval())))
    rng = np.random.default_rng(0)
    images = [make_image(rng, IMGSZ, NUM_CLASSES)[0] for _ in range(3)]
    images = [images[0], images[1][:128].copy(), images[2][:, :96].copy()]
    conf = _conf_in_a_score_gap(model, images)
    files: dict[tuple[str, bool], Path] = {}
    for multi in (False, True):
        tag = "multi" if multi else "single"
        # simplify=False: the slimmer is covered by test_export_onnx and only slows these fixtures down
        options = ExportOptions((IMGSZ, IMGSZ), conf=conf, iou=IOU, max_det=MAX_DET, multi_label=multi, simplify=False)
        for nms in (None, "ort", "trt"):
            name = f"{nms or 'raw'}-{tag}.onnx"
            files[nms or "raw", multi] = export_onnx(model, folder / name, dataclasses.replace(options, nms=nms))
        files["pt", multi] = save_checkpoint(folder / f"{tag}.pt", model, imgsz=IMGSZ, meta={"multi_label": multi})
    return SimpleNamespace(images=images, conf=conf, files=files)


def _assert_same_detections(a: Results, b: Results) -> None:
    """Same count; each detection of ``a`` pairs one-to-one with a same-class one of ``b``: box within 1 px,
    score within 1e-3."""
    assert len(a) == len(b), f"{len(a)} vs {len(b)} detections"
    unmatched = list(range(len(b)))
    for box, score, class_id in zip(a.boxes, a.scores, a.class_ids, strict=True):
        candidates = [j for j in unmatched if b.class_ids[j] == class_id]
        assert candidates, f"no class {class_id} detection left to pair with {box}"
        j = min(candidates, key=lambda j: np.abs(b.boxes[j] - box).max())
        unmatched.remove(j)
        assert np.abs(b.boxes[j] - box).max() <= 1.0 and abs(b.scores[j] - score) <= 1e-3, (box, b.boxes[j])


def _repeated_boxes(result: Results | Detections) -> int:
    """How many detections share their exact coordinates with an earlier one."""
    boxes = np.asarray(result.boxes)
    return len(boxes) - len(np.unique(boxes, axis=0))


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_checkpoint_raw_onnx_and_end2end_onnx_give_the_same_detections(
    art: SimpleNamespace, multi_label: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TorchBackend, "wants_torch", property(lambda self: True))  # postprocess_raw_torch
    found = {}
    for kind in ("pt", "raw", "ort"):
        with Detector(art.files[kind, multi_label], device="cpu", conf=art.conf, iou=IOU, max_det=MAX_DET) as det:
            assert det.info.multi_label is multi_label and det.multi_label is multi_label
            found[kind] = det(art.images)
    for results in zip(*found.values(), strict=True):
        assert 20 <= len(results[0]) < MAX_DET
        for other in results[1:]:
            _assert_same_detections(results[0], other)
    repeated = [_repeated_boxes(result) for result in found["raw"]]
    if multi_label:
        assert all(n > 0 for n in repeated), "the threshold should leave boxes with several classes"
    else:
        assert repeated == [0, 0, 0] and all(_repeated_boxes(r) == 0 for r in found["ort"] + found["pt"])


def test_single_label_keeps_each_box_once_where_multi_label_repeats_it(art: SimpleNamespace) -> None:
    with Detector(art.files["raw", False], device="cpu", conf=art.conf) as single:
        assert not single.multi_label
        one = single(art.images[0])[0]
    with Detector(art.files["raw", False], device="cpu", conf=art.conf, multi_label=True) as multi:
        many = multi(art.images[0])[0]
    assert len(many) > len(one) and _repeated_boxes(many) > 0 and _repeated_boxes(one) == 0


def _plugin_inputs(path: Path, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run the graph up to the EfficientNMS_TRT node in ONNX Runtime: its boxes [B, A, 4] cxcywh, scores
    [B, A, nc] and attributes (the plugin itself needs TensorRT)."""
    proto = onnx.load(str(path))
    (index,) = [i for i, n in enumerate(proto.graph.node) if n.op_type == "EfficientNMS_TRT"]
    node = proto.graph.node[index]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    body = onnx.ModelProto()
    body.CopyFrom(proto)
    del body.graph.node[index:], body.graph.output[:]  # nodes are in topological order
    body.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in node.input)
    body_path = path.with_name(f"{path.stem}-body.onnx")
    onnx.save(body, str(body_path))
    import onnxruntime as ort

    session = ort.InferenceSession(str(body_path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(list(node.input), {"images": preprocess_batch(images, IMGSZ)[0]})
    return boxes, scores, attrs


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_efficient_nms_plugin_is_fed_the_scores_of_the_chosen_semantics(art: SimpleNamespace, multi_label: bool):
    path = art.files["trt", multi_label]
    assert read_metadata(path).multi_label is multi_label and onnx_sidecar(path).multi_label is multi_label
    boxes, scores, attrs = _plugin_inputs(path, art.images)
    assert attrs["score_threshold"] == pytest.approx(art.conf) and attrs["iou_threshold"] == pytest.approx(IOU)
    assert attrs["max_output_boxes"] == MAX_DET and attrs["background_class"] == -1
    raw = OnnxRuntimeBackend(art.files["raw", multi_label], device="cpu").infer(preprocess_batch(art.images, IMGSZ)[0])
    all_scores = raw["outputs"][..., 5:]
    if multi_label:
        np.testing.assert_allclose(scores, all_scores, atol=1e-6)
    else:  # one non-zero column per box: its best class score, at the best class
        assert ((scores > 0).sum(-1) <= 1).all()
        np.testing.assert_allclose(scores.max(-1), all_scores.max(-1), atol=1e-6)
        best = all_scores.argmax(-1)
        np.testing.assert_allclose(np.take_along_axis(scores, best[..., None], -1)[..., 0], all_scores.max(-1))
    # the plugin runs class-aware NMS over every (box, class) score above the threshold: multi-label decoding
    objectness = np.ones_like(scores[..., :1])
    plugin = postprocess_raw(np.concatenate((boxes, objectness, scores), -1), art.conf, IOU, MAX_DET, multi_label=True)
    expected = postprocess_raw(raw["outputs"], art.conf, IOU, MAX_DET, multi_label=multi_label)
    for got, want in zip(plugin, expected, strict=True):
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        np.testing.assert_array_equal(got.class_ids, want.class_ids)
        assert multi_label or _repeated_boxes(got) == 0


def test_artifacts_without_the_field_read_as_the_old_behaviour_of_their_kind(
    art: SimpleNamespace, tmp_path: Path
) -> None:
    for kind, old in (("raw", False), ("ort", True)):
        proto = onnx.load(str(art.files[kind, False]))
        kept = [p for p in proto.metadata_props if p.key != "multi_label"]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
        onnx.save(proto, str(tmp_path / f"old-{kind}.onnx"))
        assert OnnxRuntimeBackend(tmp_path / f"old-{kind}.onnx", device="cpu").info.multi_label is old
        assert onnx_sidecar(tmp_path / f"old-{kind}.onnx").multi_label is old
    proto.metadata_props.add(key="multi_label", value='"yes"')
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    with pytest.raises(ArtifactError, match="multi_label must be true or false"):
        OnnxRuntimeBackend(tmp_path / "bad.onnx", device="cpu")


def test_end2end_detector_warns_and_keeps_its_exported_semantics(
    art: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), Detector(art.files["ort", False], device="cpu", multi_label=True) as det:
        assert det.multi_label is False
    assert "single-label NMS inside the graph; multi_label=True is ignored" in caplog.text


DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "yolov6n-shapes.pt"


@pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason=f"needs the demo weights {DEMO_WEIGHTS}")
@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_demo_model_artifacts_agree_on_demo_pictures(tmp_path: Path, multi_label: bool) -> None:
    """The shipped demo model as checkpoint, raw ONNX and ONNX Runtime end-to-end ONNX, on demo-style pictures at
    the detection defaults (conf 0.25, iou 0.45), all pre-processed on the CPU as a CPU deployment runs them. A
    score within 1e-3 of conf may fall on either side of it in float32, so only such detections may lack a twin."""
    from yolov6_sdk.weights import load

    loaded = load(DEMO_WEIGHTS, fuse=True)
    conf, imgsz = 0.25, loaded.imgsz
    options = ExportOptions((imgsz, imgsz), conf=conf, iou=IOU, max_det=MAX_DET, multi_label=multi_label,
                            simplify=False)  # fmt: skip
    files = {
        "pt": save_checkpoint(
            tmp_path / "demo.pt", loaded.model, list(loaded.names), imgsz, meta={"multi_label": multi_label}
        ),  # fmt: skip
        "raw": export_onnx(loaded.model, tmp_path / "raw.onnx", options),
        "ort": export_onnx(loaded.model, tmp_path / "ort.onnx", dataclasses.replace(options, nms="ort")),
    }
    rng = np.random.default_rng(3)
    images = [make_image(rng, (256, 320), loaded.model.num_classes)[0] for _ in range(4)]
    found = {}
    for kind, path in files.items():
        with Detector(path, device="cpu", conf=conf, iou=IOU, max_det=MAX_DET) as det:
            found[kind] = det(images)
    assert sum(len(r) for r in found["raw"]) >= 4, "the demo model should find objects on its own kind of pictures"
    for results in zip(*found.values(), strict=True):
        for one, other in itertools.permutations(results, 2):  # every clear detection has its twin in each artifact
            clear = one.filter(conf=conf + 1e-3)
            for box, score, class_id in zip(clear.boxes, clear.scores, clear.class_ids, strict=True):
                same = np.flatnonzero((other.class_ids == class_id) & (np.abs(other.boxes - box).max(axis=1) <= 1.0))
                assert len(same) and np.abs(other.scores[same] - score).min() <= 1e-3, (box, class_id, score)
        if not multi_label:
            assert all(_repeated_boxes(r) == 0 for r in results)
