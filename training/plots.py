"""Training records: ``results.csv`` (one row per epoch) and a PNG chart of the losses and mAP, drawn with cv2."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from yolov6_sdk.fileio import atomic_path

_PANEL_W, _PANEL_H, _MARGIN = 380, 240, 62
_LINE = (204, 102, 31)  # BGR blue
_GRID, _TEXT = (225, 225, 225), (40, 40, 40)


def write_results_csv(path: str | Path, rows: Sequence[dict[str, float | int | str]]) -> Path:
    """Write ``rows`` (dicts with the same keys, in column order) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def read_results_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``results.csv`` as dicts of strings (empty list when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _panel(title: str, xs: list[float], ys: list[float]) -> np.ndarray:
    """One line chart ``[_PANEL_H, _PANEL_W, 3]`` uint8 BGR; NaN values (e.g. epochs not evaluated) are skipped."""
    img = np.full((_PANEL_H, _PANEL_W, 3), 255, dtype=np.uint8)
    cv2.putText(img, title, (_MARGIN, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _TEXT, 1, cv2.LINE_AA)
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    x0, y0, x1, y1 = _MARGIN, 32, _PANEL_W - 12, _PANEL_H - 28
    cv2.rectangle(img, (x0, y0), (x1, y1), _GRID, 1)
    if not points:
        return img
    lo_x, hi_x = min(p[0] for p in points), max(p[0] for p in points)
    lo_y, hi_y = min(p[1] for p in points), max(p[1] for p in points)
    hi_x, hi_y = (hi_x if hi_x > lo_x else lo_x + 1), (hi_y if hi_y > lo_y else lo_y + max(abs(lo_y) * 0.1, 1e-3))
    px = [
        (int(x0 + (x - lo_x) / (hi_x - lo_x) * (x1 - x0)), int(y1 - (y - lo_y) / (hi_y - lo_y) * (y1 - y0)))
        for x, y in points
    ]
    cv2.polylines(img, [np.array(px, dtype=np.int32)], False, _LINE, 2, cv2.LINE_AA)
    for p in px:
        cv2.circle(img, p, 2, _LINE, -1, cv2.LINE_AA)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35
    cv2.putText(img, f"{hi_y:.4g}", (2, y0 + 8), font, scale, _TEXT, 1, cv2.LINE_AA)
    cv2.putText(img, f"{lo_y:.4g}", (2, y1), font, scale, _TEXT, 1, cv2.LINE_AA)
    cv2.putText(img, f"{lo_x:g}", (x0, y1 + 16), font, scale, _TEXT, 1, cv2.LINE_AA)
    cv2.putText(img, f"epoch {hi_x:g}", (x1 - 60, y1 + 16), font, scale, _TEXT, 1, cv2.LINE_AA)
    return img


def plot_results(rows: Sequence[dict[str, object]], path: str | Path, columns: Sequence[str]) -> Path:
    """Draw one panel per entry of ``columns`` against ``epoch`` (a grid of 3 per row) and save a PNG atomically."""
    xs = [_as_float(r.get("epoch")) for r in rows]
    panels = [_panel(c, xs, [_as_float(r.get(c)) for r in rows]) for c in columns]
    per_row = 3
    while len(panels) % per_row:
        panels.append(np.full_like(panels[0], 255))
    grid = np.vstack([np.hstack(panels[i : i + per_row]) for i in range(0, len(panels), per_row)])
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", grid)
        if not ok:
            raise OSError(f"cv2 could not encode the training chart {path}")
        tmp.write_bytes(buf.tobytes())
    return path


__all__ = ["plot_results", "read_results_csv", "write_results_csv"]
