"""The sidecar ``.json`` written beside every built artifact, and the compatibility check made before loading one.

A TensorRT engine only runs with the TensorRT release that built it, on the GPU it was built for (unless it
was built with a hardware-compatibility level). The sidecar records what is needed to tell, plus what the
artifact is. It has the artifact's stem and the suffix ``.json`` (:func:`sidecar_path`; artifacts are named by
:func:`yolov6_sdk.artifact.naming.artifact_name`, e.g. ``yolov6n-3f2a9c1d-640-fp16.engine`` gets
``yolov6n-3f2a9c1d-640-fp16.json``) and holds

* what the artifact is: its :class:`~yolov6_sdk.artifact.meta.ArtifactMeta` (model, class names, precision,
  input size and dynamic range, end-to-end NMS kind and semantics, calibration, source hashes, SDK version),
  its fields at the top level;
* TensorRT version, GPU name and compute capability, hardware-compatibility level (empty for ONNX artifacts);
* batch profile (min, opt, max); input/output names, shapes (None = dynamic axis) and numpy dtype names;
* the sha256 of the artifact itself and the creation time (UTC, ISO 8601).

It is read as untrusted input (:func:`read_sidecar`): JSON size, depth and number limits, and every field checked.

Publishing (:func:`publish_artifact`) keeps the pair consistent for any reader and across a crash at any
point: the finished artifact waits under a hidden temporary name; the old artifact is removed first (its old
sidecar now describes nothing), then the new sidecar is written atomically under its final name, and the
artifact is renamed into place last. So an artifact under its final name always has its own sidecar beside it;
a build killed midway leaves the old pair or no artifact at all (plus a temporary that the next build removes).
The sidecar names the artifact's sha256 (``artifact_sha256``); :func:`check_artifact_hash` tells a pair that was
mixed up by other means (a copied or restored file).

:func:`check_compatible` raises :class:`ArtifactError` telling the user to rebuild with ``yolov6-build``
when the running TensorRT or GPU differs from the recorded one.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolov6_sdk import __version__
from yolov6_sdk._optional import require
from yolov6_sdk.artifact.meta import FIELDS, MAX_JSON_CHARS, ArtifactMeta, bounded_json, onnx_meta, read_meta
from yolov6_sdk.artifact.spec import IOSpec, Precision
from yolov6_sdk.errors import ArtifactError
from yolov6_sdk.fileio import publish, write_text

LOGGER = logging.getLogger(__name__)

SIDECAR_FORMAT = "yolov6-sdk-sidecar/1"
KINDS = ("onnx", "engine", "openvino")


@dataclass(frozen=True)
class Sidecar:
    """What an artifact is (:attr:`meta`) and where it was built; see the module docstring for the fields.

    ``batch_profile`` is ``(min, opt, max)`` batch sizes; None for an ONNX file with an unbounded dynamic batch.
    ``compute_capability`` is "major.minor" (e.g. "9.0"); ``hardware_compatibility`` is "", "ampere_plus" or
    "same_compute_capability". The record's fields read through properties (``sidecar.names``, ...).
    """

    artifact: str
    kind: str
    meta: ArtifactMeta
    batch_profile: tuple[int, int, int] | None = None
    tensorrt_version: str = ""
    gpu_name: str = ""
    compute_capability: str = ""
    hardware_compatibility: str = ""
    inputs: tuple[IOSpec, ...] = ()
    outputs: tuple[IOSpec, ...] = ()
    artifact_sha256: str = ""
    created: str = ""

    model = property(lambda self: self.meta.model)
    names = property(lambda self: self.meta.names)
    precision = property(lambda self: self.meta.precision or "fp32")
    imgsz = property(lambda self: self.meta.imgsz or (0, 0))
    end2end = property(lambda self: self.meta.end2end)
    multi_label = property(lambda self: self.meta.multi_label_or(bool(self.meta.end2end)))
    calibration_method = property(lambda self: self.meta.calibration_method)
    calibration_images = property(lambda self: self.meta.calibration_images)
    source_hashes = property(lambda self: self.meta.source_hashes)
    sdk_version = property(lambda self: self.meta.sdk_version)
    extra = property(lambda self: self.meta.extra)

    @classmethod
    def make(cls, artifact: str, kind: str, **fields: Any) -> Sidecar:
        """A sidecar from flat ``fields``: :class:`ArtifactMeta` fields go into :attr:`meta`, the rest are the
        sidecar's own."""
        return cls(artifact, kind, ArtifactMeta()).replaced(**fields)

    def replaced(self, **changes: Any) -> Sidecar:
        """A copy with ``changes``, :class:`ArtifactMeta` fields (``extra``, ``precision``, ...) and the
        sidecar's own alike."""
        record = {key: value for key, value in changes.items() if key in FIELDS}
        own = {key: value for key, value in changes.items() if key not in FIELDS}
        return dataclasses.replace(self, meta=dataclasses.replace(self.meta, **record), **own)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``format`` key first, the record's fields at the top level)."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "meta"}
        own["inputs"] = [dataclasses.asdict(spec) for spec in self.inputs]
        own["outputs"] = [dataclasses.asdict(spec) for spec in self.outputs]
        return {"format": SIDECAR_FORMAT, **self.meta.to_record(), **own}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "sidecar") -> Sidecar:
        """Inverse of :meth:`to_dict`; every value is checked (:func:`~yolov6_sdk.artifact.meta.read_meta` for
        the record, the same limits for the rest).

        Raises:
            ArtifactError: not a sidecar of this format, or a field is missing or malformed.
        """
        if data.get("format") != SIDECAR_FORMAT:
            shown = str(data.get("format"))[:80]
            raise ArtifactError(f"{where}: expected a {SIDECAR_FORMAT!r} sidecar, got format {shown!r}")
        extra = data.get("extra", {})
        lifted = {k: v for k, v in extra.items() if k in FIELDS} if isinstance(extra, dict) else {}  # older sidecars
        record = {**lifted, **{k: data[k] for k in FIELDS if k in data}}
        if isinstance(extra, dict):
            record["extra"] = {k: v for k, v in extra.items() if k not in lifted}
        meta = read_meta(record, where)
        try:
            sidecar = cls(
                artifact=_text(data["artifact"]),
                kind=_text(data["kind"]),
                meta=meta,
                batch_profile=_profile(data.get("batch_profile")),
                **{key: _text(data.get(key, "")) for key in _TEXT_FIELDS},
                inputs=_specs(data.get("inputs", ())),
                outputs=_specs(data.get("outputs", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(
                f"{where}: malformed sidecar ({str(exc)[:200]}); rebuild the artifact with yolov6-build"
            ) from None
        if sidecar.kind not in KINDS:
            raise ArtifactError(f"{where}: sidecar kind must be one of {KINDS}, got {sidecar.kind[:40]!r}")
        if meta.precision is None:
            raise ArtifactError(f"{where}: the sidecar records no precision; rebuild the artifact with yolov6-build")
        return sidecar


_TEXT_FIELDS = (
    "tensorrt_version", "gpu_name", "compute_capability", "hardware_compatibility", "artifact_sha256", "created"
)  # fmt: skip
_MAX_SPECS, _MAX_DIMS, _MAX_DIM = 64, 8, 1 << 31


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 1024:
        raise TypeError(f"expected a string of at most 1024 characters, got {type(value).__name__}")
    return value


def _profile(value: Any) -> tuple[int, int, int] | None:
    if value is None:
        return None
    sizes = tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(sizes) != 3 or not all(type(b) is int and 1 <= b <= 1 << 16 for b in sizes):
        raise ValueError(f"batch_profile must be [min, opt, max] batch sizes, got {str(value)[:80]}")
    return sizes  # type: ignore[return-value]


def _specs(items: Any) -> tuple[IOSpec, ...]:
    if not isinstance(items, (list, tuple)) or len(items) > _MAX_SPECS:
        raise TypeError(f"expected a list of at most {_MAX_SPECS} tensor specs")
    return tuple(_spec(item) for item in items)


def _spec(item: Mapping[str, Any]) -> IOSpec:
    shape = item["shape"]
    if not isinstance(shape, (list, tuple)) or len(shape) > _MAX_DIMS:
        raise TypeError(f"a tensor shape must be a list of at most {_MAX_DIMS} axes")
    dims = tuple(None if d is None or int(d) < 0 else int(d) for d in shape)
    if any(d is not None and d > _MAX_DIM for d in dims):
        raise ValueError(f"a tensor axis is larger than {_MAX_DIM}")
    return IOSpec(name=_text(item["name"]), shape=dims, dtype=_text(item["dtype"]))


def sidecar_path(artifact: str | Path) -> Path:
    """The sidecar of ``artifact``: same folder and stem, suffix ``.json``."""
    return Path(artifact).with_suffix(".json")


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def write_sidecar(sidecar: Sidecar, artifact: str | Path) -> Path:
    """Write ``sidecar`` beside ``artifact`` atomically; returns the ``.json`` path.

    ``created`` is filled with the current UTC time when empty.
    """
    if not sidecar.created:
        sidecar = dataclasses.replace(sidecar, created=utc_now())
    if not sidecar.sdk_version:
        sidecar = sidecar.replaced(sdk_version=__version__)
    return write_text(sidecar_path(artifact), json.dumps(sidecar.to_dict(), indent=2) + "\n")


def publish_artifact(built: str | Path, artifact: str | Path, sidecar: Sidecar) -> Path:
    """Move the finished artifact ``built`` (a temporary in the artifact's folder) to ``artifact`` with
    ``sidecar`` beside it, in the crash-safe order of the module docstring; returns the sidecar's path.

    ``sidecar`` gets the artifact's file name and sha256.
    """
    built, artifact = Path(built), Path(artifact)
    sidecar = dataclasses.replace(sidecar, artifact=artifact.name, artifact_sha256=file_sha256(built))
    artifact.unlink(missing_ok=True)
    path = write_sidecar(sidecar, artifact)
    publish(built, artifact)
    return path


def check_artifact_hash(sidecar: Sidecar, artifact: str | Path) -> None:
    """Refuse an artifact whose bytes are not the ones its sidecar was written for (no-op for an older sidecar
    that records no ``artifact_sha256``).

    Raises:
        ArtifactError: the hashes differ; the message says to rebuild.
    """
    if sidecar.artifact_sha256 and sidecar.artifact_sha256 != file_sha256(artifact):
        raise ArtifactError(
            f"{artifact}: its sidecar {sidecar_path(artifact).name} describes another file (sha256 differs); the "
            "pair was mixed up: rebuild it with yolov6-build"
        )


def read_sidecar(artifact: str | Path) -> Sidecar:
    """Read the sidecar of ``artifact`` (the artifact path, or the ``.json`` itself), as untrusted input: size,
    depth and number limits (:func:`~yolov6_sdk.artifact.meta.bounded_json`) and a check of every field.

    Raises:
        ArtifactError: the sidecar is missing, not JSON, over a limit, or not of this format; naming the file.
    """
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ArtifactError(
            f"{artifact}: its sidecar {path.name} is missing, so where it was built cannot be checked; "
            "rebuild the artifact with yolov6-build (it writes both files)"
        )
    try:
        if path.stat().st_size > MAX_JSON_CHARS:
            raise ArtifactError(f"{path}: {path.stat().st_size} bytes, larger than any SDK sidecar; rebuild it")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable JSON sidecar ({exc}); rebuild with yolov6-build") from exc
    data = bounded_json(text, str(path))
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}; rebuild with yolov6-build")
    return Sidecar.from_dict(data, where=str(path))


def _capability(text: str, where: str) -> tuple[int, int]:
    try:
        major, minor = text.split(".")
        return int(major), int(minor)
    except ValueError as exc:
        raise ArtifactError(f"{where}: compute capability must be 'major.minor', got {text!r}") from exc


def check_compatible(sidecar: Sidecar, runtime_trt_version: str, gpu_name: str, compute_capability: str) -> None:
    """Refuse an engine built by another TensorRT release or for another GPU.

    ONNX artifacts (kind "onnx") always pass. An engine must match the running TensorRT version exactly; its
    GPU must have the same name and compute capability, unless it was built with a hardware-compatibility
    level: "same_compute_capability" needs the same capability only, "ampere_plus" any capability >= 8.0.

    Raises:
        ArtifactError: a mismatch; the message names both sides and says to rebuild with ``yolov6-build``.
    """
    if sidecar.kind != "engine":
        return
    where = sidecar.artifact
    problems = []
    if not sidecar.tensorrt_version:
        problems.append("its sidecar records no TensorRT version")
    elif sidecar.tensorrt_version != runtime_trt_version:
        problems.append(f"built with TensorRT {sidecar.tensorrt_version}, running TensorRT {runtime_trt_version}")
    built_cc, running_cc = sidecar.compute_capability, compute_capability
    level = sidecar.hardware_compatibility
    if level == "ampere_plus":
        if _capability(running_cc, where) < (8, 0):
            problems.append(f"built for Ampere or newer GPUs, running on compute capability {running_cc}")
    elif not built_cc or _capability(built_cc, where) != _capability(running_cc, where):
        problems.append(f"built for compute capability {built_cc or '?'}, running on {running_cc}")
    elif level != "same_compute_capability" and _gpu_key(sidecar.gpu_name) != _gpu_key(gpu_name):
        problems.append(f"built on {sidecar.gpu_name or 'an unrecorded GPU'}, running on {gpu_name}")
    if problems:
        profile = "x".join(str(b) for b in sidecar.batch_profile or ())
        raise ArtifactError(
            f"{where}: {'; '.join(problems)}. TensorRT engines only run where they were built: rebuild it on this "
            f"machine with yolov6-build (model {sidecar.model}, precision {sidecar.precision}, "
            f"imgsz {sidecar.imgsz[0]}x{sidecar.imgsz[1]}, batch profile {profile or '?'})"
        )


def _gpu_key(name: str) -> str:
    return " ".join(name.lower().split())


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def current_gpu(device_index: int = 0) -> tuple[str, str] | None:
    """``(name, "major.minor")`` of CUDA device ``device_index``, or None when no CUDA device is visible.

    Asks torch when it is installed, else cuda-python's runtime bindings; None when neither can tell.
    """
    try:
        torch = require("torch")
    except ImportError:
        torch = None
    if torch is not None:
        if not torch.cuda.is_available():
            return None
        major, minor = torch.cuda.get_device_capability(device_index)
        return torch.cuda.get_device_name(device_index), f"{major}.{minor}"
    try:
        cudart = require("cuda.bindings.runtime")
    except ImportError:
        return None
    err, props = cudart.cudaGetDeviceProperties(device_index)
    if int(err) != 0:
        return None
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


# ----------------------------------------------------------------------------------------------- ONNX artifacts


def onnx_io_specs(proto: Any) -> tuple[tuple[IOSpec, ...], tuple[IOSpec, ...]]:
    """Inputs and outputs of an ``onnx.ModelProto`` graph (initializers excluded); symbolic axes are None."""
    helper = require("onnx.helper")
    initializers = {init.name for init in proto.graph.initializer}

    def spec(value: Any) -> IOSpec:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        return IOSpec(value.name, shape, helper.tensor_dtype_to_np_dtype(tensor.elem_type).name)

    inputs = tuple(spec(v) for v in proto.graph.input if v.name not in initializers)
    return inputs, tuple(spec(v) for v in proto.graph.output)


def onnx_sidecar(
    onnx_path: str | Path,
    precision: Precision | None = None,
    calibration_method: str = "",
    calibration_images: int = 0,
    source_hashes: Mapping[str, str] | None = None,
) -> Sidecar:
    """Sidecar of an ONNX artifact, read from the file itself (its :class:`ArtifactMeta` and graph); TensorRT
    fields empty.

    ``precision`` defaults to the recorded one. The file's own sha256 is added to ``source_hashes`` as "onnx".
    """
    onnx = require("onnx")
    path = Path(onnx_path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX file ({exc})") from exc
    meta = onnx_meta(proto, str(path))
    inputs, outputs = onnx_io_specs(proto)
    batch = inputs[0].shape[0] if inputs and inputs[0].shape else None
    fixed = inputs[0].shape[2:] if inputs and len(inputs[0].shape) == 4 else (None, None)
    imgsz = meta.imgsz or (None if None in fixed else (int(fixed[0]), int(fixed[1])))  # type: ignore[arg-type]
    meta = dataclasses.replace(
        meta,
        imgsz=imgsz,
        precision=precision or meta.precision or "fp32",
        multi_label=meta.multi_label_or(bool(meta.end2end)),
        calibration_method=calibration_method,
        calibration_images=calibration_images,
        source_hashes={**meta.source_hashes, **(source_hashes or {}), "onnx": file_sha256(path)},
        extra={},
    )
    return Sidecar(
        artifact=path.name,
        kind="onnx",
        meta=meta if meta.model else dataclasses.replace(meta, model=path.stem),
        batch_profile=None if batch is None else (batch, batch, batch),
        inputs=inputs,
        outputs=outputs,
    )
