"""The Detector facade: one artifact in, :class:`~yolov6_sdk.runtime.results.Results` out.

``Detector(path)`` picks the backend from the artifact's suffix (``.onnx`` ONNX Runtime or OpenVINO, whichever
was measured faster on this CPU, ONNX Runtime on a GPU; ``.xml`` OpenVINO; ``.engine`` / ``.plan`` TensorRT;
``.pt`` / ``.pth`` torch; see :mod:`yolov6_sdk.runtime.backends.registry`), letterboxes images to the artifact's input size, runs them in
batches the artifact serves, decodes the outputs (NMS for raw exports, the EfficientNMS outputs of
end-to-end ones) and maps boxes back to original-image pixels (xyxy, clipped to the image).

A backend that takes torch tensors on a GPU gets its batch letterboxed on that device and its outputs
decoded there (:func:`preprocess_batch_torch`, :func:`postprocess_raw_torch`); otherwise the numpy forms run,
writing into one reused input buffer per thread and rescaling the boxes in place.

Rectangular inference (``rect``): an artifact exported with dynamic height and width gets each batch on the
smallest multiple-of-32 canvas that holds its largest member at the model's scale (a 480x640 picture runs on
480x640 instead of 640x640), as the official evaluation does per batch; boxes map back to the same original
pixels. Video and camera streams are read one frame ahead by a reader thread (:mod:`.pipeline`).
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk.artifact.images import as_bgr_uint8
from yolov6_sdk.artifact.model_info import ModelInfo, served_input_range
from yolov6_sdk.artifact.preprocess import (
    InputBuffer,
    LetterboxInfo,
    check_imgsz,
    letterbox_batch,
    letterbox_batch_torch,
    pad_batch,
    rect_shape,
    scale_boxes_to_original,
)
from yolov6_sdk.artifact.reduced_decode import DecodedImage
from yolov6_sdk.artifact.spec import END2END_OUTPUTS
from yolov6_sdk.errors import ConfigError, YOLOv6Error
from yolov6_sdk.runtime.backends.base import Backend
from yolov6_sdk.runtime.backends.registry import open_backend
from yolov6_sdk.runtime.names import class_names
from yolov6_sdk.runtime.pipeline import DEFAULT_DEPTH, Prefetched, prefetch, prefetched_values
from yolov6_sdk.runtime.postprocess import (
    Detections,
    check_thresholds,
    decode_raw,
    decode_raw_torch,
    postprocess_end2end,
    to_numpy,
)
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.runtime.source import (
    ImageItem,
    Source,
    VideoFrames,
    image_items,
    is_stream,
    on_original,
    video_frames,
    warn_about_videos,
)
from yolov6_sdk.runtime.thresholds import (
    ClassFilter,
    Thresholds,
    call_thresholds,
    class_ids,
    filter_detections,
    warn_end2end_overrides,
)

LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 16  # chunk size for artifacts whose batch axis is unbounded


class Detector:
    """Run a YOLOv6 artifact on images and videos.

    Args:
        path: ``.onnx``, ``.xml`` (OpenVINO IR), ``.engine`` / ``.plan`` or ``.pt`` / ``.pth`` file.
        device: "auto", "cpu", "cuda" or "cuda:N".
        backend: "auto" (see the module docstring), "onnxruntime", "openvino", "tensorrt" or "torch".
        conf: score threshold (0..1). End-to-end artifacts apply their exported threshold first.
        iou: NMS IoU threshold (raw artifacts; end-to-end ones use their exported value).
        max_det: detections kept per image.
        imgsz: input (H, W) or side, multiples of 32; default: what the artifact records.
        classes: keep only these classes: class ids and/or class names (as :meth:`Results.filter` takes them).
        agnostic: class-agnostic NMS (raw artifacts): a box suppresses overlapping boxes of every class, so an
            object comes out once even when two classes score it above ``conf``.
        multi_label: NMS semantics: a box may come out once per class above ``conf`` (True, COCO evaluation)
            or only with its best class (False, detection). None: what the artifact records
            (:attr:`ModelInfo.multi_label`). End-to-end artifacts run the NMS they were exported with; another
            choice is warned about and ignored (re-export to change it).
        batch: images per backend run; larger inputs are split into runs of this many, a smaller last run is
            padded to the artifact's smallest batch. None: the artifact's largest batch, or
            ``max(DEFAULT_MAX_BATCH, smallest batch)`` when its batch axis is unbounded.
        threads: ONNX Runtime intra-op threads (None: its default).
        half: fp16 (torch backend on CUDA).
        cuda_graph: replay one captured CUDA graph per batch shape instead of launching kernels one by one
            (torch and TensorRT backends on CUDA); the first batch of each shape pays for the capture.
        rect: rectangular inference: letterbox each batch to the smallest multiple-of-32 canvas holding its
            largest member at the scale of ``imgsz`` (True), or always to the ``imgsz`` square (False). None:
            True for artifacts exported with dynamic height and width (``dynamic_hw`` recorded), else False.
            Needs an artifact whose input height and width are dynamic (a dynamic-shape export or a ``.pt``).
        names: class names instead of the artifact's: a list, a YOLO data.yaml, a text file with one name per
            line or "a,b,c" (see :func:`~yolov6_sdk.runtime.names.read_names`); for artifacts that record none,
            such as an engine built by trtexec. None: the artifact's names (numbers when it records none).
        ort_provider: ONNX Runtime's GPU provider, "cuda" or "tensorrt" (its TensorRT EP, with engine and timing
            caches beside the model); None: CUDA. ``.onnx`` files only.
        precision: the precision OpenVINO computes an fp32 or int8 artifact's float parts in, "fp32" or "bf16"
            (bf16 needs a CPU with AVX512-BF16 or AMX); None: what the artifact records (bf16 artifacts run bf16,
            others fp32). OpenVINO only.
        reduced_decode: decode a JPEG file at least 2x, 4x or 8x its letterboxed size on both sides at 1/2, 1/4 or
            1/8 scale (boxes in original pixels; ``Results.orig_img`` decoded at full size when first used).

    An option the chosen backend does not take (``threads`` for a ``.pt``, ``cuda_graph`` for ONNX Runtime) is
    refused with a :class:`ConfigError` naming the backends that take it.

    Raises:
        ArtifactError: missing, empty, corrupt or unknown artifact.
        ConfigError: invalid option values, or a ``batch`` outside what the artifact serves.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        backend: str = "auto",
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        imgsz: int | tuple[int, int] | None = None,
        classes: ClassFilter = None,
        multi_label: bool | None = None,
        batch: int | None = None,
        threads: int | None = None,
        half: bool = False,
        cuda_graph: bool = False,
        rect: bool | None = None,
        names: Sequence[str] | str | Path | None = None,
        ort_provider: str | None = None,
        precision: str | None = None,
        reduced_decode: bool = True,
        agnostic: bool = False,
    ) -> None:
        check_thresholds(conf, iou, max_det)
        if not isinstance(reduced_decode, bool):
            raise ConfigError(f"reduced_decode must be True or False, got {reduced_decode!r}")
        if multi_label is not None and not isinstance(multi_label, bool):
            raise ConfigError(f"multi_label must be True, False or None (the artifact's choice), got {multi_label!r}")
        options = {"threads": threads, "half": half or None, "cuda_graph": cuda_graph or None,
                   "ort_provider": ort_provider, "precision": precision}  # fmt: skip
        self.backend: Backend = open_backend(
            path, backend, device, {key: value for key, value in options.items() if value is not None}, {"imgsz": imgsz}
        )
        self.info: ModelInfo = self.backend.info
        try:
            self.imgsz = check_imgsz(imgsz) if imgsz is not None else self.info.imgsz
            self.input_range = served_input_range(self.info, self.imgsz, str(self.backend.path))
            self.rect = self._check_rect(rect)
            self.names: list[str] = class_names(names, self.info.names, str(path))
            self.thresholds = Thresholds(float(conf), float(iou), int(max_det), class_ids(classes, self.names))
            self.batch_size = self._check_batch(batch)
        except BaseException:  # a bad option: release the backend before reporting it
            self.backend.close()
            raise
        self.reduced_decode = reduced_decode
        self.agnostic = bool(agnostic)
        self.multi_label = self.info.multi_label if multi_label is None or self.info.end2end else multi_label
        if self.info.end2end:
            warn_end2end_overrides(str(self.backend.path), self.info, multi_label, self.thresholds, self.agnostic)
        self._buffers = threading.local()  # one reused input buffer per calling thread

    # ------------------------------------------------------------------------------------------ setup

    @property
    def device(self) -> str:
        """The device the backend runs on, e.g. "cpu" or "cuda:0"."""
        return self.backend.device

    def _check_rect(self, rect: bool | None) -> bool:
        if rect is not None and not isinstance(rect, bool):
            raise ConfigError(f"rect must be True, False or None (the artifact's choice), got {rect!r}")
        if rect is None:
            return self.input_range is not None and self.info.meta.dynamic_hw
        if rect and self.input_range is None:
            raise ConfigError(
                f"rect=True needs an artifact with dynamic height and width, but {self.backend.path} takes "
                f"{self.imgsz[0]}x{self.imgsz[1]} only; build it with yolov6-build --dynamic-hw "
                "(ExportOptions(dynamic_hw=True) in Python) or drop rect"
            )
        return rect

    def canvas_shape(self, shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """The (h, w) input a batch of images of ``shapes`` (h, w) runs at: the rectangle of :func:`rect_shape`
        (raised to the artifact's smallest input) when :attr:`rect`, else :attr:`imgsz`."""
        if not self.rect or self.input_range is None:
            return self.imgsz
        height, width = rect_shape(shapes, self.imgsz)
        low = self.input_range[0]
        return max(height, low[0]), max(width, low[1])

    @property
    def conf(self) -> float:
        """The score threshold of calls that pass none."""
        return self.thresholds.conf

    @property
    def iou(self) -> float:
        """The NMS IoU threshold of calls that pass none."""
        return self.thresholds.iou

    @property
    def max_det(self) -> int:
        """Detections kept per image by calls that pass no ``max_det``."""
        return self.thresholds.max_det

    @property
    def classes(self) -> list[int] | None:
        """Class ids kept by calls that pass no ``classes`` (None: all)."""
        ids = self.thresholds.classes
        return None if ids is None else list(ids)

    def _check_batch(self, batch: int | None) -> int:
        """Images per backend run: ``batch``, checked against the artifact's range, or the default rule."""
        low, high = self.info.min_batch, self.info.max_batch
        if batch is None:
            return high or max(DEFAULT_MAX_BATCH, low)
        valid = isinstance(batch, (int, np.integer)) and not isinstance(batch, bool)
        if not valid or not low <= batch <= (high or float("inf")):
            served = f"{low}..{high}" if high is not None else f"{low} or more"
            raise ConfigError(
                f"batch must be an int in {served} (the batches {self.backend.path} serves), got {batch!r}; "
                "pass one in that range or None (the artifact's default)"
            )
        return int(batch)

    def warmup(self, runs: int = 1) -> None:
        """Run ``runs`` batches of gray images through the whole pipeline (allocations, kernel selection)."""
        gray = np.full((*self.imgsz, 3), 114, dtype=np.uint8)
        for _ in range(runs):
            self.predict_batch([gray] * self.info.min_batch)

    # ------------------------------------------------------------------------------------------ running

    def __call__(
        self,
        source: Source,
        errors: str = "raise",
        *,
        conf: float | None = None,
        iou: float | None = None,
        classes: ClassFilter = None,
        max_det: int | None = None,
    ) -> list[Results]:
        """Detect objects in ``source``: a path, folder, glob, numpy BGR image, or a list of them.

        Returns one :class:`Results` per image, in order (folders and globs sorted by path).

        Args:
            errors: "raise": the first image that cannot be read or run raises. "skip": such an image gets a
                :meth:`Results.failed` entry (no detections, ``error`` says why, ``ok`` is False) and the others
                run; a warning names each one.
            conf, iou, classes, max_det: this call's thresholds, as the Detector's options of the same names
                (None: the Detector's).

        Raises:
            ImageError: a missing, empty or corrupt image, or an unsupported array (``errors="raise"``).
            ConfigError: a video or camera source (use :meth:`stream`), an unknown ``errors`` value, or a
                threshold out of range.
        """
        if errors not in ("raise", "skip"):
            raise ConfigError(f'errors must be "raise" or "skip", got {errors!r}')
        warn_about_videos(source)
        settings = call_thresholds(self.thresholds, self.names, conf, iou, classes, max_det)
        if errors == "raise":
            return list(self._run_items(image_items(source), settings))
        return self._run_items_skipping(image_items(source, strict=False), settings)

    predict = __call__

    def stream(self, source: Source | int | VideoFrames, prefetch_depth: int = DEFAULT_DEPTH) -> Iterator[Results]:
        """Yield one :class:`Results` per frame of a video file, camera index or stream URL, or per image.

        A frame's Results carries the source in ``path`` and its index in the video (from 0; a damaged frame
        the reader skipped keeps its number) in ``frame``. Frames run one at a time (lowest latency); a reader
        thread decodes up to ``prefetch_depth`` frames ahead of the model (0: decode each frame only when the
        previous one is done). A source that fails part-way (e.g. a stream cut) raises its error after the
        frames before it. An opened :class:`~yolov6_sdk.runtime.source.VideoFrames` may be passed instead of
        its source, to read its counts (skipped frames, an early end) afterwards. Images as in :meth:`__call__`,
        yielded as each batch finishes; the reader thread decodes the next pictures while the model runs.
        """
        if isinstance(prefetch_depth, bool) or not isinstance(prefetch_depth, int) or prefetch_depth < 0:
            raise ConfigError(f"prefetch_depth must be an int >= 0 (0: no reader thread), got {prefetch_depth!r}")
        if isinstance(source, VideoFrames) or is_stream(source):
            video = source if isinstance(source, VideoFrames) else video_frames(source)  # type: ignore[arg-type]
            name = str(video.source)
            frames = video.numbered()
            for index, frame in prefetched_values(frames, prefetch_depth) if prefetch_depth else frames:
                result = self._predict([frame], [name], self.thresholds)[0]
                result.frame = index
                yield result
            return
        yield from self._run_items(image_items(source), self.thresholds, prefetch_depth)  # type: ignore[arg-type]

    def decode(self, item: ImageItem) -> DecodedImage:
        """``item``'s picture, a JPEG file decoded at the reduced size this detector needs (``reduced_decode``)."""
        return item.decode(self.imgsz if self.reduced_decode else None)

    def _decoded(self, items: Sequence[ImageItem], depth: int) -> Iterator[Prefetched[DecodedImage]]:
        """``items`` decoded in order: by a reader thread ``depth`` entries ahead of the model when there are
        several (decoding the next pictures while the backend runs the current batch), in this thread otherwise.
        A picture that fails to decode carries its error in its entry."""
        if len(items) > 1 and depth > 0:
            yield from prefetch(items, self.decode, depth=max(depth, self.batch_size))
            return
        for index, item in enumerate(items):
            try:
                yield Prefetched(index, value=self.decode(item))
            except YOLOv6Error as exc:
                yield Prefetched(index, error=exc)

    def _run_items(
        self, items: Sequence[ImageItem], settings: Thresholds, depth: int = DEFAULT_DEPTH
    ) -> Iterator[Results]:
        """Decode and run ``items`` one batch at a time; the first picture that fails to decode raises."""
        entries = self._decoded(items, depth)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            decoded = []
            for entry in itertools.islice(entries, len(chunk)):
                if entry.error is not None:
                    raise entry.error
                decoded.append(entry.value)
            paths = [None if i.path is None else str(i.path) for i in chunk]
            yield from map(on_original, self._predict([d.pixels for d in decoded], paths, settings), decoded)

    def _run_items_skipping(self, items: Sequence[ImageItem], settings: Thresholds) -> list[Results]:
        """Like :meth:`_run_items`, but an item that fails to load or run becomes a failed Results (warned)."""
        results: list[Results] = []
        entries = self._decoded(items, DEFAULT_DEPTH)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            done: dict[int, Results] = {}
            loaded: dict[int, DecodedImage] = {}
            for index, entry in enumerate(itertools.islice(entries, len(chunk))):
                if isinstance(entry.error, YOLOv6Error):
                    done[index] = Results.failed(str(chunk[index].path or chunk[index].name), str(entry.error),
                                                 self.names)  # fmt: skip
                elif entry.error is not None:
                    raise entry.error
                else:
                    loaded[index] = entry.value
            paths = [None if chunk[i].path is None else str(chunk[i].path) for i in loaded]
            run = functools.partial(self._predict, settings=settings)
            ran = self._skipping(run, [d.pixels for d in loaded.values()], paths)
            done.update(zip(loaded, map(on_original, ran, loaded.values()), strict=True))
            for index in sorted(done):
                if not done[index].ok:
                    LOGGER.warning("skipped %s: %s", chunk[index].path or chunk[index].name, done[index].error)
                results.append(done[index])
        return results

    def predict_batch_skipping(self, images: Sequence[np.ndarray], paths: Sequence[str | None]) -> list[Results]:
        """:meth:`predict_batch`, but an image the model refuses gets a :meth:`Results.failed` in its place
        instead of failing the others: a refused batch is run again one image at a time to find it."""
        return self._skipping(self.predict_batch, list(images), list(paths))

    def _skipping(self, run: Any, images: list[np.ndarray], paths: list[str | None]) -> list[Results]:
        """``run(images, paths)``, or, when it refuses, each image again alone (a refused one: a failed Results)."""
        try:
            return run(images, paths)
        except YOLOv6Error as exc:
            if len(images) == 1:
                return [Results.failed(paths[0] or "image", str(exc), self.names)]
            return [self._skipping(run, [image], [path])[0] for image, path in zip(images, paths, strict=True)]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        paths: Sequence[str | None] | None = None,
        *,
        conf: float | None = None,
        iou: float | None = None,
        classes: ClassFilter = None,
        max_det: int | None = None,
    ) -> list[Results]:
        """Detect objects in HxWx3 uint8 BGR ``images`` (any sizes; converted like :func:`as_bgr_uint8`).

        Runs the backend once per :attr:`batch_size` images (the ``batch`` option); a run smaller than the
        artifact takes is padded. ``paths`` (one per image) is stored in each :class:`Results`; ``conf``, ``iou``,
        ``classes``, ``max_det`` as in :meth:`__call__`.
        """
        settings = call_thresholds(self.thresholds, self.names, conf, iou, classes, max_det)
        images = [as_bgr_uint8(image, f"image {i}") for i, image in enumerate(images)]
        paths = list(paths) if paths is not None else [None] * len(images)
        if len(paths) != len(images):
            raise ConfigError(f"got {len(paths)} paths for {len(images)} images; pass one path per image")
        return self._predict(images, paths, settings)

    def _predict(self, images: list[np.ndarray], paths: list[str | None], settings: Thresholds) -> list[Results]:
        """:meth:`predict_batch` on checked values: HxWx3 uint8 images, one path each."""
        results: list[Results] = []
        for start in range(0, len(images), self.batch_size):
            stop = start + self.batch_size
            results.extend(self._run_batch(images[start:stop], paths[start:stop], settings))
        return results

    def _run_batch(self, images: list[np.ndarray], paths: list[str | None], settings: Thresholds) -> list[Results]:
        """One backend run over at most :attr:`batch_size` images; timings are per image in ms."""
        count = len(images)
        on_device = self.backend.wants_torch
        t0 = time.perf_counter()
        canvas = self.canvas_shape([image.shape[:2] for image in images])
        if on_device:
            batch, infos = letterbox_batch_torch(images, self.imgsz, canvas, self.device)
        else:
            batch, infos = letterbox_batch(images, self.imgsz, canvas, self._input_buffer())
        batch = pad_batch(batch, self.info.min_batch)
        self._sync(on_device)
        t1 = time.perf_counter()
        outputs = self.backend.infer(batch)
        self._sync(on_device)
        t2 = time.perf_counter()
        detections = self._decode(outputs, on_device, settings)[:count]
        results = [self._results(*row) for row in zip(detections, infos, images, paths, strict=True)]
        t3 = time.perf_counter()
        speed = {"preprocess": (t1 - t0) * 1e3 / count, "inference": (t2 - t1) * 1e3 / count}
        speed["postprocess"] = (t3 - t2) * 1e3 / count
        for result in results:
            result.speed.update(speed)
        return results

    def _input_buffer(self) -> InputBuffer:
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None:
            buffer = self._buffers.buffer = InputBuffer()
        return buffer

    def _sync(self, on_device: bool) -> None:
        if on_device and self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    def _decode(self, outputs: dict[str, Any], on_device: bool, settings: Thresholds) -> list[Detections]:
        if self.info.end2end:
            decoded = postprocess_end2end(*(outputs[name] for name in END2END_OUTPUTS))
            return [filter_detections(det, settings) for det in decoded]
        raw = outputs[self.info.outputs[0].name] if self.info.outputs else next(iter(outputs.values()))
        conf, iou, max_det, classes = settings.conf, settings.iou, settings.max_det, settings.classes
        if on_device:
            return decode_raw_torch(raw, conf, iou, max_det, classes, self.multi_label, self.agnostic)
        return decode_raw(to_numpy(raw), conf, iou, max_det, classes, self.multi_label, self.agnostic)

    def _results(self, det: Detections, info: LetterboxInfo, image: np.ndarray, path: str | None) -> Results:
        if isinstance(det.boxes, np.ndarray):  # the numpy decoder's own arrays: boxes rescaled in place
            boxes = scale_boxes_to_original(det.boxes.astype(np.float32, copy=False), info, inplace=True)
            scores, class_ids = det.scores, det.class_ids
        else:
            boxes = to_numpy(scale_boxes_to_original(det.boxes, info))
            scores, class_ids = to_numpy(det.scores), to_numpy(det.class_ids)
        return Results(
            boxes,
            scores,
            class_ids,
            self.names,
            info.orig_shape,
            path=path,
            orig_img=image,
        )

    # ------------------------------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the backend (sessions, engines, device memory)."""
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Detector({str(self.backend.path)!r}, backend={self.backend.kind!r}, device={self.device!r}, "
            f"imgsz={self.imgsz}, classes={len(self.names)}, end2end={self.info.end2end}, "
            f"multi_label={self.multi_label})"
        )
