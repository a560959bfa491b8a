"""COCO and YOLO loaders, the label cache, bad-data handling and the torch datasets."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from yolov6_sdk.artifact.preprocess import scale_boxes_to_original
from yolov6_sdk.errors import ConfigError, DatasetError
from yolov6_sdk.labels import DetectionSet, load_coco, load_yolo
from yolov6_sdk.training import datagen
from yolov6_sdk.training.augment import AugmentConfig
from yolov6_sdk.training.datasets import TrainDataset, ValDataset, build_dataloader, collate, set_loader_epoch

NO_AUG = AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0, translate=0, scale=0, fliplr=0, mosaic=0)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return datagen.generate_dataset(tmp_path_factory.mktemp("synth"), 8, 3, imgsz=(96, 160), seed=7)


@pytest.fixture
def coco_copy(synth: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synth, tmp_path / "coco", ignore=shutil.ignore_patterns(".*")))


def _to_yolo(coco_root: Path, out: Path) -> Path:
    """Convert the generated COCO set to YOLO txt labels; returns the data.yaml path."""
    names = []
    for split in ("train", "val"):
        doc = json.loads((coco_root / "annotations" / f"instances_{split}.json").read_text())
        names = [c["name"] for c in doc["categories"]]
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        for im in doc["images"]:
            shutil.copy(coco_root / "images" / split / im["file_name"], out / "images" / split)
            lines = []
            for a in (a for a in doc["annotations"] if a["image_id"] == im["id"]):
                x, y, w, h = a["bbox"]
                cx, cy = (x + w / 2) / im["width"], (y + h / 2) / im["height"]
                lines.append(f"{a['category_id'] - 1} {cx:.6f} {cy:.6f} {w / im['width']:.6f} {h / im['height']:.6f}")
            (out / "labels" / split / im["file_name"]).with_suffix(".txt").write_text("\n".join(lines))
    yaml_path = out / "data.yaml"
    yaml_path.write_text(f"train: images/train\nval: images/val\nnc: {len(names)}\nnames: {json.dumps(names)}\n")
    return yaml_path


def _coco_truth(root: Path, split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    doc = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    truth = {}
    for im in doc["images"]:
        anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        truth[im["file_name"]] = (boxes.reshape(-1, 4), np.array([a["category_id"] - 1 for a in anns]))
    return truth


def test_load_coco_reads_what_datagen_writes(synth: Path) -> None:
    data = load_coco(synth, "train", cache=False)
    assert len(data) == 8 and data.num_classes == 8 and data.skipped == []
    assert data.names == list(datagen.CLASS_NAMES[:8]) and data.category_ids == list(range(1, 9))
    truth = _coco_truth(synth, "train")
    for rec in data:
        boxes, classes = truth[rec.path.name]
        assert rec.boxes.dtype == np.float32 and rec.classes.dtype == np.int64
        np.testing.assert_array_equal(rec.boxes, boxes)
        np.testing.assert_array_equal(rec.classes, classes)


def test_load_yolo_reads_a_converted_copy_of_the_same_set(synth: Path, tmp_path: Path) -> None:
    data = load_yolo(_to_yolo(synth, tmp_path / "yolo"), "val")
    coco = {r.path.name: r for r in load_coco(synth, "val", cache=False)}
    assert data.names == list(datagen.CLASS_NAMES[:8]) and len(data) == 3 and data.missing_labels == 0
    for rec in data:
        assert rec.shape == coco[rec.path.name].shape
        np.testing.assert_allclose(rec.boxes, coco[rec.path.name].boxes, atol=0.01)
        np.testing.assert_array_equal(rec.classes, coco[rec.path.name].classes)


def test_yolo_names_may_be_an_index_map(synth: Path, tmp_path: Path) -> None:
    yaml_path = _to_yolo(synth, tmp_path / "yolo")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(datagen.CLASS_NAMES[:8]))
    yaml_path.write_text(f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    assert load_yolo(yaml_path, "train").names == list(datagen.CLASS_NAMES[:8])


def _bad_yolo_set(synth: Path, root: Path) -> Path:
    yaml_path = _to_yolo(synth, root)
    images, labels = sorted((root / "images" / "train").iterdir()), root / "labels" / "train"
    images[0].write_bytes(b"this is not a jpeg")  # corrupt image
    (labels / images[1].name).with_suffix(".txt").unlink()  # image without label file
    (labels / images[2].name).with_suffix(".txt").write_text(
        "99 0.5 0.5 0.2 0.2\n"  # unknown class id
        "-1 0.5 0.5 0.2 0.2\n"  # negative class id
        "2 0.5 0.5 0.2\n"  # four values
        "x 0.5 0.5 0.2 0.2\n"  # not a number
        "3 1.5 1.5 0.2 0.2\n"  # entirely outside the image
        "4 0.95 0.5 0.3 0.2\n"  # partly outside: clipped, kept
        "5 0.5 0.5 0.25 0.25\n"  # fine
    )
    (labels / images[3].name).with_suffix(".txt").write_bytes(b"\xff\xfe\x00bad")  # not text
    return yaml_path


def test_bad_yolo_data_is_reported_and_skipped_without_crashing(synth: Path, tmp_path: Path) -> None:
    data = load_yolo(_bad_yolo_set(synth, tmp_path / "bad"), "train")
    names = sorted(p.name for p in (tmp_path / "bad" / "images" / "train").iterdir())
    kept = [r.path.name for r in data]
    assert names[0] not in kept and names[3] not in kept and len(data) == 6
    assert data.missing_labels == 1 and len(data[kept.index(names[1])].boxes) == 0
    rec = data[kept.index(names[2])]
    assert rec.classes.tolist() == [4, 5]
    h, w = rec.shape
    np.testing.assert_allclose(rec.boxes[0], [0.8 * w, 0.4 * h, w, 0.6 * h], atol=1e-3)
    reasons = " | ".join(reason for _, reason in data.skipped)
    for expected in ("image unreadable", "unknown class ids ['-1', '99']", "line 3", "line 4", "1 boxes outside"):
        assert expected in reasons
    assert "label file unreadable" in reasons


def test_bad_coco_data_is_reported_and_skipped_without_crashing(coco_copy: Path) -> None:
    ann = coco_copy / "annotations" / "instances_train.json"
    doc = json.loads(ann.read_text())
    (coco_copy / "images" / "train" / doc["images"][0]["file_name"]).unlink()
    doc["images"][1]["width"] += 1
    first = next(a for a in doc["annotations"] if a["image_id"] == doc["images"][2]["id"])
    first["category_id"] = 77
    doc["annotations"].append({"id": 999, "image_id": 12345, "category_id": 1, "bbox": [0, 0, 5, 5]})
    doc["annotations"].append(
        {"id": 1000, "image_id": doc["images"][3]["id"], "category_id": 1, "bbox": [-50, -50, 10, 10]}
    )
    doc["annotations"].append({"id": 1001, "image_id": doc["images"][3]["id"], "category_id": 2, "bbox": "oops"})
    ann.write_text(json.dumps(doc))
    data = load_coco(coco_copy, "train")
    assert len(data) == 6
    reasons = " | ".join(reason for _, reason in data.skipped)
    for expected in ("missing or unreadable", "json says", "unknown category ids ['77']", "unknown image ids",
                     "1 boxes outside", "without a valid"):  # fmt: skip
        assert expected in reasons


@pytest.mark.parametrize("what", ["root", "annotations"])
def test_missing_coco_folder_or_file_raises_dataset_error_naming_it(coco_copy: Path, what: str) -> None:
    root = coco_copy / "nowhere" if what == "root" else coco_copy
    if what == "annotations":
        (coco_copy / "annotations" / "instances_val.json").unlink()
    with pytest.raises(DatasetError, match="instances_val.json") as info:
        load_coco(root, "val")
    assert "yolov6-datagen" in str(info.value)


def test_unusable_yolo_yaml_raises_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_yolo(tmp_path / "data.yaml", "train")
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [a]\n")
    with pytest.raises(DatasetError, match="'val'"):
        load_yolo(tmp_path / "data.yaml", "val")
    with pytest.raises(DatasetError, match="does not exist"):
        load_yolo(tmp_path / "data.yaml", "train")
    (tmp_path / "data.yaml").write_text("train: .\nnc: 2\nnames: [a]\n")
    with pytest.raises(DatasetError, match="nc=2"):
        load_yolo(tmp_path / "data.yaml", "train")


def test_yolo_cache_is_reused_then_rebuilt_when_a_label_file_changes(synth: Path, tmp_path: Path) -> None:
    yaml_path = _to_yolo(synth, tmp_path / "yolo")
    first = load_yolo(yaml_path, "train")
    assert not first.from_cache and (tmp_path / "yolo" / "labels" / ".train.cache.npz").is_file()
    second = load_yolo(yaml_path, "train")
    assert second.from_cache and len(second) == len(first)
    for a, b in zip(first, second, strict=True):
        assert a.path == b.path and a.shape == b.shape
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.classes, b.classes)
    label = sorted((tmp_path / "yolo" / "labels" / "train").glob("*.txt"))[0]
    label.write_text(label.read_text() + "\n7 0.5 0.5 0.5 0.5\n")
    third = load_yolo(yaml_path, "train")
    assert not third.from_cache and third[0].classes[-1] == 7
    assert len(third[0].boxes) == len(first[0].boxes) + 1


def test_coco_cache_is_rebuilt_when_the_json_changes_and_when_it_is_corrupt(coco_copy: Path) -> None:
    assert not load_coco(coco_copy, "val").from_cache
    assert load_coco(coco_copy, "val").from_cache
    ann = coco_copy / "annotations" / "instances_val.json"
    st = ann.stat()
    os.utime(ann, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not load_coco(coco_copy, "val").from_cache
    (coco_copy / "annotations" / ".val.cache.npz").write_bytes(b"garbage")
    data = load_coco(coco_copy, "val")
    assert not data.from_cache and len(data) == 3
    assert [p.name for p in (coco_copy / "annotations").iterdir() if ".tmp" in p.name] == []


def test_train_samples_have_the_documented_format(synth: Path) -> None:
    ds = TrainDataset(load_coco(synth, "train", cache=False), imgsz=64, augment=AugmentConfig(mixup=0.5))
    for i in range(len(ds)):
        img, targets, path = ds[i]
        assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
        assert targets.dtype == torch.float32 and targets.shape[1] == 6 and path.endswith(".jpg")
        assert (targets[:, 0] == 0).all() and ((targets[:, 1] >= 0) & (targets[:, 1] < 8)).all()
        assert (targets[:, 2:] >= 0).all() and (targets[:, 2:] <= 64).all()
        assert (targets[:, 4] > targets[:, 2]).all() and (targets[:, 5] > targets[:, 3]).all()


def test_train_samples_depend_only_on_seed_epoch_and_index(synth: Path) -> None:
    data = load_coco(synth, "train", cache=False)
    a, b = TrainDataset(data, 64, AugmentConfig(), seed=1), TrainDataset(data, 64, AugmentConfig(), seed=1)
    assert all(torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1]) for i in (0, 5))
    before = a[0][0]
    a.set_epoch(1)
    assert not torch.equal(a[0][0], before)


def test_without_mosaic_and_random_draws_a_sample_is_the_letterboxed_image(synth: Path) -> None:
    data = load_coco(synth, "train", cache=False)
    ds = TrainDataset(data, 64, AugmentConfig(mosaic=1.0, hsv_h=0, hsv_s=0, hsv_v=0, translate=0, scale=0, fliplr=0))
    ds.set_mosaic(False)
    val = ValDataset(data, 64)
    for i in range(3):
        _, targets, _ = ds[i]
        _, val_targets, _, info = val[i]
        rec = data[i]
        expected = rec.boxes * info.ratio + np.array(info.pad * 2, np.float32)
        np.testing.assert_allclose(targets[:, 2:].numpy(), expected, atol=1e-3)
        np.testing.assert_array_equal(targets[:, 1].numpy(), rec.classes)
        np.testing.assert_allclose(val_targets.numpy(), targets.numpy(), atol=1e-3)


def test_val_samples_map_back_to_the_original_boxes(synth: Path) -> None:
    data = load_coco(synth, "val", cache=False)
    ds = ValDataset(data, 96)
    for i in range(len(ds)):
        img, targets, _, info = ds[i]
        assert img.shape == (3, 96, 96) and info.orig_shape == data[i].shape
        back = scale_boxes_to_original(targets[:, 2:].numpy(), info)
        np.testing.assert_allclose(back, data[i].boxes, atol=1e-3)
        left, top = info.pad
        if top:
            assert (img[:, :top] == 114).all()
        if left:
            assert (img[:, :, :left] == 114).all()


def test_collate_fills_the_batch_index_column(synth: Path) -> None:
    ds = ValDataset(load_coco(synth, "val", cache=False), 64)
    images, targets, paths, infos = collate([ds[0], ds[1], ds[2]])
    assert images.shape == (3, 3, 64, 64) and len(paths) == 3 and len(infos) == 3
    counts = [len(ds[i][1]) for i in range(3)]
    assert targets[:, 0].tolist() == [float(i) for i, n in enumerate(counts) for _ in range(n)]
    train = TrainDataset(load_coco(synth, "train", cache=False), 64, None)
    assert len(collate([train[0], train[1]])) == 3


def test_persistent_workers_see_set_mosaic(synth: Path) -> None:
    ds = TrainDataset(load_coco(synth, "train", cache=False), 64, AugmentConfig(mosaic=1.0, scale=0, translate=0))
    loader = build_dataloader(ds, batch_size=8, workers=1, shuffle=True, seed=0)
    own = sum(len(r.boxes) for r in ds.data)
    set_loader_epoch(loader, 0)
    mosaic_targets = sum(len(b[1]) for b in loader)
    ds.set_mosaic(False)
    set_loader_epoch(loader, 1)
    plain = sum(len(b[1]) for b in loader)
    assert plain == own and mosaic_targets != own


def test_empty_or_wrong_loader_settings_raise(synth: Path) -> None:
    with pytest.raises(DatasetError, match="no usable image"):
        TrainDataset(DetectionSet([], ["a"], [0]))
    ds = ValDataset(load_coco(synth, "val", cache=False), 64)
    with pytest.raises(ConfigError):
        build_dataloader(ds, batch_size=0)
    with pytest.raises(ConfigError, match="torch.distributed"):
        build_dataloader(ds, batch_size=2, distributed=True)
