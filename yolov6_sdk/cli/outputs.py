"""Every command checks where it will write before it does any work.

``check_outputs(folders={"-o": "runs/x"}, files={"--json": "m.json"})`` refuses, with one
:class:`~yolov6_sdk.errors.ConfigError` naming the option, a folder that is a file (or lies under one), that
cannot be created or is not writable, and a file path that is a folder or whose folder cannot be written
(the checks of :func:`yolov6_sdk.fileio.check_output_folder` / :func:`~yolov6_sdk.fileio.check_output_file`;
nothing is left behind by them). ``None`` values (an option not given) are skipped.

:func:`numbered_run_folder` gives the next free ``exp``, ``exp2``, ``exp3``... under a parent folder, so a run
never writes over the last one unless its folder is named explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.fileio import check_output_file, check_output_folder

PathLike = str | Path
_SUFFIXES = {"--csv": ".csv", "--md": ".md"}  # the file kind an option writes, for the example in a message


def check_outputs(
    folders: Mapping[str, PathLike | None] | None = None, files: Mapping[str, PathLike | None] | None = None
) -> None:
    """Refuse an output location that cannot be written (see the module docstring), option by option.

    Raises:
        ConfigError: the first location that cannot be written, naming its option and the fix.
    """
    for option, folder in (folders or {}).items():
        if folder is not None:
            check_output_folder(folder, option, ConfigError)
    for option, path in (files or {}).items():
        if path is None:
            continue
        if str(path).endswith(("/", "\\")) or Path(path).is_dir():
            example = Path(path) / f"out{_SUFFIXES.get(option, '.json')}"
            raise ConfigError(f"{option} {str(path)!r} is a folder; pass a file path such as {str(example)!r}")
        check_output_file(path, option, ConfigError)


def numbered_run_folder(parent: PathLike, name: str = "exp") -> Path:
    """``<parent>/<name>`` when it does not exist, else ``<parent>/<name>N`` with the smallest free N >= 2."""
    parent = Path(parent)
    if not (parent / name).exists():
        return parent / name
    pattern = re.compile(rf"{re.escape(name)}(\d+)")
    taken = [int(m.group(1)) for p in parent.iterdir() if (m := pattern.fullmatch(p.name))] if parent.is_dir() else []
    return parent / f"{name}{max([1, *taken]) + 1}"


__all__ = ["check_outputs", "numbered_run_folder"]
