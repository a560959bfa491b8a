"""Class names made safe for each use: a label to draw, print or put in a CSV cell, and one file-name component.

Class names come from model files (ONNX metadata, sidecars, checkpoints), so they are untrusted text: a name may
hold path separators or ``..`` (a crop folder outside the folder asked for), NUL or other control characters (a
file name the system refuses, a CSV row split in two, a terminal rewritten), or be megabytes long (drawing it
takes seconds). :func:`display_name` bounds the length and escapes control characters; :func:`path_component`
turns a name into one portable, visible file-name component. Both read at most a bounded prefix of the name, so
their cost does not grow with its length.
"""

from __future__ import annotations

import unicodedata

MAX_DISPLAY_CHARS = 64
"""Longest label drawn or written for a class name (characters, the ellipsis included)."""
MAX_COMPONENT_CHARS = 64
"""Longest file-name component made from a class name (characters; at most 4 bytes each in UTF-8)."""

_ELLIPSIS = "\u2026"
_UNSAFE_IN_PATHS = frozenset('/\\<>:"|?*')  # separators on any system, and what Windows refuses in a name
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
)


_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # control, format, surrogate, line/paragraph breaks


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in _CONTROL_CATEGORIES


def _escape(char: str) -> str:
    """``\\n``, ``\\r``, ``\\t``, ``\\xNN`` or ``\\uNNNN`` for a control character, as Python's repr writes it."""
    return repr(char)[1:-1]


def display_name(name: object, limit: int = MAX_DISPLAY_CHARS) -> str:
    """``name`` as one line of at most ``limit`` characters: control characters escaped (``a\\rb`` for
    ``"a\\rb"``), anything longer cut and ended with an ellipsis."""
    text = str(name)
    head = "".join(_escape(c) if _is_control(c) else c for c in text[: limit + 1])
    if len(head) <= limit and len(text) <= limit:
        return head
    return head[: limit - 1] + _ELLIPSIS


def path_component(name: object, fallback: str) -> str:
    """``name`` as one file-name component that stays inside the folder it is joined to.

    Path separators, characters Windows refuses (``<>:"|?*``) and control characters become ``_``; leading dots
    and spaces (``..``, a hidden ``.name``) and trailing dots and spaces are dropped; a Windows device name
    (``CON``, ``NUL``...) gets a leading ``_``; the result is cut to :data:`MAX_COMPONENT_CHARS`. An empty
    result becomes ``fallback`` (e.g. the class id), which must itself be a safe component.
    """
    text = str(name)[: MAX_COMPONENT_CHARS * 2]
    safe = "".join("_" if c in _UNSAFE_IN_PATHS or _is_control(c) else c for c in text)
    safe = safe.lstrip(". ")[:MAX_COMPONENT_CHARS].rstrip(". ")
    if safe.split(".")[0].lower() in _WINDOWS_DEVICES:
        safe = f"_{safe}"
    return safe or fallback


__all__ = ["MAX_COMPONENT_CHARS", "MAX_DISPLAY_CHARS", "display_name", "path_component"]
