"""Make Triton's Python-backend stub run the same Python build as the standard library it imports.

The stub bundled with pytriton links ``libpython3.X.so.1.0`` and finds it through the system's library path,
so on a machine whose Python is not the system's (pyenv, a source build) the stub runs the system's older
interpreter core with the venv's newer standard library; Python 3.11.7's ``multiprocessing.resource_tracker``
then calls ``RLock._recursion_count``, which the 3.11.2 core lacks, and the model fails to load. Putting the
running interpreter's own library folder first on ``LD_LIBRARY_PATH`` of the server process (inherited by the
stub) makes the stub load the matching ``libpython``. An interpreter built without a shared ``libpython``
gets one clear error instead.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import MutableMapping
from pathlib import Path

from yolov6_sdk.errors import MissingDependencyError


def libpython_folder() -> Path:
    """The folder holding the running interpreter's shared ``libpython3.X.so.1.0``.

    Raises:
        MissingDependencyError: this Python was built without a shared libpython (``--enable-shared``).
    """
    name = f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    folders = [sysconfig.get_config_var(key) for key in ("LIBDIR", "LIBPL")]
    for folder in filter(None, folders):
        if (Path(folder) / name).is_file():
            return Path(folder)
    raise MissingDependencyError(
        f"yolov6-serve needs a Python built with a shared {name} (Triton's Python backend loads it), but "
        f"{sys.executable} has none in {[f for f in folders if f]}; use a Python built with --enable-shared "
        "(Debian's python3, pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared)"
    )


def prepare_stub_environment(environ: MutableMapping[str, str] = os.environ) -> str:
    """Put :func:`libpython_folder` first on ``environ["LD_LIBRARY_PATH"]`` (once); returns the new value."""
    folder = str(libpython_folder())
    current = [part for part in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if part]
    if not current or current[0] != folder:
        environ["LD_LIBRARY_PATH"] = os.pathsep.join([folder, *[part for part in current if part != folder]])
    return environ["LD_LIBRARY_PATH"]
