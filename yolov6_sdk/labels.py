"""Detection labels: COCO json and YOLO txt loaders with a label cache.

Every loader returns a :class:`DetectionSet`: per image its path, ``(h, w)``, boxes ``float32 [N, 4]``
``x1, y1, x2, y2`` in pixels of the original image, and 0-based contiguous class indices ``int64 [N]``.
Bad data never stops a load: unreadable images, unknown class ids, malformed lines and degenerate boxes are
dropped and listed in ``DetectionSet.skipped`` as ``(path, reason)`` for the caller to log. Parsed labels
are cached in an ``.npz`` file next to the labels, keyed by the file list, sizes and modification times.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.errors import DatasetError
from yolov6_sdk.fileio import IMAGE_SUFFIXES, atomic_path, files_under

LOGGER = logging.getLogger(__name__)
MIN_BOX_SIDE = 1.0  # px; boxes thinner than this after clipping to the image are dropped
_CACHE_VERSION = "1"


@dataclass(frozen=True)
class ImageRecord:
    """One image: ``boxes`` float32 ``[N, 4]`` xyxy pixels, ``classes`` int64 ``[N]`` 0-based."""

    path: Path
    shape: tuple[int, int]  # (height, width) in pixels
    boxes: np.ndarray
    classes: np.ndarray
    image_id: int


@dataclass
class DetectionSet:
    """A parsed split: images with labels, class ``names`` (index order) and what was dropped while parsing.

    ``category_ids[i]`` is the annotation file's id of class ``i`` (COCO ids; ``i`` itself for YOLO sets).
    ``missing_labels`` counts images without a label file (kept, with no objects).
    """

    images: list[ImageRecord]
    names: list[str]
    category_ids: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    missing_labels: int = 0
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.images[index]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def fingerprint(self) -> str:
        """SHA-1 (hex) of the class names and every image's file name, size and labels: two splits with the
        same fingerprint train alike, whatever folder they sit in."""
        digest = hashlib.sha1("\n".join(self.names).encode())
        for rec in self.images:
            digest.update(f"{rec.path.name}:{rec.shape}".encode())
            digest.update(np.ascontiguousarray(rec.boxes, dtype=np.float32).tobytes())
            digest.update(np.ascontiguousarray(rec.classes, dtype=np.int64).tobytes())
        return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- helpers


def _probe_one(path: Path) -> tuple[int, int] | None:
    try:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    return None if img is None else (int(img.shape[0]), int(img.shape[1]))


def _probe_images(paths: Sequence[Path]) -> list[tuple[int, int] | None]:
    """``(h, w)`` of each image as cv2 decodes it, or None when it is missing or unreadable."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(_probe_one, paths))


