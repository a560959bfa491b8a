"""The sidecar ``.json`` written beside every built artifact, and the compatibility check made before loading one.

A TensorRT engine only runs with the TensorRT release that built it, on the GPU it was built for (unless it
was built with a hardware-compatibility level). The sidecar records what is needed to tell, plus what the
artifact is. It has the artifact's stem and the suffix ``.json`` (:func:`sidecar_path`; artifacts are named by
:func:`yolov6_sdk.artifact.naming.artifact_name`, e.g. ``yolov6n-3f2a9c1d-640-fp16.engine`` gets
``yolov6n-3f2a9c1d-640-fp16.json``) and holds

* TensorRT version, GPU name and compute capability, hardware-compatibility level (empty for ONNX artifacts);
* model, class names, precision, input size (h, w), batch profile (min, opt, max), end-to-end NMS kind and
  NMS semantics (``multi_label``, see :func:`recorded_multi_label`);
* calibration method and image count (INT8);
* input/output names, shapes (None = dynamic axis) and numpy dtype names;
* sha256 of the sources (ONNX file, checkpoint) and of the artifact itself, SDK version, creation time (UTC,
  ISO 8601).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from yolov6_sdk import __version__
from yolov6_sdk._optional import require
from yolov6_sdk.artifact.spec import IOSpec, NmsMode, Precision
from yolov6_sdk.errors import ArtifactError
from yolov6_sdk.fileio import publish, write_text

LOGGER = logging.getLogger(__name__)

SIDECAR_FORMAT = "yolov6-sdk-sidecar/1"
KINDS = ("onnx", "engine", "openvino")


@dataclass(frozen=True)
class Sidecar:
    """What an artifact is and where it was built; see the module docstring for the fields' meaning.

    ``batch_profile`` is ``(min, opt, max)`` batch sizes; None for an ONNX file with an unbounded dynamic batch.
    ``compute_capability`` is "major.minor" (e.g. "9.0"); ``hardware_compatibility`` is "", "ampere_plus" or
    "same_compute_capability". ``multi_label``: the artifact's NMS semantics (:func:`recorded_multi_label`).
    """

    artifact: str
    kind: str
    model: str
    precision: Precision
    imgsz: tuple[int, int]
    batch_profile: tuple[int, int, int] | None
    end2end: NmsMode | Literal[""] = ""
    multi_label: bool = False
    names: tuple[str, ...] = ()
    calibration_method: str = ""
    calibration_images: int = 0
    tensorrt_version: str = ""
    gpu_name: str = ""
    compute_capability: str = ""
    hardware_compatibility: str = ""
    inputs: tuple[IOSpec, ...] = ()
    outputs: tuple[IOSpec, ...] = ()
    source_hashes: dict[str, str] = field(default_factory=dict)
    artifact_sha256: str = ""
    sdk_version: str = __version__
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``format`` key first)."""
        return {"format": SIDECAR_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "sidecar") -> Sidecar:
        """Inverse of :meth:`to_dict`.

        Raises:
            ArtifactError: not a sidecar of this format, or a required field is missing or malformed.
        """
        if data.get("format") != SIDECAR_FORMAT:
            raise ArtifactError(f"{where}: expected a {SIDECAR_FORMAT!r} sidecar, got format {data.get('format')!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["imgsz"] = (int(values["imgsz"][0]), int(values["imgsz"][1]))
            profile = values.get("batch_profile")
            values["batch_profile"] = None if profile is None else tuple(int(b) for b in profile)
            values["names"] = tuple(str(n) for n in values.get("names", ()))
            values["multi_label"] = recorded_multi_label(values, bool(values.get("end2end")), where)
            for key in ("inputs", "outputs"):
                values[key] = tuple(_spec(item) for item in values.get(key, ()))
            sidecar = cls(**values)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ArtifactError(
                f"{where}: malformed sidecar ({exc!r}); rebuild the artifact with yolov6-build"
            ) from exc
        if sidecar.kind not in KINDS:
            raise ArtifactError(f"{where}: sidecar kind must be one of {KINDS}, got {sidecar.kind!r}")
        return sidecar


def _spec(item: Mapping[str, Any]) -> IOSpec:
    shape = tuple(None if d is None or int(d) < 0 else int(d) for d in item["shape"])
    return IOSpec(name=str(item["name"]), shape=shape, dtype=str(item["dtype"]))


def recorded_multi_label(meta: Mapping[str, Any], end2end: bool, where: str) -> bool:
    """The NMS semantics ``meta`` (ONNX metadata, sidecar or checkpoint meta) records under ``multi_label``.

    False: one label per box (each box keeps only its best class score; detection). True: a box may come out
    once per class scoring above conf (COCO evaluation). An artifact from before the field reads as the old
    behaviour of its kind: end-to-end (NMS in the graph ran over every class) True, raw False.

    Raises:
        ArtifactError: the recorded value is not a bool.
    """
    value = meta.get("multi_label")
    if value is None:
        return end2end
    if not isinstance(value, bool):
        raise ArtifactError(f"{where}: multi_label must be true or false, got {value!r}; re-export the artifact")
    return value


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
    """Read the sidecar of ``artifact`` (the artifact path, or the ``.json`` itself).

    Raises:
        ArtifactError: the sidecar is missing, not JSON, or not of this format.
    """
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ArtifactError(
            f"{artifact}: its sidecar {path.name} is missing, so where it was built cannot be checked; "
            "rebuild the artifact with yolov6-build (it writes both files)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable JSON sidecar ({exc}); rebuild with yolov6-build") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}")
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
    """Sidecar of an ONNX artifact, read from the file itself (metadata_props and graph); TensorRT fields empty.

    ``precision`` defaults to the ``precision`` recorded in the ONNX metadata. The file's own sha256 is added
    to ``source_hashes`` as "onnx".
    """
    onnx = require("onnx")
    path = Path(onnx_path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX file ({exc})") from exc
    meta = onnx_metadata(proto)
    inputs, outputs = onnx_io_specs(proto)
    batch = inputs[0].shape[0] if inputs and inputs[0].shape else None
    imgsz = meta.get("imgsz") or ([inputs[0].shape[2], inputs[0].shape[3]] if inputs else [0, 0])
    hashes = {k: str(v) for k, v in meta.items() if k.endswith("sha256")}
    hashes.update(source_hashes or {}, onnx=file_sha256(path))
    end2end = str(meta.get("end2end", ""))
    return Sidecar(
        artifact=path.name,
        kind="onnx",
        model=str(meta.get("model", path.stem)),
        precision=precision or str(meta.get("precision", "fp32")),
        imgsz=(int(imgsz[0] or 0), int(imgsz[1] or 0)),
        batch_profile=None if batch is None else (batch, batch, batch),
        end2end=end2end,
        multi_label=recorded_multi_label(meta, bool(end2end), str(path)),
        names=tuple(str(n) for n in _as_list(meta.get("names"))),
        calibration_method=calibration_method,
        calibration_images=calibration_images,
        inputs=inputs,
        outputs=outputs,
        source_hashes=hashes,
    )


def decode_metadata(pairs: Mapping[str, str]) -> dict[str, Any]:
    """JSON-decode metadata values as the exporter encodes them (other strings kept as they are)."""
    meta: dict[str, Any] = {}
    for key, value in pairs.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta


def onnx_metadata(proto: Any) -> dict[str, Any]:
    """``metadata_props`` of an ``onnx.ModelProto``, decoded by :func:`decode_metadata`."""
    return decode_metadata({prop.key: prop.value for prop in proto.metadata_props})


def _as_list(value: Any) -> Sequence[Any]:
    if isinstance(value, Mapping):  # {"0": "person", ...}
        return [value[k] for k in sorted(value, key=int)]
    return list(value) if isinstance(value, (list, tuple)) else []
