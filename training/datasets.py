"""Torch datasets over a :class:`~yolov6_sdk.labels.DetectionSet` and the data loader.

:class:`TrainDataset` yields augmented ``(image uint8 [3, S, S] RGB, targets float32 [N, 6], path)`` samples
(targets ``batch index, class, x1, y1, x2, y2`` in pixels of the S x S input), :class:`ValDataset` letterboxed
images with their :class:`LetterboxInfo`; :func:`collate` stacks them and :func:`build_dataloader` wraps either
in a (distributed) loader whose shuffling order is seeded per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.preprocess import LetterboxInfo
from yolov6_sdk.errors import ConfigError, DatasetError
from yolov6_sdk.fileio import IMAGE_SUFFIXES
from yolov6_sdk.labels import DetectionSet

from . import augment as aug

torch = require("torch")

_OFFICIAL_AUGMENT = aug.AugmentConfig()
DEFAULT_CACHE_BYTES = 4 << 30  # decoded training images kept in memory per loader process


def _imread(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"image {path} cannot be read any more; reload the dataset to drop it")
    return img


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC BGR uint8 -> CHW RGB uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[::-1]))


def _targets(boxes: np.ndarray, classes: np.ndarray) -> torch.Tensor:
    """``[N, 6]`` float32 rows ``(0, class, x1, y1, x2, y2)``; :func:`collate` fills the first column."""
    out = np.zeros((len(boxes), 6), dtype=np.float32)
    out[:, 1], out[:, 2:] = classes, boxes
    return torch.from_numpy(out)


def _why_empty(data: DetectionSet) -> str:
    """Why a parsed split kept no image, in words a command-line user can act on."""
    if not data.skipped:
        return f"its image folder holds no {'/'.join(sorted(IMAGE_SUFFIXES))} file; check the --data path and split"
    path, reason = data.skipped[0]
    others = f", and {len(data.skipped) - 1} more dropped" if len(data.skipped) > 1 else ""
    return f"every image was dropped while reading it, e.g. {path}: {reason}{others}"


class TrainDataset(torch.utils.data.Dataset):
    """Training samples ``(image uint8 [3, S, S] RGB, targets float32 [N, 6], path)``.

    ``targets`` rows are ``(0, class, x1, y1, x2, y2)`` in pixels of the S x S canvas. Augmentation follows
    ``augment`` (default: the official recipe; None: letterbox only). Each sample's randomness comes from
    ``(seed, epoch, index)``, so results do not depend on the number of workers; :meth:`set_epoch` and
    :meth:`set_mosaic` write to shared memory and reach running (persistent) workers.

    Images are decoded once and kept in memory as uint8, already resized so their long side is S (INTER_AREA
    when shrinking, as the validation loader does), up to ``cache_bytes`` in all (0 turns the cache off);
    each loader process keeps its own cache, which persistent workers carry from epoch to epoch.
    """

    def __init__(
        self,
        data: DetectionSet,
        imgsz: int = 640,
        augment: aug.AugmentConfig | None = _OFFICIAL_AUGMENT,
        seed: int = 0,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if not len(data):
            raise DatasetError(f"the training split holds no usable image: {_why_empty(data)}")
        if imgsz < 32:
            raise ConfigError(f"imgsz={imgsz}: expected a training size >= 32 px")
        self.data, self.imgsz, self.augment, self.seed = data, int(imgsz), augment, seed
        self._state = torch.tensor([0, 1], dtype=torch.int64).share_memory_()  # [epoch, mosaic enabled]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (resized image, scaled boxes)
        self._cache_room = int(cache_bytes)

    def __len__(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random augmentations the next samples use."""
        self._state[0] = int(epoch)

    def set_mosaic(self, enabled: bool) -> None:
        """Switch mosaic (and mixup, which only follows mosaic) on or off, e.g. for the last epochs."""
        self._state[1] = int(bool(enabled))

    @property
    def mosaic_enabled(self) -> bool:
        return bool(self._state[1])

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image uint8 [h, w, 3] BGR with max(h, w) = S, boxes float32 [N, 4] in its pixels, classes [N])``."""
        rec = self.data.images[index]
        if index in self._cache:
            img, boxes = self._cache[index]
            return img, boxes, rec.classes
        img = _imread(rec.path)
        h0, w0 = img.shape[:2]
        ratio = self.imgsz / max(h0, w0)
        if ratio != 1:
            size = (max(1, round(w0 * ratio)), max(1, round(h0 * ratio)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
        boxes = rec.boxes * np.float32(ratio)
        if img.nbytes <= self._cache_room:
            self._cache[index] = (img, boxes)
            self._cache_room -= img.nbytes
        return img, boxes, rec.classes

    def _mosaic(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indices = [index, *rng.integers(0, len(self), 3).tolist()]
        rng.shuffle(indices)
        imgs, boxes, classes = zip(*(self._load(i) for i in indices), strict=True)
        return aug.mosaic4(list(imgs), list(boxes), list(classes), self.imgsz, rng, self.augment)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        rng = np.random.default_rng([self.seed, int(self._state[0]), index])
        cfg = self.augment
        if cfg is not None and self.mosaic_enabled and rng.random() < cfg.mosaic:
            img, boxes, classes = self._mosaic(index, rng)
            if rng.random() < cfg.mixup:
                img2, boxes2, classes2 = self._mosaic(int(rng.integers(len(self))), rng)
                img = aug.mixup(img, img2, rng)
                boxes, classes = np.concatenate([boxes, boxes2]), np.concatenate([classes, classes2])
        else:
            img, boxes, classes = self._load(index)
            img, boxes = aug.letterbox_train(img, boxes, self.imgsz)
            if cfg is not None:
                img, boxes, kept = aug.random_affine(
                    img, boxes, cfg.degrees, cfg.translate, cfg.scale, cfg.shear, self.imgsz, rng
                )
                classes = classes[kept]
        if cfg is not None:
            img = aug.augment_hsv(img, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v, rng)
            if rng.random() < cfg.flipud:
                img, boxes = aug.flipud(img, boxes)
            if rng.random() < cfg.fliplr:
                img, boxes = aug.fliplr(img, boxes)
        return _to_tensor(img), _targets(boxes, classes), str(self.data.images[index].path)


class ValDataset(torch.utils.data.Dataset):
    """Validation samples ``(image uint8 [3, S, S] RGB, targets float32 [N, 6], path, info)``.

    ``info`` is the input contract's :class:`LetterboxInfo`; ``yolov6_sdk.artifact.preprocess.scale_boxes_to_original``
    maps predictions back to the original image with it.

    Letterbox only: the long side becomes S (INTER_AREA when shrinking, INTER_LINEAR when enlarging, as the
    official validation loader), centred on gray 114. Targets are in canvas pixels like :class:`TrainDataset`.
    """

    def __init__(self, data: DetectionSet, imgsz: int = 640) -> None:
        if imgsz < 32:
            raise ConfigError(f"imgsz={imgsz}: expected a validation size >= 32 px")
        self.data, self.imgsz = data, int(imgsz)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str, LetterboxInfo]:
        rec = self.data.images[index]
        img = _imread(rec.path)
        h0, w0 = img.shape[:2]
        interp = cv2.INTER_AREA if self.imgsz < max(h0, w0) else cv2.INTER_LINEAR
        canvas, info = aug.letterbox(img, self.imgsz, interpolation=interp)
        left, top = info.pad
        boxes = rec.boxes * np.float32(info.ratio) + np.array([left, top, left, top], dtype=np.float32)
        return _to_tensor(canvas), _targets(boxes, rec.classes), str(rec.path), info


def collate(batch: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Stack a list of samples: ``(images uint8 [B, 3, S, S], targets float32 [T, 6], paths[, infos])``.

    Column 0 of ``targets`` becomes the sample's index in the batch. Validation samples keep their
    :class:`LetterboxInfo` list as a fourth element.
    """
    images = torch.stack([b[0] for b in batch])
    targets = []
    for i, sample in enumerate(batch):
        t = sample[1].clone()
        t[:, 0] = i
        targets.append(t)
    paths = [b[2] for b in batch]
    out = (images, torch.cat(targets) if targets else torch.zeros((0, 6)), paths)
    return (*out, [b[3] for b in batch]) if batch and len(batch[0]) > 3 else out


def _worker_init(_: int) -> None:
    cv2.setNumThreads(0)  # one process per core already; cv2's own threads would oversubscribe


def build_dataloader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    distributed: bool = False,
) -> torch.utils.data.DataLoader:
    """DataLoader with :func:`collate`; a DistributedSampler when ``distributed``; persistent workers.

    Call :func:`set_loader_epoch` before each epoch so shuffling and augmentation change between epochs.
    """
    if batch_size < 1 or workers < 0:
        raise ConfigError(f"batch_size={batch_size}, workers={workers}: expected batch_size >= 1, workers >= 0")
    sampler = None
    if distributed:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ConfigError("distributed=True needs an initialised torch.distributed process group (torchrun)")
        sampler = torch.utils.data.DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def set_loader_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Tell the sampler (distributed shuffling) and the dataset (augmentation draws) which epoch starts."""
    if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