def _clip_boxes(boxes: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip xyxy ``boxes [N, 4]`` to the image; returns (clipped boxes, bool mask of non-degenerate ones)."""
    out = boxes.astype(np.float32).reshape(-1, 4)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    keep = ((out[:, 2] - out[:, 0]) >= MIN_BOX_SIDE) & ((out[:, 3] - out[:, 1]) >= MIN_BOX_SIDE)
    return out, keep


def _fingerprint(files: Sequence[Path], extra: str) -> str:
    """Hash of the file list with each file's size and mtime (a missing file hashes as missing)."""
    digest = hashlib.sha256(f"{_CACHE_VERSION}\n{extra}\n".encode())
    for f in files:
        try:
            st = f.stat()
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{f}\0missing\n".encode())
    return digest.hexdigest()


def _read_cache(path: Path, key: str) -> DetectionSet | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            counts = z["counts"]
            splits = np.cumsum(counts)[:-1]
            images = [] if len(counts) == 0 else [
                ImageRecord(Path(p), (int(s[0]), int(s[1])), b, c, int(i))
                for p, s, b, c, i in zip(
                    z["paths"].tolist(), z["shapes"], np.split(z["boxes"], splits),
                    np.split(z["classes"], splits), z["image_ids"], strict=True,
                )
            ]  # fmt: skip
            skipped = list(zip(z["skipped_paths"].tolist(), z["skipped_reasons"].tolist(), strict=True))
            return DetectionSet(
                images, z["names"].tolist(), [int(c) for c in z["category_ids"]], skipped,
                int(z["missing_labels"]), from_cache=True,
            )  # fmt: skip
    except (OSError, KeyError, ValueError) as exc:
        LOGGER.warning("label cache %s is unreadable (%s); rebuilding it", path, exc)
        return None


def _write_cache(path: Path, key: str, data: DetectionSet) -> None:
    """Write the cache atomically (temporary file + ``os.replace``); a read-only folder only logs a warning."""
    images = data.images
    arrays = {
        "key": np.array(key),
        "paths": np.array([str(r.path) for r in images], dtype=str),
        "shapes": np.array([r.shape for r in images], dtype=np.int64).reshape(-1, 2),
        "image_ids": np.array([r.image_id for r in images], dtype=np.int64),
        "counts": np.array([len(r.boxes) for r in images], dtype=np.int64),
        "boxes": np.concatenate([r.boxes for r in images] or [np.zeros((0, 4))]).astype(np.float32),
        "classes": np.concatenate([r.classes for r in images] or [np.zeros(0)]).astype(np.int64),
        "names": np.array(data.names, dtype=str),
        "category_ids": np.array(data.category_ids, dtype=np.int64),
        "skipped_paths": np.array([p for p, _ in data.skipped], dtype=str),
        "skipped_reasons": np.array([r for _, r in data.skipped], dtype=str),
        "missing_labels": np.array(data.missing_labels),
    }
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as exc:
        LOGGER.warning("could not write label cache %s (%s); labels will be parsed again next time", path, exc)


def _cached(cache_path: Path, key: str, use_cache: bool, build: Callable[[], DetectionSet]) -> DetectionSet:
    if use_cache:
        data = _read_cache(cache_path, key)
        if data is not None:
            LOGGER.info("labels loaded from cache %s", cache_path)
            return data
    data = build()
    if use_cache:
        _write_cache(cache_path, key, data)
    LOGGER.info("parsed %d images (%d problems reported)", len(data), len(data.skipped))
    return data


# -------------------------------------------------------------------------------------------------- COCO


def _read_coco_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read COCO annotation file {path}: {exc}; fix or regenerate the file") from exc
    ok = isinstance(doc, dict) and all(isinstance(doc.get(k), list) for k in ("images", "categories"))
    ok = ok and all(isinstance(c, dict) and isinstance(c.get("id"), int) and "name" in c for c in doc["categories"])
    ok = ok and all(isinstance(i, dict) and "id" in i for i in doc["images"])
    if not ok:
        raise DatasetError(
            f"{path} is not a COCO detection file: expected a json object with 'images' (each with an 'id'), "
            "'annotations' and 'categories' (each with an integer 'id' and a 'name') lists"
        )
    return doc


def _coco_boxes(
    anns: list[dict[str, Any]], index: dict[int, int], h: int, w: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Boxes/classes of one image's annotations (crowd regions ignored) and the problems found."""
    boxes, classes, unknown, malformed = [], [], set(), 0
    for a in anns:
        if a.get("iscrowd", 0):
            continue
        bbox, cat = a.get("bbox"), a.get("category_id")
        if cat not in index:
            unknown.add(cat)
        elif not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            malformed += 1
        else:
            x, y, bw, bh = bbox
            boxes.append([x, y, x + bw, y + bh])
            classes.append(index[cat])
    out, keep = _clip_boxes(np.array(boxes, dtype=np.float32), h, w)
    problems = []
    if not keep.all():
        problems.append(f"{len(keep) - int(keep.sum())} boxes outside the image or degenerate dropped")
    if unknown:
        problems.append(f"annotations with unknown category ids {sorted(map(str, unknown))} dropped")
    if malformed:
        problems.append(f"{malformed} annotations without a valid [x, y, w, h] bbox dropped")
    return out[keep], np.array(classes, dtype=np.int64)[keep], problems


def _parse_coco(ann_path: Path, image_dir: Path) -> DetectionSet:
    doc = _read_coco_json(ann_path)
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    by_image: dict[Any, list[dict[str, Any]]] = {img.get("id"): [] for img in doc["images"]}
    orphans = 0
    for a in doc.get("annotations", []):
        if a.get("image_id") in by_image:
            by_image[a["image_id"]].append(a)
        else:
            orphans += 1
    data = DetectionSet([], [str(c["name"]) for c in cats], [int(c["id"]) for c in cats])
    if orphans:
        data.skipped.append((str(ann_path), f"{orphans} annotations refer to unknown image ids"))
    paths = [image_dir / str(img.get("file_name", "")) for img in doc["images"]]
    for img, path, shape in zip(doc["images"], paths, _probe_images(paths), strict=True):
        if shape is None:
            data.skipped.append((str(path), "image missing or unreadable; skipped"))
            continue
        if (img.get("height", shape[0]), img.get("width", shape[1])) != shape:
            reason = f"json says {img.get('width')}x{img.get('height')} but the file is {shape[1]}x{shape[0]}"
            data.skipped.append((str(path), reason + "; skipped"))
            continue
        boxes, classes, problems = _coco_boxes(by_image[img["id"]], index, *shape)
        data.skipped += [(str(path), p) for p in problems]
        data.images.append(ImageRecord(path, shape, boxes, classes, int(img["id"])))
    return data


def load_coco(root: str | Path, split: str, *, cache: bool = True) -> DetectionSet:
    """Read ``<root>/annotations/instances_<split>.json`` with images in ``<root>/images/<split>/``.

    COCO category ids become class indices ``0..K-1`` in ascending id order (``names`` in the same order).
    """
    root = Path(root)
    ann_path, image_dir = root / "annotations" / f"instances_{split}.json", root / "images" / split
    for p in (ann_path, image_dir):
        if not p.exists():
            raise DatasetError(
                f"COCO dataset file or folder not found: {p}. Expected <root>/annotations/instances_{split}.json "
                f"and <root>/images/{split}/; point root at a COCO-layout folder or create one with "
                "`yolov6-datagen ROOT`"
            )
    key = _fingerprint([ann_path, *files_under(image_dir, IMAGE_SUFFIXES)], "coco")
    cache_path = ann_path.parent / f".{split}.cache.npz"
    return _cached(cache_path, key, cache, lambda: _parse_coco(ann_path, image_dir))


# -------------------------------------------------------------------------------------------------- YOLO


def _read_data_yaml(path: Path, split: str) -> tuple[list[str], list[Path]]:
    """Class names and image folders of ``split`` from a YOLO ``data.yaml``."""
    yaml = require("yaml")
    if not path.is_file():
        raise DatasetError(f"data yaml not found: {path}; pass the path of a YOLO data.yaml")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(cfg, dict) or split not in cfg or "names" not in cfg:
        keys = sorted(cfg) if isinstance(cfg, dict) else type(cfg).__name__
        raise DatasetError(f"{path} must map '{split}' and 'names' (and usually train/val); found {keys}")
    names = cfg["names"]
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or ("nc" in cfg and cfg["nc"] != len(names)):
        raise DatasetError(f"{path}: 'names' must be a list (or index map) of nc={cfg.get('nc')} class names")
    base = path.parent / str(cfg.get("path", ""))
    entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
    dirs = [(base / str(e)).resolve() for e in entries]
    for d in dirs:
        if not d.is_dir():
            raise DatasetError(f"{path}: {split} image folder {d} does not exist; fix the path in the yaml")
    return [str(n) for n in names], dirs


def _label_path(image: Path) -> Path:
    """YOLO convention: the last ``images`` folder in the path becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def _parse_yolo_lines(text: str, h: int, w: int, nc: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``cls cx cy w h`` normalised lines -> xyxy pixel boxes, classes and problems."""
    rows, problems, unknown = [], [], set()
    for n, line in enumerate(text.splitlines(), 1):
        values = line.split()
        if not values:
            continue
        try:
            cls, cx, cy, bw, bh = map(float, values)
        except ValueError:  # not 5 values, or not numbers
            problems.append(f"line {n}: expected 5 numbers 'cls cx cy w h', got {line.strip()[:60]!r}; dropped")
            continue
        if not (cls.is_integer() and 0 <= cls < nc):
            unknown.add(values[0])
        else:
            rows.append([cls, (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
    if unknown:
        problems.append(f"unknown class ids {sorted(unknown)} (expected 0..{nc - 1}); dropped")
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    boxes, keep = _clip_boxes(table[:, 1:], h, w)
    if not keep.all():
        problems.append(f"{len(keep) - int(keep.sum())} boxes outside the image or degenerate dropped")
    return boxes[keep], table[keep, 0].astype(np.int64), problems


def _parse_yolo(images: list[Path], names: list[str]) -> DetectionSet:
    data = DetectionSet([], names, list(range(len(names))))
    for i, (path, shape) in enumerate(zip(images, _probe_images(images), strict=True)):
        if shape is None:
            data.skipped.append((str(path), "image unreadable; skipped"))
            continue
        label = _label_path(path)
        if not label.is_file():
            data.missing_labels += 1
            data.images.append(ImageRecord(path, shape, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), i))
            continue
        try:
            text = label.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            data.skipped.append((str(label), f"label file unreadable ({exc}); image skipped"))
            continue
        boxes, classes, problems = _parse_yolo_lines(text, *shape, len(names))
        data.skipped += [(str(label), p) for p in problems]
        data.images.append(ImageRecord(path, shape, boxes, classes, i))
    return data


def load_yolo(data_yaml: str | Path, split: str, *, cache: bool = True) -> DetectionSet:
    """Read a YOLO-format split: images under the yaml's ``split`` folder(s), labels in the sibling
    ``labels`` tree (``cls cx cy w h`` normalised per line). Folders are relative to the yaml's
    ``path`` key, itself relative to the yaml file. An image without a label file has no objects.
    """
    data_yaml = Path(data_yaml)
    names, dirs = _read_data_yaml(data_yaml, split)
    images = [p for d in dirs for p in files_under(d, IMAGE_SUFFIXES)]
    if not images:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {[str(d) for d in dirs]}")
    key = _fingerprint([*images, *map(_label_path, images)], json.dumps(names))
    label_dir = _label_path(dirs[0] / "x").parent
    anchor = label_dir if label_dir.is_dir() else dirs[0]
    cache_path = anchor.parent / f".{anchor.name}.cache.npz"
    data = _cached(cache_path, key, cache, lambda: _parse_yolo(images, names))
    if data.missing_labels:
        LOGGER.info("%d of %d images have no label file (treated as background)", data.missing_labels, len(data))
    return data


__all__ = ["DetectionSet", "ImageRecord", "load_coco", "load_yolo"]
