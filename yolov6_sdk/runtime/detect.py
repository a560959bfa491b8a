"""Detect objects in image and video files, folders and globs; save annotated copies and a JSON report.

What ``yolov6-detect`` runs, callable from Python: :func:`detect` resolves the sources, runs images in the
batches the detector serves (and at most :data:`BATCH_PIXELS` decoded pixels at once) and videos frame by frame,
and records an input that cannot be read, run or saved (missing, empty, corrupt, too large) as a failure while
the others go on; a video's damaged frames are skipped and counted. Annotated copies keep the input's file name
(videos become ``.mp4``), made unique when two inputs share one; YOLO label files go to ``<save_dir>/labels/``
and crops to ``<save_dir>/crops/<class>/``. A camera index (``0``) or a stream URL (``rtsp://...``) runs like a
video until it ends or the run is interrupted; an interruption still completes its recording.

The output folder and the JSON file are checked before any work starts. The JSON report is written when the
run ends, also when it is interrupted or fails midway (then with ``"complete": false``); when its file cannot be
written then, it goes to :func:`~yolov6_sdk.fileio.fallback_path` instead (:attr:`DetectReport.json_path`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.images import is_video, pixel_limit
from yolov6_sdk.artifact.reduced_decode import DecodedImage
from yolov6_sdk.errors import ConfigError, YOLOv6Error
from yolov6_sdk.fileio import check_output_file, check_output_folder, fallback_path, write_text
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.runtime.source import (
    ImageItem,
    VideoFrames,
    media_files,
    on_original,
    video_fps,
    video_frames,
    video_writer,
)

LOGGER = logging.getLogger(__name__)

BATCH_PIXELS = 50_000_000
"""Decoded pixels (width x height summed) a batch of images may hold; a larger image runs alone."""


@dataclass(frozen=True)
class Progress:
    """Where a :func:`detect` run is: ``done`` of ``total`` input files finished, ``current`` the one at work
    (a file name, or "<name> frame <n>" inside a video, n from 1); ``result``: the Results of an image just
    done (None for failures and video frames)."""

    done: int
    total: int
    current: str
    result: Results | None = None


@dataclass
class DetectReport:
    """What a :func:`detect` run did.

    Attributes:
        model: the artifact's path.
        names: class names, index = class id.
        records: :meth:`Results.to_dict` of every image and video frame (boxes xyxy in original-image pixels;
            ``"frame"``: a video frame's index from 0, None for an image), in the order run: a video when it is
            reached, images in batches, so a video's frames come before the images of a batch it interrupted.
        failures: ``(input, error message)`` for every input that could not be found, read, run or saved.
        warnings: ``(video, message)`` for every video that skipped damaged frames or ended before the frame
            count it declares.
        images, videos, frames: inputs done (``frames``: of all videos together).
        skipped_frames: damaged video frames skipped (all videos together).
        saved: the annotated files written, in the order run (empty without ``save_dir``).
        complete: False when the run was interrupted or failed midway (records hold what was done).
        json_path: where the JSON report was written (None: not asked for).
    """

    model: str
    names: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    images: int = 0
    videos: int = 0
    frames: int = 0
    skipped_frames: int = 0
    saved: list[Path] = field(default_factory=list)
    complete: bool = True
    json_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: ``{"model", "names", "complete", "results": records, "errors": [{"path", "error"}],
        "warnings": [{"path", "warning"}], "skipped_frames"}``."""
        errors = [{"path": path, "error": error} for path, error in self.failures]
        warnings = [{"path": path, "warning": text} for path, text in self.warnings]
        return {
            "model": self.model,
            "names": self.names,
            "complete": self.complete,
            "results": self.records,
            "errors": errors,
            "warnings": warnings,
            "skipped_frames": self.skipped_frames,
        }


ProgressFn = Callable[[Progress], None]


def detect(
    model: str | Path | Detector,
    sources: str | Path | Sequence[str | Path],
    *,
    save_dir: str | Path | None = None,
    save_json: str | Path | None = None,
    progress: ProgressFn | None = None,
    save: SaveOptions | None = None,
    **detector_options: Any,
) -> DetectReport:
    """Run ``model`` on every image and video that ``sources`` (files, folders, glob patterns) name.

    Args:
        model: an artifact path (opened with ``Detector(model, **detector_options)`` and closed at the end) or
            an open :class:`Detector` (used as it is, left open).
        sources: one source or a list of them; folders are searched recursively, results sorted by path.
        save_dir: write annotated copies here (created when needed); None writes none.
        save_json: write :meth:`DetectReport.to_dict` to this file (atomically) when the run ends, however it
            ends; a fallback file when it cannot be written then (see the module docstring).
        progress: called after each file and each video frame.
        save: what goes to ``save_dir`` (annotated copies, label files, crops, line width, video frame stride);
            None: annotated copies only, every frame.
        detector_options: :class:`Detector` keyword arguments (conf, iou, max_det, classes, multi_label,
            device, backend, imgsz, ...); only with a path.

    Returns:
        The per-input records and failures. A failing input never raises.

    Raises:
        ConfigError: ``detector_options`` given with an open Detector, invalid options (from the Detector), a
            bad ``YOLOV6_MAX_PIXELS``, or a ``save_dir`` / ``save_json`` that cannot be written (checked before
            the model is opened).
        ArtifactError: an unusable model (from the Detector).
    """
    pixel_limit()  # a bad YOLOV6_MAX_PIXELS is one configuration error, not one failure per file
    if save_dir is not None:
        check_output_folder(save_dir, "save_dir", ConfigError)
    if save_json is not None:
        check_output_file(save_json, "save_json", ConfigError)
    if isinstance(model, Detector):
        if detector_options:
            raise ConfigError(
                f"detect() got an open Detector and Detector options {sorted(detector_options)}; set them when "
                "creating the Detector, or pass the model path instead"
            )
        return _run(model, sources, save_dir, save_json, progress, save or SaveOptions())
    with Detector(model, **detector_options) as detector:
        return _run(detector, sources, save_dir, save_json, progress, save or SaveOptions())


def _run(
    detector: Detector,
    sources: str | Path | int | Sequence[str | Path | int],
    save_dir: str | Path | None,
    save_json: str | Path | None,
    progress: ProgressFn | None,
    save: SaveOptions,
) -> DetectReport:
    report = DetectReport(model=str(detector.backend.path), names=list(detector.names))
    outputs = None if save_dir is None else _Outputs(Path(save_dir), save)
    run = _Run(detector, report, outputs, progress or (lambda _: None), save.vid_stride)
    try:
        run.process(run.collect([sources] if isinstance(sources, (str, Path, int)) else list(sources)))
    except BaseException:
        report.complete = False
        raise
    finally:
        if save_json is not None:
            report.json_path = _write_report(report, Path(save_json))
    LOGGER.info("%d images and %d videos done, %d inputs failed", report.images, report.videos, len(report.failures))
    return report


def _write_report(report: DetectReport, path: Path) -> Path:
    """Write the JSON report to ``path``, or to a fallback file when that fails; returns where it went."""
    text = json.dumps(report.to_dict(), indent=1)
    try:
        return write_text(path, text)
    except OSError as exc:
        fallback = fallback_path(path.name)
        LOGGER.error("cannot write %s (%s); the detections are in %s instead", path, exc, fallback)
        return write_text(fallback, text)


@dataclass(frozen=True)
class SaveOptions:
    """What :func:`detect` writes to its ``save_dir``.

    Attributes:
        images: annotated copies of images and videos.
        txt: a YOLO label file per image (``labels/<stem>.txt``; video frames ``labels/<stem>_<frame>.txt``).
        conf: add each detection's score to the label lines.
        crop: each detection's region as ``crops/<class name>/<stem>_<i>.jpg``.
        line_width: box line width in px of the annotated copies (None: about 0.5 % of the short side).
        vid_stride: run every N-th frame of videos and streams (1: every frame).
    """

    images: bool = True
    txt: bool = False
    conf: bool = False
    crop: bool = False
    line_width: int | None = None
    vid_stride: int = 1

    def __post_init__(self) -> None:
        for name in ("line_width", "vid_stride"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive int, got {value!r}")


@dataclass
class _Outputs:
    """Where outputs go: ``folder``, one distinct file name per input, what to write (``save``)."""

    folder: Path
    save: SaveOptions = field(default_factory=SaveOptions)
    used_names: set[str] = field(default_factory=set)

    def path(self, source: Path, suffix: str | None = None) -> Path:
        """A file in ``folder`` named after ``source``, made unique when two inputs share a name."""
        stem, ext = source.stem, suffix or source.suffix
        name, n = f"{stem}{ext}", 1
        while name in self.used_names:
            name, n = f"{stem}_{n}{ext}", n + 1
        self.used_names.add(name)
        return self.folder / name

    def extras(self, result: Results, stem: str) -> None:
        """The label file and crops of ``result`` (named after ``stem``), as :attr:`save` asks."""
        if self.save.txt:
            frame = "" if result.frame is None else f"_{result.frame}"
            result.save_txt(self.folder / "labels" / f"{stem}{frame}.txt", save_conf=self.save.conf)
        if self.save.crop:
            result.save_crop(self.folder / "crops")

    def image(self, result: Results, source: Path) -> Path | None:
        """Write what :attr:`save` asks for one image; returns the annotated copy (None: not asked)."""
        target = self.path(source) if self.save.images else None
        self.extras(result, source.stem if target is None else target.stem)
        return None if target is None else result.save(target, line_width=self.save.line_width)


def _stream_name(source: str | int) -> str:
    """A file stem for a camera index ("camera0") or a stream URL (its last path part, else "stream")."""
    if isinstance(source, int):
        return f"camera{source}"
    tail = str(source).split("://", 1)[-1].rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    return Path(tail).stem if "/" in str(source).split("://", 1)[-1] and Path(tail).stem else "stream"


class _StridedFrames(VideoFrames):
    """The frames of a video or stream, every ``stride``-th one (indices keep their place in the source)."""

    def __init__(self, source: str | Path | int, stride: int) -> None:
        super().__init__(source)
        self.stride = stride

    def numbered(self) -> Iterator[tuple[int, Any]]:
        for index, frame in super().numbered():
            if index % self.stride == 0:
                yield index, frame


@dataclass
class _Run:
    """One :func:`detect` run: the detector, what is done so far, where outputs go (None: nowhere)."""

    detector: Detector
    report: DetectReport
    outputs: _Outputs | None
    progress: ProgressFn
    vid_stride: int = 1
    total: int = 0
    done: int = 0

    def collect(self, sources: list[str | Path | int]) -> list[Path | str | int]:
        """The media files ``sources`` name (camera indices and stream URLs as they are); a source naming none
        is a failure."""
        files: list[Path | str | int] = []
        for source in sources:
            if isinstance(source, int) or "://" in str(source):
                files.append(source if isinstance(source, int) else str(source))
                continue
            try:
                files.extend(media_files(source))
            except YOLOv6Error as exc:
                self.report.failures.append((str(source), str(exc)))
        self.total = len(files)
        return files

    def process(self, files: list[Path]) -> None:
        """Images in batches (the detector's size, at most :data:`BATCH_PIXELS`), videos frame by frame, in
        ``files`` order."""
        pending: list[tuple[Path, DecodedImage]] = []
        pixels = 0
        for path in files:
            if not isinstance(path, Path) or is_video(path):
                self.video(path)
                self.file_done(path)
                continue
            image = self.read(path)
            if image is None:
                continue
            size = image.pixels.shape[0] * image.pixels.shape[1]
            if pending and pixels + size > BATCH_PIXELS:
                self.images(pending)
                pending, pixels = [], 0
            pending.append((path, image))
            pixels += size
            if len(pending) == self.detector.batch_size:
                self.images(pending)
                pending, pixels = [], 0
        if pending:
            self.images(pending)

    def file_done(self, path: Path | str | int, result: Results | None = None) -> None:
        self.done += 1
        self.progress(Progress(self.done, self.total, path.name if isinstance(path, Path) else str(path), result))

    def read(self, path: Path) -> DecodedImage | None:
        """The image at ``path`` as the detector decodes it (``reduced_decode``), or None (recorded as a failure)
        when it cannot be read."""
        try:
            return self.detector.decode(ImageItem(path=path, name=str(path)))
        except YOLOv6Error as exc:
            self.report.failures.append((str(path), str(exc)))
            self.file_done(path)
            return None

    def images(self, loaded: list[tuple[Path, DecodedImage]]) -> None:
        """Run one batch of decoded images together (one by one when the batch fails), save and record each.

        Boxes are in original pixels; an annotated copy of a reduced decode is drawn on the full picture, decoded
        again for it."""
        paths = [str(path) for path, _ in loaded]
        ran = self.detector.predict_batch_skipping([image.pixels for _, image in loaded], paths)
        results = [on_original(result, image) for (_, image), result in zip(loaded, ran, strict=True)]
        for (path, _), result in zip(loaded, results, strict=True):
            if not result.ok:
                self.report.failures.append((str(path), str(result.error)))
                self.file_done(path)
                continue
            try:
                saved = None if self.outputs is None else self.outputs.image(result, path)
            except (YOLOv6Error, OSError) as exc:
                self.report.failures.append((str(path), f"cannot save the outputs: {exc}"))
            else:
                self.report.images += 1
                self.report.saved.extend([saved] if saved is not None else [])
            self.report.records.append(result.to_dict())
            self.file_done(path, result)

    def video(self, path: Path | str | int) -> None:
        """Run every readable frame (every ``vid_stride``-th) of a video file, camera or stream URL; a source
        failing midway keeps the records of its frames done. An interrupted camera or stream still completes
        its recording (the interruption is raised after)."""
        records: list[dict[str, Any]] = []
        name = path.name if isinstance(path, Path) else str(path)
        stopped: BaseException | None = None
        try:
            frames = video_frames(path) if self.vid_stride == 1 else _StridedFrames(path, self.vid_stride)
            with self.video_sink(path) as write:
                try:
                    for result in self.detector.stream(frames):  # the next frame decodes while this one runs
                        write(result)
                        records.append(result.to_dict())
                        self.progress(Progress(self.done, self.total, f"{name} frame {result.frame + 1}"))
                except KeyboardInterrupt as exc:
                    if isinstance(path, Path):
                        raise
                    stopped = exc  # a live source ends this way: keep what was recorded
        except (YOLOv6Error, OSError) as exc:
            self.report.failures.append((str(path), str(exc)))
            return
        finally:
            self.report.records.extend(records)
        if stopped is not None:
            self.report.frames += len(records)
            raise stopped
        if frames.summary():
            self.report.warnings.append((str(path), frames.summary()))
        self.report.videos += 1
        self.report.frames += len(records)
        self.report.skipped_frames += frames.skipped

    @contextlib.contextmanager
    def video_sink(self, path: Path | str | int) -> Iterator[Callable[[Results], None]]:
        """A ``write(result)`` drawing frames into ``<save_dir>/<stem>.mp4`` (a no-op when not saving), and
        writing each frame's label file and crops when asked.

        The writer opens on the first frame (its size is the frame's); the file appears only when complete.
        """
        if self.outputs is None:
            yield lambda result: None
            return
        outputs = self.outputs
        source = path if isinstance(path, Path) else Path(_stream_name(path))
        output = outputs.path(source, ".mp4")
        fps = (30.0 if not isinstance(path, Path) else video_fps(path)) / self.vid_stride
        with contextlib.ExitStack() as stack:
            writers: list[Any] = []

            def write(result: Results) -> None:
                outputs.extras(result, output.stem)
                if not outputs.save.images:
                    return
                if not writers:
                    height, width = result.orig_shape
                    writers.append(stack.enter_context(video_writer(output, fps, (width, height))))
                writers[0].write(result.plot(line_width=outputs.save.line_width))

            yield write
        if writers:
            self.report.saved.append(output)
