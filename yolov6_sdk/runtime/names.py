"""Class names given by the caller: for artifacts that record none (an engine built by trtexec) or other ones."""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from pathlib import Path

from yolov6_sdk._optional import require
from yolov6_sdk.errors import ConfigError

_YAML_SUFFIXES = (".yaml", ".yml")


def read_names(source: Sequence[str] | str | Path) -> list[str]:
    """Class names (index = class id) from a list, a YOLO ``data.yaml`` (its ``names``: a list or ``{id: name}``),
    a text file with one name per line, or a comma-separated string such as ``"person,car"``.

    Raises:
        ConfigError: a file that cannot be read or holds no names, a ``names`` entry of another form, an empty
            name list.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix.lower() in _YAML_SUFFIXES or path.is_file():
            names = _names_from_file(path)
        else:
            names = [part.strip() for part in str(source).split(",")]
    elif isinstance(source, (list, tuple)):
        names = [str(name) for name in source]
    else:
        raise ConfigError(
            f"names must be a list of class names, a data.yaml, a text file or 'a,b,c', got {reprlib.repr(source)}"
        )
    if not names or any(not name for name in names):
        raise ConfigError(f"class names must be non-empty, got {names!r} from {source!r}")
    return names


def _names_from_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read class names from {path} ({exc}); pass a data.yaml or a text file") from exc
    if path.suffix.lower() not in _YAML_SUFFIXES:
        return [line.strip() for line in text.splitlines() if line.strip()]
    yaml = require("yaml")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}); fix the file or pass the names as a list") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(name) for name in names]
    raise ConfigError(f"{path} has no 'names' list or {{id: name}} map; add one as in a YOLO data.yaml")


def class_names(given: Sequence[str] | str | Path | None, recorded: Sequence[str], where: str) -> list[str]:
    """``given`` names (see :func:`read_names`) checked against the ``recorded`` ones of artifact ``where``, or
    ``recorded`` when none are given.

    Raises:
        ConfigError: as :func:`read_names`, or a count that differs from the artifact's classes.
    """
    if given is None:
        return list(recorded)
    names = read_names(given)
    if recorded and len(names) != len(recorded):
        raise ConfigError(
            f"{len(names)} class names given for {where}, which detects {len(recorded)} classes; pass one name per "
            "class, in class-id order"
        )
    return names


__all__ = ["class_names", "read_names"]
