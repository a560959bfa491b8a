"""Detect objects in image and video files, folders and globs; save annotated copies and a JSON report.

What ``yolov6-detect`` runs, callable from Python: :func:`detect` resolves the sources, runs images in the
batches the detector serves and videos frame by frame, and records an input that cannot be read, run or saved
(missing, empty, corrupt) as a failure while the others go on. Annotated copies keep the input's file name
(videos become ``.mp4``), made unique when two inputs share one.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.images import is_video, read_image
from yolov6_sdk.errors import ConfigError, YOLOv6Error
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.runtime.detector import Detector
from yolov6_sdk.runtime.results import Results
from yolov6_sdk.runtime.source import media_files, video_fps, video_writer

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Where a :func:`detect` run is: ``done`` of ``total`` input files finished, ``current`` the one at work
    (a file name, or "<name> frame <n>" inside a video, n from 1)."""

    done: int
    total: int
    current: str


@dataclass
class DetectReport:
    """What a :func:`detect` run did.

    Attributes:
        model: the artifact's path.
        names: class names, index = class id.
        records: :meth:`Results.to_dict` of every image and video frame (boxes xyxy in original-image pixels;
            a video frame's record adds ``"frame"``, index from 0), in the order run: a video when it is reached,
            images in batches, so a video's frames come before the images of a batch it interrupted.
        failures: ``(input, error message)`` for every input that could not be found, read, run or saved.
        images, videos, frames: inputs done (``frames``: of all videos together).
        saved: the annotated files written, in the order run (empty without ``save_dir``).
    """

    model: str
    names: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    images: int = 0
    videos: int = 0
    frames: int = 0
    saved: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: ``{"model", "names", "results": records, "errors": [{"path", "error"}]}``."""
        errors = [{"path": path, "error": error} for path, error in self.failures]
        return {"model": self.model, "names": self.names, "results": self.records, "errors": errors}


ProgressFn = Callable[[Progress], None]


def detect(
    model: str | Path | Detector,
    sources: str | Path | Sequence[str | Path],
    *,
    save_dir: str | Path | None = None,
    save_json: str | Path | None = None,
    progress: ProgressFn | None = None,
    **detector_options: Any,
) -> DetectReport:
    """Run ``model`` on every image and video that ``sources`` (files, folders, glob patterns) name.

    Args:
        model: an artifact path (opened with ``Detector(model, **detector_options)`` and closed at the end) or
            an open :class:`Detector` (used as it is, left open).
        sources: one source or a list of them; folders are searched recursively, results sorted by path.
        save_dir: write annotated copies here (created when needed); None writes none.
        save_json: write :meth:`DetectReport.to_dict` to this file (atomically) when the run ends.
        progress: called after each file and each video frame.
        detector_options: :class:`Detector` keyword arguments (conf, iou, max_det, classes, multi_label,
            device, backend, imgsz, ...); only with a path.

    Returns:
        The per-input records and failures. A failing input never raises.

    Raises:
        ConfigError: ``detector_options`` given with an open Detector, or invalid options (from the Detector).
        ArtifactError: an unusable model (from the Detector).
    """
    if isinstance(model, Detector):
        if detector_options:
            raise ConfigError(
                f"detect() got an open Detector and Detector options {sorted(detector_options)}; set them when "
                "creating the Detector, or pass the model path instead"
            )
        return _run(model, sources, save_dir, save_json, progress)
    with Detector(model, **detector_options) as detector:
        return _run(detector, sources, save_dir, save_json, progress)


def _run(
    detector: Detector,
    sources: str | Path | Sequence[str | Path],
    save_dir: str | Path | None,
    save_json: str | Path | None,
    progress: ProgressFn | None,
) -> DetectReport:
    report = DetectReport(model=str(detector.backend.path), names=list(detector.names))
    outputs = None if save_dir is None else _Outputs(Path(save_dir))
    run = _Run(detector, report, outputs, progress or (lambda _: None))
    run.process(run.collect([sources] if isinstance(sources, (str, Path)) else list(sources)))
    if save_json is not None:
        with atomic_path(save_json) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=1))
    LOGGER.info("%d images and %d videos done, %d inputs failed", report.images, report.videos, len(report.failures))
    return report


@dataclass
class _Outputs:
    """Where annotated copies go: ``folder``, one distinct file name per input."""

    folder: Path
    used_names: set[str] = field(default_factory=set)

    def path(self, source: Path, suffix: str | None = None) -> Path:
        """A file in ``folder`` named after ``source``, made unique when two inputs share a name."""
        stem, ext = source.stem, suffix or source.suffix
        name, n = f"{stem}{ext}", 1
        while name in self.used_names:
            name, n = f"{stem}_{n}{ext}", n + 1
        self.used_names.add(name)
        return self.folder / name


@dataclass
class _Run:
    """One :func:`detect` run: the detector, what is done so far, where outputs go (None: nowhere)."""

    detector: Detector
    report: DetectReport
    outputs: _Outputs | None
    progress: ProgressFn
    total: int = 0
    done: int = 0

    def collect(self, sources: list[str | Path]) -> list[Path]:
        """The media files ``sources`` name; a source naming none is a failure."""
        files: list[Path] = []
        for source in sources:
            try:
                files.extend(media_files(source))
            except YOLOv6Error as exc:
                self.report.failures.append((str(source), str(exc)))
        self.total = len(files)
        return files

    def process(self, files: list[Path]) -> None:
        """Images in batches of the detector's size, videos frame by frame, in ``files`` order."""
        pending: list[Path] = []
        for path in files:
            if is_video(path):
                self.video(path)
                self.file_done(path)
                continue
            pending.append(path)
            if len(pending) == self.detector.batch_size:
                self.images(pending)
                pending = []
        if pending:
            self.images(pending)

    def file_done(self, path: Path) -> None:
        self.done += 1
        self.progress(Progress(self.done, self.total, path.name))

    def images(self, paths: list[Path]) -> None:
        """Read ``paths`` (one batch), run the readable ones together, save and record each."""
        loaded: list[tuple[Path, Any]] = []
        for path in paths:
            try:
                loaded.append((path, read_image(path)))
            except YOLOv6Error as exc:
                self.report.failures.append((str(path), str(exc)))
                self.file_done(path)
        if not loaded:
            return
        results = self.detector.predict_batch([image for _, image in loaded], paths=[str(p) for p, _ in loaded])
        for (path, _), result in zip(loaded, results, strict=True):
            try:
                if self.outputs is not None:
                    self.report.saved.append(result.save(self.outputs.path(path)))
            except YOLOv6Error as exc:
                self.report.failures.append((str(path), str(exc)))
            else:
                self.report.images += 1
                self.report.records.append(result.to_dict())
            self.file_done(path)

    def video(self, path: Path) -> None:
        """Run every frame of ``path``; its records count only when the whole video went through."""
        records: list[dict[str, Any]] = []
        try:
            with self.video_sink(path) as write:
                for index, result in enumerate(self.detector.stream(path)):
                    write(result)
                    records.append({**result.to_dict(), "frame": index})
                    self.progress(Progress(self.done, self.total, f"{path.name} frame {index + 1}"))
        except YOLOv6Error as exc:
            self.report.failures.append((str(path), str(exc)))
            return
        self.report.videos += 1
        self.report.frames += len(records)
        self.report.records.extend(records)

    @contextlib.contextmanager
    def video_sink(self, path: Path) -> Iterator[Callable[[Results], None]]:
        """A ``write(result)`` drawing frames into ``<save_dir>/<stem>.mp4`` (a no-op when not saving).

        The writer opens on the first frame (its size is the frame's); the file appears only when complete.
        """
        if self.outputs is None:
            yield lambda result: None
            return
        output = self.outputs.path(path, ".mp4")
        fps = video_fps(path)
        with contextlib.ExitStack() as stack:
            writers: list[Any] = []

            def write(result: Results) -> None:
                if not writers:
                    height, width = result.orig_shape
                    writers.append(stack.enter_context(video_writer(output, fps, (width, height))))
                writers[0].write(result.draw())

            yield write
        if writers:
            self.report.saved.append(output)
