"""The synthetic COCO-layout dataset generator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov6_sdk.cli import datagen as datagen_cli
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.training import datagen

SIZES = (96, 160)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return datagen.generate_dataset(tmp_path_factory.mktemp("synth"), 24, 6, imgsz=SIZES, seed=3)


def _coco(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_identical_json_and_image_bytes(tmp_path: Path) -> None:
    a = datagen.generate_dataset(tmp_path / "a", 5, 2, imgsz=SIZES, seed=11)
    b = datagen.generate_dataset(tmp_path / "b", 5, 2, imgsz=SIZES, seed=11)
    files_a, files_b = _tree_bytes(a), _tree_bytes(b)
    assert len(files_a) == 5 + 2 + 2
    assert files_a == files_b


def test_another_seed_writes_other_images(tmp_path: Path) -> None:
    a = datagen.generate_dataset(tmp_path / "a", 3, 0, imgsz=SIZES, seed=1)
    b = datagen.generate_dataset(tmp_path / "b", 3, 0, imgsz=SIZES, seed=2)
    image = "images/train/000000000001.jpg"
    assert (a / image).read_bytes() != (b / image).read_bytes()


def test_layout_and_annotations_are_valid_coco(generated: Path) -> None:
    for split, count in (("train", 24), ("val", 6)):
        doc = _coco(generated, split)
        assert [c["id"] for c in doc["categories"]] == list(range(1, 9))
        assert [c["name"] for c in doc["categories"]] == list(datagen.CLASS_NAMES[:8])
        assert len(doc["images"]) == count
        images = {im["id"]: im for im in doc["images"]}
        for im in doc["images"]:
            pixels = cv2.imread(str(generated / "images" / split / im["file_name"]))
            assert pixels.shape == (im["height"], im["width"], 3)
            assert SIZES[0] <= im["height"] <= SIZES[1] and SIZES[0] <= im["width"] <= SIZES[1]
        ids = [a["id"] for a in doc["annotations"]]
        assert len(set(ids)) == len(ids)
        for a in doc["annotations"]:
            x, y, w, h = a["bbox"]
            im = images[a["image_id"]]
            assert 1 <= a["category_id"] <= 8 and a["iscrowd"] == 0
            assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
            assert min(w, h) >= datagen.MIN_BOX_SIDE and 0 < a["area"] <= w * h


def test_every_class_and_small_objects_appear(generated: Path) -> None:
    anns = _coco(generated, "train")["annotations"]
    assert {a["category_id"] for a in anns} == set(range(1, 9))
    long_sides = np.array([max(a["bbox"][2:]) for a in anns])
    assert (long_sides <= 20).sum() >= 5, "the set must hold small objects (12-20 % of a 96-160 px side)"
    assert long_sides.max() >= 50


def test_new_objects_hide_little_of_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Occlusion is present but bounded (a new object hides at most MAX_HIDDEN_FRACTION of an earlier one
    unless every placement try failed), so nearly every drawn object keeps its box."""
    counts = []
    annotate = datagen._annotate

    def counting(id_map: np.ndarray, objects: list) -> list:
        counts.append(len(objects))
        return annotate(id_map, objects)

    monkeypatch.setattr(datagen, "_annotate", counting)
    rng = np.random.default_rng(7)
    kept = sum(len(datagen._draw_objects(rng, np.zeros((256, 256, 3), np.float32), 8)) for _ in range(40))
    assert kept >= 0.95 * sum(counts), f"{kept} of {sum(counts)} drawn objects kept a box"


def test_boxes_are_tight_around_drawn_objects() -> None:
    rng = np.random.default_rng(5)
    for _ in range(10):
        img = np.zeros((120, 150, 3), np.float32)
        for _, (x1, y1, x2, y2), _ in datagen._draw_objects(rng, img, 12):
            drawn = img.any(axis=2)
            assert drawn[y1, x1:x2].any() and drawn[y2 - 1, x1:x2].any()
            assert drawn[y1:y2, x1].any() and drawn[y1:y2, x2 - 1].any()


def test_mostly_hidden_objects_get_no_box_and_partly_hidden_ones_a_shrunk_box() -> None:
    id_map = np.full((40, 40), -1, np.int16)
    id_map[0:10, 0:10] = 0  # object 0: a 10x10 square ...
    id_map[0:10, 3:10] = 1  # ... 70 % covered by object 1
    id_map[20:30, 0:10] = 2  # object 2: 10x10 ...
    id_map[20:30, 5:10] = 3  # ... half covered by object 3
    drawn = [(0, 0, (0, 0, 10, 10), 100), (1, 1, (3, 0, 10, 10), 70), (2, 2, (0, 20, 10, 30), 100),
             (3, 3, (5, 20, 10, 30), 50)]  # fmt: skip
    boxes = {cls: box for cls, box, _ in datagen._annotate(id_map, drawn)}
    assert 0 not in boxes
    assert boxes[1] == [3, 0, 10, 10]
    assert boxes[2] == [0, 20, 5, 30]
    assert boxes[3] == [5, 20, 10, 30]


def test_calibration_images_are_plain_and_differ_from_training_images(tmp_path: Path, generated: Path) -> None:
    paths = datagen.write_calibration_images(tmp_path / "calib", 3, seed=3, imgsz=SIZES)
    assert [p.name for p in paths] == ["calib_00000.jpg", "calib_00001.jpg", "calib_00002.jpg"]
    assert sorted(p.name for p in (tmp_path / "calib").iterdir()) == [p.name for p in paths]
    train = {p.read_bytes() for p in (generated / "images" / "train").iterdir()}
    assert all(cv2.imread(str(p)) is not None and p.read_bytes() not in train for p in paths)


def test_cli_writes_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = datagen_cli.main([str(tmp_path), "--train", "2", "--val", "1", "--seed", "4", "--imgsz", "96", "128"])
    assert code == 0
    assert len(list((tmp_path / "images" / "train").glob("*.jpg"))) == 2
    assert len(_coco(tmp_path, "val")["images"]) == 1
    assert str(tmp_path) in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs", [{"num_classes": 0}, {"num_classes": 13}, {"imgsz": 32}, {"imgsz": (200, 100)}, {"num_train": -1}]
)
def test_invalid_arguments_raise_config_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        datagen.generate_dataset(tmp_path, **{"num_train": 1, "num_val": 0, **kwargs})


def test_generation_is_fast_enough_for_200_images_in_30_s(tmp_path: Path) -> None:
    start = time.perf_counter()
    datagen.generate_dataset(tmp_path, 20, 0, imgsz=416)
    per_image = (time.perf_counter() - start) / 20
    assert per_image < 0.15, f"{per_image * 1000:.0f} ms per 416 px image"
