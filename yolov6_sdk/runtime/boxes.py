"""The boxes of one image as the ecosystem reads them: ``boxes.xyxy``, ``boxes.xywh``, ``boxes.conf``, ``boxes.cls``.

:class:`Boxes` *is* the ``(N, 4)`` float32 xyxy array of a :class:`~yolov6_sdk.runtime.results.Results` (so
``results.boxes[:, 0]`` and ``np.asarray(results.boxes)`` keep working) and adds the named views.

Selecting detections keeps a Boxes whose scores and classes line up with its rows, as ultralytics users write:
``boxes[boxes.conf > 0.5]``, ``boxes[1:3]``, ``boxes[[0, 2]]`` are ``(M, 4)`` Boxes, and ``boxes[i]`` and each
``box`` of ``for box in boxes`` is one detection: a ``(4,)`` Boxes (``x1, y1, x2, y2 = box`` works) whose views
are ``(1, 4)`` / ``(1,)`` (``box.xyxy[0]``, ``box.conf.item()``, ``int(box.cls[0])``). Everything else numpy
derives from it (a column ``boxes[:, 0]``, arithmetic, a comparison) is a plain ``np.ndarray``, so a derived
array never claims scores or classes that no longer line up with its rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Boxes(np.ndarray):
    """Detections of one image: the ``(N, 4)`` float32 xyxy array in original-image pixels, with views.

    Views (new arrays, the boxes themselves are never changed):
        xyxy: ``(N, 4)`` float32 ``x1, y1, x2, y2`` pixels (a plain copy of this array).
        xywh: ``(N, 4)`` float32 ``cx, cy, w, h`` pixels.
        xyxyn, xywhn: the same divided by the image width and height (0..1).
        conf: ``(N,)`` float32 scores. cls: ``(N,)`` int64 class ids.
        data: ``(N, 6)`` float32 rows ``x1, y1, x2, y2, conf, cls``.
        orig_shape: ``(h, w)`` of the original image.
    """

    _conf: np.ndarray
    _cls: np.ndarray
    _orig_shape: tuple[int, int]

    def __new__(cls, xyxy: Any, conf: Any, class_ids: Any, orig_shape: tuple[int, int]) -> Boxes:
        obj = np.array(xyxy, dtype=np.float32).reshape(-1, 4).view(cls)
        obj._conf = np.asarray(conf, dtype=np.float32).reshape(-1)
        obj._cls = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        obj._orig_shape = (int(orig_shape[0]), int(orig_shape[1]))
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        # numpy makes views and copies through here: they carry no detections (see the module docstring)
        self._conf = self._cls = None  # type: ignore[assignment]
        self._orig_shape = (0, 0)

    def __getitem__(self, index: Any) -> Any:
        plain = self.view(np.ndarray)
        if self._conf is None or self.ndim != 2 or not _selects_rows(index):
            return plain[index]
        rows = plain[index]
        if rows.ndim == 1:  # one detection: a (4,) Boxes with (1,)-long scores and classes
            row = [int(index)]
            one = np.array(rows, dtype=np.float32).view(Boxes)
            one._conf, one._cls, one._orig_shape = self._conf[row], self._cls[row], self._orig_shape
            return one
        return Boxes(rows, self._conf[index], self._cls[index], self._orig_shape)

    def __iter__(self) -> Any:
        if self._conf is None or self.ndim != 2:
            return iter(self.view(np.ndarray))
        return (self[i] for i in range(len(self)))

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        plain = tuple(x.view(np.ndarray) if isinstance(x, Boxes) else x for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, Boxes) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        result = super().__array_function__(func, types, args, kwargs)
        return result.view(np.ndarray) if isinstance(result, Boxes) else result

    def __reduce__(self) -> Any:
        plain = self.view(np.ndarray)
        if self._conf is None:  # a derived array pickles as the plain array it is
            return plain.__reduce__()
        return Boxes, (np.array(plain), self._conf, self._cls, self._orig_shape)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        if self._conf is None:
            return np.array(self.view(np.ndarray))
        return Boxes(np.array(self.view(np.ndarray)), self._conf.copy(), self._cls.copy(), self._orig_shape)

    def _owned(self, name: str) -> None:
        if self._conf is None:
            raise AttributeError(f"{name} is read from Results.boxes itself, not from an array derived from it")

    @property
    def xyxy(self) -> np.ndarray:
        return np.array(self.view(np.ndarray), dtype=np.float32).reshape(-1, 4)

    @property
    def xywh(self) -> np.ndarray:
        xyxy = self.view(np.ndarray).reshape(-1, 4)
        out = np.empty_like(xyxy)
        out[:, :2] = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        out[:, 2:] = xyxy[:, 2:] - xyxy[:, :2]
        return out

    def _scale(self) -> np.ndarray:
        self._owned("a normalised box")
        height, width = self._orig_shape
        return np.array([width, height, width, height], dtype=np.float32)

    @property
    def xyxyn(self) -> np.ndarray:
        return self.xyxy / self._scale()

    @property
    def xywhn(self) -> np.ndarray:
        return self.xywh / self._scale()

    @property
    def conf(self) -> np.ndarray:
        self._owned("conf")
        return self._conf

    @property
    def cls(self) -> np.ndarray:
        self._owned("cls")
        return self._cls

    @property
    def data(self) -> np.ndarray:
        self._owned("data")
        return np.concatenate((self.xyxy, self._conf[:, None], self._cls[:, None].astype(np.float32)), axis=1)

    @property
    def orig_shape(self) -> tuple[int, int]:
        self._owned("orig_shape")
        return self._orig_shape

    def cpu(self) -> Boxes:
        """These boxes (they are numpy arrays on the CPU already); for code written for torch tensors."""
        return self

    def numpy(self) -> Boxes:
        """These boxes (already numpy arrays); for code written for torch tensors."""
        return self

    def __repr__(self) -> str:
        if self._conf is None:
            return repr(self.view(np.ndarray))
        return f"Boxes({len(self)} boxes, xyxy=\n{self.view(np.ndarray)!r},\nconf={self._conf!r}, cls={self._cls!r})"


def _selects_rows(index: Any) -> bool:
    """True for an index that picks whole detections: an int, a slice, a boolean mask or an array of ids."""
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        return True
    if isinstance(index, slice):
        return True
    if isinstance(index, (list, np.ndarray)):
        array = np.asarray(index)
        return array.ndim == 1 and (array.dtype == bool or np.issubdtype(array.dtype, np.integer) or array.size == 0)
    return False
