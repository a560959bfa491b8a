"""The machine a figure was measured on: CPU model, GPU, the library versions that matter and the load."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from yolov6_sdk import __version__
from yolov6_sdk._optional import available, require


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# /proc/cpuinfo flag -> the name figures are reported under
_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_tile": "AMX",
}


def cpu_features() -> tuple[str, ...]:
    """The instruction-set features that decide int8 and bf16 speed (AVX2, AVX-512, VNNI, BF16, AMX) this CPU
    has, from the flags of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return tuple(name for flag, name in _FEATURES.items() if flag in flags)


def cpu_identity() -> str:
    """One line naming this CPU for recorded measurements: model, features and logical cores."""
    return f"{cpu_model()} [{' '.join(cpu_features()) or 'no AVX2'}] x{os.cpu_count()}"


def machine_info() -> dict[str, str]:
    """CPU, GPU, the versions that matter for the figures, and the machine's load when the run started."""
    info = {"cpu": f"{cpu_model()} ({os.cpu_count()} logical cores)", "cpu features": " ".join(cpu_features())}
    info["gpu"] = "none"
    if available("torch"):
        torch = require("torch")
        info["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads)"
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    for module in ("onnxruntime", "openvino", "tensorrt"):
        if available(module):
            info[module] = str(getattr(require(module), "__version__", "?"))
    info.update(numpy=np.__version__, python=platform.python_version(), os=platform.platform(), sdk=__version__)
    if hasattr(os, "getloadavg"):
        info["load average at start"] = " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"
    return info


__all__ = ["cpu_features", "cpu_identity", "cpu_model", "machine_info"]
