"""The SDK's exception types.

Every error a user can cause derives from :class:`YOLOv6Error`, so a caller can catch one type.
Messages say what was expected, what arrived, and how to fix it (style rule S8).
"""

from __future__ import annotations


class YOLOv6Error(Exception):
    """Base class of every error the SDK raises on bad input or an unusable environment."""


class ConfigError(YOLOv6Error, KeyError):
    """An unknown model name or an invalid option value."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CheckpointError(YOLOv6Error):
    """A checkpoint that cannot be read, is not a YOLOv6 model, or carries forbidden pickle content."""


class ImageError(YOLOv6Error):
    """An image that is missing, empty, corrupt or of an unsupported kind."""


class ArtifactError(YOLOv6Error):
    """A model artifact (.onnx, .engine, .pt) that is missing, truncated, of unknown kind or built elsewhere."""


class BuildError(YOLOv6Error):
    """An export, quantisation or engine build that cannot be carried out with the given options."""


class CalibrationError(BuildError):
    """A calibration folder that is missing, empty or holds no readable image."""


class OutputError(YOLOv6Error, OSError):
    """A file or folder that results cannot be written to (a file in the way, a folder, no permission, no space)."""


class DatasetError(YOLOv6Error):
    """A dataset folder or annotation file that cannot be used."""


class MissingDependencyError(YOLOv6Error, ImportError):
    """An optional dependency (an extra such as ``[trt]`` or ``[train]``) is not installed."""
