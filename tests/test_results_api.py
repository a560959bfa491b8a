"""Results read and written the way the ecosystem does: boxes views, YOLO labels, crops, CSV, JSON, supervision."""

from __future__ import annotations

import copy as copy_module
import csv
import io
import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import randomize_model

from yolov6_sdk.errors import ImageError, MissingDependencyError
from yolov6_sdk.models import build_model, fuse
from yolov6_sdk.runtime.boxes import Boxes
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.weights import save_checkpoint

NAMES = ["person", "bicycle", "car"]


def _image() -> np.ndarray:
    """80 x 100 BGR picture whose every pixel differs from its neighbours (crops can be compared exactly)."""
    values = np.arange(80 * 100 * 3, dtype=np.int64).reshape(80, 100, 3)
    return (values % 251).astype(np.uint8)


def _results(frame: int | None = None) -> Results:
    return Results(
        boxes=[[10, 10, 50, 40], [60, 20, 90, 70]],
        scores=[0.9, 0.6],
        class_ids=[0, 2],
        names=NAMES,
        orig_shape=(80, 100),
        path="clips/street.mp4" if frame is not None else "street.jpg",
        orig_img=_image(),
        frame=frame,
    )


def test_boxes_views_match_hand_computed_values() -> None:
    boxes = _results().boxes
    assert isinstance(boxes, Boxes) and isinstance(boxes, np.ndarray) and boxes.shape == (2, 4)
    np.testing.assert_array_equal(boxes.xyxy, [[10, 10, 50, 40], [60, 20, 90, 70]])
    np.testing.assert_array_equal(boxes.xywh, [[30, 25, 40, 30], [75, 45, 30, 50]])
    np.testing.assert_allclose(boxes.xyxyn, [[0.1, 0.125, 0.5, 0.5], [0.6, 0.25, 0.9, 0.875]])
    np.testing.assert_allclose(boxes.xywhn, [[0.3, 0.3125, 0.4, 0.375], [0.75, 0.5625, 0.3, 0.625]])
    np.testing.assert_allclose(boxes.conf, [0.9, 0.6])
    assert boxes.cls.tolist() == [0, 2] and boxes.cls.dtype == np.int64 and boxes.conf.dtype == np.float32
    np.testing.assert_allclose(boxes.data, [[10, 10, 50, 40, 0.9, 0], [60, 20, 90, 70, 0.6, 2]], rtol=1e-6)
    assert boxes.orig_shape == (80, 100)


def test_old_names_read_the_same_arrays_as_the_boxes_views() -> None:
    res = _results()
    assert res.scores is res.boxes.conf and res.class_ids is res.boxes.cls
    np.testing.assert_array_equal(np.asarray(res.boxes), res.boxes.xyxy)
    assert res.boxes[0].tolist() == [10, 10, 50, 40] and res.boxes[:, 2].tolist() == [50, 90]
    assert [row.tolist() for row in res.boxes] == [[10, 10, 50, 40], [60, 20, 90, 70]]
    assert res[1].boxes.conf.tolist() == pytest.approx([0.6]) and res[1].boxes.cls.tolist() == [2]
    assert res.draw is not None and np.array_equal(res.draw(), res.plot())


def test_arrays_derived_from_boxes_are_plain_and_carry_no_scores() -> None:
    boxes = _results().boxes
    for derived in (boxes[:, :2], boxes[..., 0], boxes + 1, boxes >= 0, np.concatenate([boxes, boxes])):
        assert type(derived) is np.ndarray
    with pytest.raises(AttributeError, match="Results.boxes itself"):
        _ = boxes.copy().conf
    assert (boxes + 1).tolist()[0] == [11, 11, 51, 41]


def test_results_survive_pickling_with_their_views() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(_results(frame=3)))
    assert isinstance(copy.boxes, Boxes) and copy.boxes.cls.tolist() == [0, 2] and copy.frame == 3
    np.testing.assert_allclose(copy.boxes.xywhn, _results().boxes.xywhn)
    assert type(pickle.loads(pickle.dumps(_results().boxes[:, :2]))) is np.ndarray
    assert pickle.loads(pickle.dumps(_results().boxes[:1])).cls.tolist() == [0]
    deep = copy_module.deepcopy(_results())
    assert deep.scores.tolist() == pytest.approx([0.9, 0.6]) and deep.boxes.orig_shape == (80, 100)


def test_empty_boxes_views_have_the_right_shapes() -> None:
    empty = Results(np.zeros((0, 4)), [], [], NAMES, (8, 8))
    assert empty.boxes.xywh.shape == (0, 4) and empty.boxes.xyxyn.shape == (0, 4)
    assert empty.boxes.conf.shape == (0,) and empty.boxes.data.shape == (0, 6)


