"""Results and Boxes read the way ultralytics users write them, and tiny picture files are pictures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov6_sdk._optional import available
from yolov6_sdk.errors import ConfigError, ImageError, MissingDependencyError
from yolov6_sdk.runtime.boxes import Boxes
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.results import Results

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["person", "bicycle", "car"]


def _results(path: str | None = "street.jpg", frame: int | None = None) -> Results:
    picture = (np.arange(80 * 100 * 3).reshape(80, 100, 3) % 251).astype(np.uint8)
    return Results([[10, 10, 50, 40], [60, 20, 90, 70], [5, 50, 30, 75]], [0.9, 0.6, 0.3], [0, 2, 1], NAMES,
                   (80, 100), path=path, orig_img=picture, frame=frame)  # fmt: skip


def test_iterating_boxes_gives_one_detection_each_with_its_views() -> None:
    r = _results()
    seen = [(box.xyxy.tolist(), box.conf.tolist(), box.cls.tolist()) for box in r.boxes]
    assert seen == [
        ([[10, 10, 50, 40]], [pytest.approx(0.9)], [0]),
        ([[60, 20, 90, 70]], [pytest.approx(0.6)], [2]),
        ([[5, 50, 30, 75]], [pytest.approx(0.3)], [1]),
    ]
    box = next(iter(r.boxes))
    x1, y1, x2, y2 = box  # a (4,) row still unpacks as an array does
    assert (x1, y1, x2, y2) == (10, 10, 50, 40) and box.shape == (4,)
    assert r.names[int(box.cls[0])] == "person" and box.conf.item() == pytest.approx(0.9)
    np.testing.assert_allclose(box.xywhn, [[0.3, 0.3125, 0.4, 0.375]])


def test_a_mask_on_conf_keeps_a_boxes_whose_rows_line_up() -> None:
    boxes = _results().boxes
    confident = boxes[boxes.conf > 0.5]
    assert isinstance(confident, Boxes) and confident.xyxy.tolist() == [[10, 10, 50, 40], [60, 20, 90, 70]]
    assert confident.cls.tolist() == [0, 2] and confident.orig_shape == (80, 100)
    picked = boxes[[2, 0]]
    assert picked.cls.tolist() == [1, 0] and picked.xyxy[0].tolist() == [5, 50, 30, 75]
    assert boxes[1:].conf.tolist() == pytest.approx([0.6, 0.3])
    assert boxes[boxes.conf > 0.99].xyxy.shape == (0, 4) and boxes[boxes.conf > 0.99].cls.shape == (0,)
    assert boxes[-1].cls.tolist() == [1]
    assert type(boxes[:, 0]) is np.ndarray and boxes[:, 0].tolist() == [10, 60, 5]
    with pytest.raises(IndexError):
        _ = boxes[np.array([True, False])]


def test_plot_draws_without_scores_or_labels_at_the_asked_width() -> None:
    r = _results()
    boxes_only = r.plot(labels=False, line_width=3)
    names_only = r.plot(conf=False, line_width=3)
    with_scores = r.plot(line_width=3)
    assert not np.array_equal(names_only, with_scores) and not np.array_equal(boxes_only, names_only)
    assert (boxes_only[10:13, 20] != r.orig_img[10:13, 20]).any(axis=1).all()  # 3 px of the top edge
    np.testing.assert_array_equal(boxes_only[14, 20], r.orig_img[14, 20])  # inside the box, past the line


def test_save_without_a_name_writes_results_of_the_source_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _results().save() == Path("results_street.jpg")
    assert _results(path="clips/a.mp4", frame=7).save(line_width=1) == Path("results_a_7.jpg")
    assert _results(path=None).save() == Path("results_image.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results_a_7.jpg", "results_image.jpg", "results_street.jpg"]
    assert cv2.imread("results_street.jpg").shape == (80, 100, 3)


def test_summary_is_plain_python_per_detection() -> None:
    rows = _results().summary()
    assert rows[0] == {"name": "person", "class": 0, "confidence": 0.9,
                       "box": {"x1": 10.0, "y1": 10.0, "x2": 50.0, "y2": 40.0}}  # fmt: skip
    assert [row["name"] for row in rows] == ["person", "car", "bicycle"]
    assert _results().summary(normalize=True)[0]["box"] == {"x1": 0.1, "y1": 0.125, "x2": 0.5, "y2": 0.5}
    json.dumps(rows)


def test_to_df_has_the_csv_columns_or_says_how_to_get_pandas() -> None:
    r = _results()
    if not available("pandas"):
        with pytest.raises(MissingDependencyError, match="pip install pandas"):
            r.to_df()
        return
    frame = r.to_df()
    assert list(frame.columns) == ["source", "frame", "class_id", "name", "conf", "x1", "y1", "x2", "y2"]
    assert frame["name"].tolist() == ["person", "car", "bicycle"] and frame["x2"].tolist() == [50, 90, 30]


def test_show_without_a_display_says_to_save(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(ConfigError, match="use save"):
        _results().show()


def test_show_opens_a_window_with_the_plot_where_a_display_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = {}
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.update(title=title, image=image))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: -1)
    monkeypatch.setattr(cv2, "destroyWindow", lambda title: None)
    r = _results()
    r.show(labels=False)
    assert shown["title"] == "street.jpg" and np.array_equal(shown["image"], r.plot(labels=False))


def test_cpu_and_numpy_return_what_is_there_already() -> None:
    r = _results()
    assert r.cpu() is r and r.numpy() is r and r.boxes.cpu().numpy() is r.boxes
    assert r.cpu().boxes.xyxy.tolist()[0] == [10, 10, 50, 40]


@pytest.mark.parametrize("side", [1, 2, 3])
def test_tiny_picture_files_are_pictures_not_ambiguous_arrays(side: int, tmp_path: Path) -> None:
    with Detector(ROOT / "weights" / "yolov6n-shapes.pt", device="cpu") as detector:
        for suffix in (".png", ".jpg"):
            path = tmp_path / f"tiny{suffix}"
            cv2.imwrite(str(path), np.full((side, side, 3), 200, dtype=np.uint8))
            (result,) = detector(path)
            assert result.orig_shape == (side, side) and result.ok
        with pytest.raises(ImageError, match="ambiguous"):
            detector(np.zeros((3, 3, 3), dtype=np.uint8))  # an array's layout is not known: still refused
