"""Artifact file names: a function of what the artifact contains, so two different artifacts never share one.

``<model>-<source>-<size>-<precision>[-bs<batch>][-nms_<mode>][-ml][-dynhw]<suffix>``, e.g.
``yolov6n-3f2a9c1d-160-int8.onnx``, ``yolov6s-random-384x640-fp16-bs1_32-nms_trt-ml.engine``:

* ``source``: the first 8 hex digits of the source's sha256 (the checkpoint, or the ONNX file a build started
  from), or ``random`` for untrained weights (recorded as :data:`RANDOM_SOURCE`);
* ``size``: the input size in pixels, ``H`` when square, else ``HxW``;
* ``batch``: the batch profile (min, opt, max) as ``N`` (all equal), ``min_max`` (opt = max) or
  ``min_opt_max``; left out when it is the default of the artifact's kind (a dynamic batch for ONNX and
  checkpoints, ``(1, 1, 1)`` for TensorRT engines);
* ``nms``: the end-to-end NMS mode inside the graph ("ort" or "trt"); left out for raw outputs;
* ``ml``: multi-label NMS (a box once per class above conf, COCO evaluation) instead of each box's best class
  only. End-to-end graphs differ by it; raw-output artifacts share the graph but record it in their metadata as
  the Detector's default, so their names differ too;
* ``dynhw``: the input's height and width are dynamic (rectangular inference; ``size`` is then the largest
  side the artifact was made for, and the square the Detector uses with ``rect=False``).

:func:`recorded_source` reads back which source an existing artifact was built from, so a build can refuse to
replace the artifact of other weights.
"""

from __future__ import annotations

import re
from pathlib import Path

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.meta import onnx_meta
from yolov6_sdk.artifact.sidecar import read_sidecar, sidecar_path
from yolov6_sdk.artifact.spec import ARTIFACT_SUFFIXES, NMS_MODES, PRECISIONS
from yolov6_sdk.errors import ArtifactError, ConfigError

RANDOM_SOURCE = "random-init"  # the source hash recorded for untrained (randomly initialised) weights
DIGEST_CHARS = 8
# source keys of a sidecar's ``source_hashes``, most specific first: "source" (every build since names carry
# it), "source_onnx" (a build from an ONNX file), "weights_sha256" (the checkpoint an export came from)
SOURCE_KEYS = ("source", "source_onnx", "weights_sha256")
_DEFAULT_BATCH = {"tensorrt-engine": (1, 1, 1)}  # artifact format -> batch profile left out of names (others: dynamic)
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def source_tag(source_sha256: str) -> str:
    """``"random"`` for :data:`RANDOM_SOURCE`, else the first 8 hex digits of a sha256 hex digest."""
    return "random" if source_sha256 == RANDOM_SOURCE else source_sha256[:DIGEST_CHARS]


def size_tag(imgsz: tuple[int, int]) -> str:
    """``(H, W)`` in pixels as ``"H"`` when square, else ``"HxW"``."""
    h, w = imgsz
    return f"{h}" if h == w else f"{h}x{w}"


def batch_tag(profile: tuple[int, int, int]) -> str:
    """A (min, opt, max) batch profile as ``"N"``, ``"min_max"`` (opt = max) or ``"min_opt_max"``."""
    low, opt, high = profile
    if low == opt == high:
        return f"{low}"
    return f"{low}_{high}" if opt == high else f"{low}_{opt}_{high}"


def artifact_name(
    model: str,
    source_sha256: str,
    imgsz: tuple[int, int],
    precision: str,
    suffix: str,
    batch_profile: tuple[int, int, int] | None = None,
    nms: str | None = None,
    multi_label: bool = False,
    dynamic_hw: bool = False,
) -> str:
    """The file name of an artifact; see the module docstring for the scheme.

    Args:
        model: zoo name, e.g. "yolov6n".
        source_sha256: sha256 hex digest of the source file, or :data:`RANDOM_SOURCE`.
        imgsz: input (H, W) in pixels.
        precision: "fp32", "fp16" or "int8".
        suffix: ".onnx", ".engine" or ".pt" (any suffix of :data:`~yolov6_sdk.artifact.spec.ARTIFACT_SUFFIXES`).
        batch_profile: (min, opt, max) batch sizes served; None for a dynamic batch.
        nms: end-to-end NMS mode ("ort", "trt") or None for raw outputs.
        multi_label: the artifact runs (end-to-end) or records (raw) multi-label NMS; adds ``-ml``.
        dynamic_hw: the input's height and width are dynamic (rectangular inference); adds ``-dynhw``.

    Raises:
        ConfigError: a value the scheme cannot encode (unknown precision, suffix or NMS mode, a model name with
            characters other than letters, digits, ".", "_" and "-", a source that is no sha256 hex digest, a
            ``multi_label`` that is not a bool).
    """
    if not _MODEL_NAME.match(model):
        raise ConfigError(
            f"model name must be letters, digits, '.', '_' and '-' (e.g. yolov6n), got {model!r}; pass --model NAME"
        )
    if precision not in PRECISIONS or suffix not in ARTIFACT_SUFFIXES or (nms is not None and nms not in NMS_MODES):
        raise ConfigError(
            f"expected precision in {PRECISIONS}, suffix in {tuple(ARTIFACT_SUFFIXES)}, nms in {NMS_MODES} or None; "
            f"got {precision!r}, {suffix!r}, {nms!r}"
        )
    if not isinstance(multi_label, bool) or not isinstance(dynamic_hw, bool):
        raise ConfigError(f"multi_label and dynamic_hw must be True or False, got {multi_label!r}, {dynamic_hw!r}")
    if source_sha256 != RANDOM_SOURCE and not re.fullmatch(r"[0-9a-f]{64}", source_sha256):
        raise ConfigError(f"source must be a sha256 hex digest or {RANDOM_SOURCE!r}, got {source_sha256!r}")
    parts = [model, source_tag(source_sha256), size_tag(imgsz), precision]
    if batch_profile is not None and tuple(batch_profile) != _DEFAULT_BATCH.get(ARTIFACT_SUFFIXES[suffix]):
        parts.append(f"bs{batch_tag(tuple(batch_profile))}")
    if nms is not None:
        parts.append(f"nms_{nms}")
    if multi_label:
        parts.append("ml")
    if dynamic_hw:
        parts.append("dynhw")
    return "-".join(parts) + suffix


def recorded_source(artifact: str | Path) -> str | None:
    """The source hash an existing artifact records (its sidecar, else an ONNX file's own metadata).

    Returns the first of :data:`SOURCE_KEYS` found (a sha256 hex digest or :data:`RANDOM_SOURCE`), or None when
    the artifact records none (a file from elsewhere, or one that cannot be read).
    """
    path = Path(artifact)
    hashes: dict[str, object] = {}
    if sidecar_path(path).is_file():
        try:
            hashes = dict(read_sidecar(path).source_hashes)
        except ArtifactError:
            hashes = {}
    if not hashes and path.suffix == ".onnx":
        try:
            hashes = dict(onnx_meta(require("onnx").load(str(path), load_external_data=False), str(path)).source_hashes)
        except Exception:  # not readable as ONNX, or a record that breaks the rules: it records nothing usable
            hashes = {}
    return next((str(hashes[key]) for key in SOURCE_KEYS if key in hashes), None)


__all__ = [
    "DIGEST_CHARS",
    "RANDOM_SOURCE",
    "SOURCE_KEYS",
    "artifact_name",
    "batch_tag",
    "recorded_source",
    "size_tag",
    "source_tag",
]
