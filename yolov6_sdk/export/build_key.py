"""The build key: the sha256 that says whether an existing artifact is what a plan would make again.

It hashes every field of the :class:`~yolov6_sdk.export.plan.BuildPlan` and of its
:class:`~yolov6_sdk.export.options.BuildOptions` except those :data:`NOT_CONTENT` names, so a new option is in
the key unless it is named there; plus the SDK and ONNX Runtime versions and the calibration images' fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import onnxruntime

from yolov6_sdk import __version__
from yolov6_sdk.export.calibration import CalibrationSet
from yolov6_sdk.export.plan import BuildPlan

NOT_CONTENT = frozenset({
    "options",  # its fields are read one by one below
    "artifact", "output", "name", "force", "backend_reason",  # where the artifact goes and how that was decided
    "weights", "onnx", "qat", "calib", "checkpoint",  # files whose content is keyed: source_sha256, calib images
    "val", "sensitivity", "max_ap_drop",  # reports: a build that reports always runs; max_ap_drop acts with val
    "workspace_gib", "timing_cache",  # how the TensorRT builder searches (memory, cache), not what it makes
})  # fmt: skip
"""Fields of :class:`BuildPlan` and :class:`BuildOptions` that do not decide the artifact's content; every
other field is in the build key, so a new option counts unless it is named here."""


def _key_fields(plan: BuildPlan, calib: CalibrationSet | None) -> dict[str, Any]:
    """The content-deciding fields (what planning decided wins over what was asked), with the ones that decide
    content in some builds only set to None in the others."""
    asked = {option.name: getattr(plan.options, option.name) for option in dataclasses.fields(plan.options)}
    decided = {name.name: getattr(plan, name.name) for name in dataclasses.fields(plan)}
    fields = {name: value for name, value in {**asked, **decided}.items() if name not in NOT_CONTENT}
    engine, calibrated = plan.backend == "tensorrt", calib is not None
    fields.update(
        batch_sizes=fields["batch_sizes"] if engine else None,  # an ONNX artifact keeps its source's batch axis
        hardware_compat=fields["hardware_compat"] if engine else None,
        calib_method=fields["calib_method"] if calibrated else None,
        calib_batch=fields["calib_batch"] if calibrated else None,
        calib_size=len(calib) if calib is not None else None,  # the images used, not the cap asked
        calib_images=calib.fingerprint if calib is not None else None,
        max_error=fields["max_error"] if plan.options.exclude == ("auto",) else None,
        sdk=__version__,
        onnxruntime=onnxruntime.__version__,
    )
    return fields


def build_key(plan: BuildPlan, calib: CalibrationSet | None) -> str:
    """sha256 hex over everything that decides the artifact's content (every field not in :data:`NOT_CONTENT`)."""
    return hashlib.sha256(json.dumps(_key_fields(plan, calib), sort_keys=True, default=str).encode()).hexdigest()


__all__ = ["NOT_CONTENT", "build_key"]
