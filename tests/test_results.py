"""Results: indexing, filtering, drawing, atomic saving and serialisation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov6_sdk.errors import ConfigError, ImageError, YOLOv6Error
from yolov6_sdk.runtime.results import PALETTE_BGR, Results, class_color, text_color

NAMES = ["person", "bicycle", "car"]


def _results(image: bool = True) -> Results:
    return Results(
        boxes=[[10, 10, 50, 40], [60, 20, 90, 70], [5, 5, 20, 20]],
        scores=[0.9, 0.6, 0.3],
        class_ids=[0, 2, 0],
        names=NAMES,
        orig_shape=(80, 100),
        path="street.jpg",
        orig_img=np.full((80, 100, 3), 40, dtype=np.uint8) if image else None,
        speed={"preprocess": 1.0, "inference": 5.0, "postprocess": 0.5},
    )


def test_results_hold_typed_arrays() -> None:
    res = _results()
    assert res.boxes.dtype == np.float32 and res.boxes.shape == (3, 4)
    assert res.scores.dtype == np.float32 and res.class_ids.dtype == np.int64
    assert len(res) == 3 and res.orig_shape == (80, 100)
    empty = Results(np.zeros((0, 4)), [], [], NAMES, (8, 8))
    assert empty.boxes.shape == (0, 4) and len(empty) == 0


def test_results_refuse_mismatched_arrays() -> None:
    with pytest.raises(YOLOv6Error, match="2 boxes, 1 scores"):
        Results(np.zeros((2, 4)), [0.5], [0, 1], NAMES, (8, 8))


def test_indexing_returns_new_results() -> None:
    res = _results()
    assert res[0].scores.tolist() == pytest.approx([0.9]) and res[0].boxes.shape == (1, 4)
    assert res[-1].class_ids.tolist() == [0]
    assert res[1:].scores.tolist() == pytest.approx([0.6, 0.3])
    assert res[np.array([True, False, True])].class_ids.tolist() == [0, 0]
    assert res[[2, 0]].scores.tolist() == pytest.approx([0.3, 0.9])
    assert len(res[[]]) == 0
    picked = res[0]
    assert picked.names is res.names and picked.path == res.path and picked.speed == res.speed


def test_indexing_errors() -> None:
    res = _results()
    with pytest.raises(IndexError):
        res[3]
    with pytest.raises(IndexError):
        res[-4]
    with pytest.raises(IndexError, match="boolean mask"):
        res[np.array([True, False])]


def test_filter_by_score_and_class_ids_or_names() -> None:
    res = _results()
    assert res.filter(conf=0.5).scores.tolist() == pytest.approx([0.9, 0.6])
    assert res.filter(classes=[2]).class_ids.tolist() == [2]
    assert res.filter(conf=0.5, classes=["person"]).scores.tolist() == pytest.approx([0.9])
    assert len(res.filter()) == 3
    with pytest.raises(ConfigError, match="unknown class name 'truck'.*'bicycle'"):
        res.filter(classes=["truck"])


def test_names_as_dict_and_unknown_ids() -> None:
    res = Results([[0, 0, 1, 1], [0, 0, 2, 2]], [0.5, 0.4], [7, 8], {7: "cat"}, (4, 4))
    assert [d["name"] for d in res.to_dict()["detections"]] == ["cat", "8"]
    assert res.filter(classes=["cat"]).class_ids.tolist() == [7]
    assert _results().name(99) == "99"


def test_draw_marks_boxes_on_a_copy() -> None:
    res = _results()
    original = res.orig_img.copy()
    drawn = res.draw()
    assert drawn.shape == original.shape and drawn.dtype == np.uint8
    np.testing.assert_array_equal(res.orig_img, original)
    assert tuple(int(v) for v in drawn[40, 30]) == class_color(0)  # bottom edge of the first box
    assert (drawn[60:80, 0:50] == 40).all()  # far from every box: untouched
    plain = res.draw(labels=False, line_width=1)
    assert (plain != original).any() and (plain != drawn).any()


@pytest.mark.parametrize("side", [141, 300, 1280])
def test_labels_scale_with_the_picture_show_it_through_and_stay_inside(side: int) -> None:
    image = np.zeros((side, side, 3), np.uint8)
    image[:, :, 1] = 200  # green picture
    box = [side * 0.3, side * 0.5, side * 0.6, side * 0.8]
    res = Results([box], [0.87], [0], ["ring"], (side, side), orig_img=image)
    changed = (res.draw() != image).any(axis=2)
    rows = np.flatnonzero(changed[: int(box[1]) - 1].any(axis=1))  # the label band above the box
    band_h = rows.max() - rows.min() + 1
    assert 8 <= band_h <= max(0.06 * side, 16), f"label band {band_h} px tall on a {side} px picture"
    band = res.draw()[rows.min() : rows.max() + 1][:, changed[rows.min()].nonzero()[0]]
    assert (band[..., 1] > 0).mean() > 0.5, "the band must let the picture through (translucent)"
    edge = Results([[side - 12, 0, side - 1, 10]], [0.5], [0], ["a_long_class_name"], (side, side), orig_img=image)
    drawn = edge.draw()
    assert drawn.shape == image.shape and (drawn != image).any(axis=2)[:, : side - 12].any()  # moved left, inside


def test_draw_needs_a_matching_image() -> None:
    with pytest.raises(ImageError, match="no image to draw on for street.jpg"):
        _results(image=False).draw()
    with pytest.raises(ImageError, match="does not match"):
        _results().draw(np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="HxWx3 uint8"):
        _results().draw(np.zeros((80, 100), dtype=np.uint8))


def test_palette_is_fixed_and_text_contrasts() -> None:
    assert class_color(0) == PALETTE_BGR[0] and class_color(len(PALETTE_BGR)) == PALETTE_BGR[0]
    assert text_color((255, 255, 255)) == (0, 0, 0) and text_color((0, 0, 0)) == (255, 255, 255)
    for color in PALETTE_BGR:  # every label background gets a readable text colour
        luma = 0.299 * color[2] + 0.587 * color[1] + 0.114 * color[0]
        assert abs(luma - (0 if text_color(color) == (0, 0, 0) else 255)) > 100


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_save_writes_the_drawn_image_atomically(tmp_path: Path, suffix: str) -> None:
    res = _results()
    target = tmp_path / "out" / f"street{suffix}"
    assert res.save(target) == target
    saved = cv2.imread(str(target))
    assert saved.shape == (80, 100, 3)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temp file left
    if suffix == ".png":
        np.testing.assert_array_equal(saved, res.draw())


def test_save_errors_leave_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="suffix such as .jpg"):
        _results().save(tmp_path / "street.unknown")
    with pytest.raises(ImageError, match="no image to draw on"):
        _results(image=False).save(tmp_path / "street.jpg")
    assert list(tmp_path.iterdir()) == []


def test_to_dict_and_json_round_trip() -> None:
    res = _results()
    data = res.to_dict()
    assert data["path"] == "street.jpg" and data["shape"] == [80, 100]
    assert data["detections"][1] == {
        "box": [60.0, 20.0, 90.0, 70.0],
        "score": pytest.approx(0.6),
        "class_id": 2,
        "name": "car",
    }
    assert json.loads(res.to_json()) == json.loads(json.dumps(data))


def test_repr_summarises_counts_per_class() -> None:
    assert repr(_results()) == "Results(path='street.jpg', shape=(80, 100), 3 detections: 2 person, 1 car)"
    assert repr(_results()[[]]).endswith("0 detections)")
