"""What ultralytics users call on a result, on :class:`~yolov6_sdk.runtime.results.Results`.

``r.summary()`` (a list of plain dicts), ``r.to_df()`` (a pandas DataFrame; pandas is optional), ``r.show()``
(a window where a display exists), ``r.cpu()`` / ``r.numpy()`` (the arrays are numpy on the CPU already, so
these return the Results itself) and the default file name of ``r.save()`` (:func:`default_save_name`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.errors import ConfigError

WINDOW_WAIT_MS = 0  # cv2.waitKey: 0 waits for a key press, as ultralytics' show() does


def default_save_name(path: str | None, frame: int | None) -> Path:
    """``results_<source name>`` in the current folder (``results_<stem>_<frame>.jpg`` for a video frame,
    ``results_image.jpg`` without a source): the name ultralytics' ``save()`` picks."""
    if path is None:
        return Path("results_image.jpg")
    source = Path(path)
    if frame is not None or source.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
        suffix = "" if frame is None else f"_{frame}"
        return Path(f"results_{source.stem or 'stream'}{suffix}.jpg")
    return Path(f"results_{source.name}")


def _has_display() -> bool:
    """True where a window can open: Windows, macOS, or an X11 / Wayland session."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class ResultsIdioms:
    """Mixin of :class:`~yolov6_sdk.runtime.results.Results`: the calls users bring from ultralytics."""

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """One dict per detection: ``{"name", "class", "confidence", "box": {"x1", "y1", "x2", "y2"}}``.

        Boxes in original-image pixels, or divided by the image width and height with ``normalize``; values
        rounded to ``decimals``. Plain Python types (``json.dumps`` takes it as it is).
        """
        boxes = self.boxes.xyxyn if normalize else self.boxes.xyxy  # type: ignore[attr-defined]
        rows = []
        for box, score, class_id in zip(boxes, self.scores, self.class_ids, strict=True):  # type: ignore[attr-defined]
            x1, y1, x2, y2 = (round(float(v), decimals) for v in box)
            rows.append(
                {
                    "name": self.name(class_id),  # type: ignore[attr-defined]
                    "class": int(class_id),
                    "confidence": round(float(score), decimals),
                    "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
                }
            )
        return rows

    def to_df(self) -> Any:
        """The detections as a ``pandas.DataFrame`` with the columns of :meth:`to_csv` (``source, frame,
        class_id, name, conf, x1, y1, x2, y2``), one row each.

        Raises:
            MissingDependencyError: pandas is not installed (``pip install pandas``).
        """
        pd = require("pandas")
        from yolov6_sdk.runtime.results import CSV_COLUMNS

        boxes = self.boxes.xyxy  # type: ignore[attr-defined]
        count = len(boxes)
        frame = self.frame  # type: ignore[attr-defined]
        columns = {
            "source": [self.path] * count,  # type: ignore[attr-defined]
            "frame": pd.array([frame] * count, dtype="Int64"),
            "class_id": self.class_ids.astype(np.int64),  # type: ignore[attr-defined]
            "name": [self.name(c) for c in self.class_ids],  # type: ignore[attr-defined]
            "conf": self.scores.astype(np.float32),  # type: ignore[attr-defined]
            **{name: boxes[:, i] for i, name in enumerate(("x1", "y1", "x2", "y2"))},
        }
        return pd.DataFrame(columns, columns=list(CSV_COLUMNS))

    def show(self, title: str | None = None, **plot_options: Any) -> None:
        """Open a window with :meth:`plot` (``plot_options`` as there) and wait for a key press.

        Raises:
            ConfigError: no display here (no ``DISPLAY`` / ``WAYLAND_DISPLAY``), or this OpenCV build has no GUI
                (``opencv-python-headless``): save the picture with ``save()`` instead.
        """
        import cv2

        if not _has_display():
            raise ConfigError("show() needs a display, and none is set (DISPLAY / WAYLAND_DISPLAY); use save() instead")
        image = self.plot(**plot_options)  # type: ignore[attr-defined]
        window = title or str(self.path or "yolov6")  # type: ignore[attr-defined]
        try:
            cv2.imshow(window, image)
            cv2.waitKey(WINDOW_WAIT_MS)
            cv2.destroyWindow(window)
        except cv2.error as exc:
            raise ConfigError(
                "show() cannot open a window: this OpenCV build has no GUI (opencv-python-headless); "
                "pip install opencv-python for windows, or use save()"
            ) from exc

    def cpu(self) -> Any:
        """These Results: the arrays are numpy on the CPU already (for code written for torch tensors)."""
        return self

    def numpy(self) -> Any:
        """These Results: the arrays are numpy already (for code written for torch tensors)."""
        return self


__all__ = ["ResultsIdioms", "default_save_name"]
