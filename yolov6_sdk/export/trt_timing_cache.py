"""The TensorRT builder's timing cache: its file name, loading it with TensorRT's verdict checked, saving it.

A timing cache records how fast each tactic ran on one GPU model under one TensorRT release; a build that starts
from it skips re-timing (minutes at 640 px). The file beside the engine is named after the TensorRT version, the
GPU's compute capability and the GPU model (two models of one compute capability time tactics differently). A
cache TensorRT will not take (another release or GPU, or damaged) is logged and replaced by a new one, and a
builder that holds no cache after the build writes no file. Files are written atomically.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from yolov6_sdk.fileio import atomic_path

LOGGER = logging.getLogger("yolov6_sdk.export.tensorrt")


def attach_timing_cache(builder_config: Any, data: bytes) -> bool:
    """Give the builder the timing cache serialised in ``data`` (b"": a new one); True when ``data`` was taken.

    A cache TensorRT cannot read or will not take (another release or GPU, damaged) is logged and replaced by a
    new, empty one, so the build times its tactics afresh instead of failing.
    """
    if data:
        cache = builder_config.create_timing_cache(data)
        if cache is not None and builder_config.set_timing_cache(cache, ignore_mismatch=False):
            return True
        LOGGER.warning("TensorRT refused the timing cache it was given (%d bytes); starting a new one", len(data))
    cache = builder_config.create_timing_cache(b"")
    if cache is None or not builder_config.set_timing_cache(cache, ignore_mismatch=False):
        LOGGER.warning("TensorRT could not start a timing cache; building without one")
    return False


def default_timing_cache(engine_path: Path, trt_version: str, compute_capability: str, gpu_name: str) -> Path:
    """``timing-trt<version>-sm<cc>-<gpu>.cache`` beside the engine: one cache per TensorRT release and GPU model
    (two models of one compute capability time tactics differently)."""
    sm = compute_capability.replace(".", "")
    gpu = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "gpu"
    return engine_path.parent / f"timing-trt{trt_version}-sm{sm}-{gpu}.cache"


def save_timing_cache(builder_config: Any, path: Path) -> bool:
    """Serialise the builder's timing cache (grown by the build) to ``path`` atomically; False (and nothing
    written) when the builder holds none."""
    cache = builder_config.get_timing_cache()
    serialized = None if cache is None else cache.serialize()
    if serialized is None:
        LOGGER.warning("TensorRT returned no timing cache after the build; %s is not written", path)
        return False
    data = bytes(memoryview(serialized))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    LOGGER.info("timing cache saved to %s (%d bytes)", path, len(data))
    return True