def test_plot_returns_the_annotated_picture_and_keeps_the_original() -> None:
    res = _results()
    plotted = res.plot(labels=False, line_width=1)
    assert plotted.shape == (80, 100, 3) and plotted.dtype == np.uint8
    assert (plotted[10, 10:51] != res.orig_img[10, 10:51]).any(axis=1).all()  # top edge of the first box
    np.testing.assert_array_equal(plotted[0:5, 0:5], res.orig_img[0:5, 0:5])  # away from every box
    np.testing.assert_array_equal(res.orig_img, _image())


def test_save_txt_writes_yolo_labels(tmp_path: Path) -> None:
    res = _results()
    path = res.save_txt(tmp_path / "labels" / "street.txt")
    assert path.read_text() == "0 0.300000 0.312500 0.400000 0.375000\n2 0.750000 0.562500 0.300000 0.625000\n"
    with_conf = res.save_txt(tmp_path / "c.txt", save_conf=True).read_text().splitlines()
    assert with_conf[0] == "0 0.300000 0.312500 0.400000 0.375000 0.900000"
    assert with_conf[1].endswith(" 0.600000")
    empty = Results(np.zeros((0, 4)), [], [], NAMES, (8, 8)).save_txt(tmp_path / "none.txt")
    assert empty.read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "labels", "none.txt"]  # no temporary file


def test_save_crop_writes_each_box_region_by_class(tmp_path: Path) -> None:
    res = Results([[10.4, 10.6, 49.2, 39.1], [60, 20, 90, 70]], [0.9, 0.6], [0, 2], NAMES, (80, 100),
                  path="street.jpg", orig_img=_image())  # fmt: skip
    paths = res.save_crop(tmp_path, suffix=".png")
    assert paths == [tmp_path / "person" / "street_0.png", tmp_path / "car" / "street_1.png"]
    first, second = (cv2.imread(str(p)) for p in paths)
    np.testing.assert_array_equal(first, _image()[10:40, 10:50])  # floor x1 y1, ceil x2 y2
    np.testing.assert_array_equal(second, _image()[20:70, 60:90])
    frame_crop = _results(frame=7).save_crop(tmp_path / "video", suffix=".png")[0]
    assert frame_crop == tmp_path / "video" / "person" / "street_f7_0.png"
    with pytest.raises(ImageError, match="no image"):
        Results([[0, 0, 2, 2]], [0.5], [0], NAMES, (8, 8)).save_crop(tmp_path)


def test_to_csv_has_one_row_per_detection() -> None:
    text = _results(frame=4).to_csv()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["source", "frame", "class_id", "name", "conf", "x1", "y1", "x2", "y2"]
    assert rows[1] == ["clips/street.mp4", "4", "0", "person", "0.90000", "10.00", "10.00", "50.00", "40.00"]
    assert rows[2] == ["clips/street.mp4", "4", "2", "car", "0.60000", "60.00", "20.00", "90.00", "70.00"]
    still = _results().to_csv(header=False).splitlines()
    assert len(still) == 2 and still[0].startswith("street.jpg,,0,person,")


def test_to_json_carries_source_and_frame_index() -> None:
    frame = json.loads(_results(frame=12).to_json())
    assert frame["source"] == "clips/street.mp4" and frame["frame"] == 12 and frame["shape"] == [80, 100]
    assert frame["detections"][1] == {"box": [60.0, 20.0, 90.0, 70.0], "score": pytest.approx(0.6),
                                      "class_id": 2, "name": "car"}  # fmt: skip
    still = json.loads(_results().to_json())
    assert still["source"] == still["path"] == "street.jpg" and still["frame"] is None


def test_to_supervision_builds_detections(monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, object] = {}

    class Detections:
        def __init__(self, **fields: object) -> None:
            made.update(fields)

    monkeypatch.setitem(sys.modules, "supervision", types.SimpleNamespace(Detections=Detections))
    _results().to_supervision()
    np.testing.assert_array_equal(made["xyxy"], [[10, 10, 50, 40], [60, 20, 90, 70]])
    np.testing.assert_allclose(made["confidence"], [0.9, 0.6])
    assert made["class_id"].tolist() == [0, 2]  # type: ignore[union-attr]
    assert made["data"]["class_name"].tolist() == ["person", "car"]  # type: ignore[index]


def test_to_supervision_without_supervision_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "supervision", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match="pip install supervision"):
        _results().to_supervision()


def test_stream_results_carry_the_video_and_frame_index(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = fuse(randomize_model(build_model("yolov6n", 3).eval(), seed=0))
    checkpoint = save_checkpoint(tmp_path / "model.pt", model, imgsz=160)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (96, 64))
    for i in range(3):
        writer.write(np.full((64, 96, 3), 60 * i, dtype=np.uint8))
    writer.release()
    with Detector(checkpoint, device="cpu") as detector:
        records = [json.loads(result.to_json()) for result in detector.stream(video)]
        still = detector(np.zeros((64, 96, 3), dtype=np.uint8))[0]
    assert [r["frame"] for r in records] == [0, 1, 2] and {r["source"] for r in records} == {str(video)}
    assert still.frame is None
