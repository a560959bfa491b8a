"""A Triton Inference Server model repository for one built artifact.

``write_triton_repository("engines/yolov6s-fp16.engine", "triton")`` lays out::

    triton/<model_name>/config.pbtxt
    triton/<model_name>/1/model.plan        (model.onnx for an ONNX artifact)

The config is read from the artifact itself: the ONNX graph's inputs and outputs (names, element types, dims),
or, for a TensorRT engine, the I/O recorded in its sidecar at build time. Platform ``onnxruntime_onnx`` or
``tensorrt_plan``. A dynamic batch axis becomes ``max_batch_size`` (the engine profile's max, or ``max_batch``)
with dims that leave the batch out, plus dynamic batching with preferred sizes; an artifact with a fixed batch
gets ``max_batch_size: 0`` and its full dims. Class names, input size, precision, the end-to-end kind and the
NMS semantics (``multi_label``) are passed as ``parameters`` for clients.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.meta import ArtifactMeta, onnx_meta
from yolov6_sdk.artifact.sidecar import onnx_io_specs, read_sidecar, sidecar_path
from yolov6_sdk.artifact.spec import IOSpec
from yolov6_sdk.errors import ArtifactError, ConfigError
from yolov6_sdk.fileio import atomic_path, check_output_folder, write_text

LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 32  # for an ONNX file whose dynamic batch has no recorded upper bound
QUEUE_DELAY_US = 100

# numpy dtype name -> Triton data type
TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}
_PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx"), ".engine": ("tensorrt_plan", "model.plan")}
_PLATFORMS[".plan"] = _PLATFORMS[".engine"]


def write_triton_repository(
    artifact: str | Path,
    repo_dir: str | Path,
    model_name: str | None = None,
    max_batch: int | None = None,
) -> Path:
    """Write ``<repo_dir>/<model_name>/config.pbtxt`` and ``1/model.onnx|model.plan``; returns the model folder.

    ``model_name`` defaults to the artifact's stem. ``max_batch`` caps ``max_batch_size`` (default: the engine
    profile's max batch, or 32 for an unbounded dynamic ONNX batch).

    Raises:
        ArtifactError: an unknown artifact kind, a missing engine sidecar, or I/O without a common batch axis.
        ConfigError: a bad model name, ``max_batch`` beyond what the artifact serves, or a ``repo_dir`` that
            cannot be written.
    """
    check_repository_folder(repo_dir)
    artifact = Path(artifact)
    if artifact.suffix not in _PLATFORMS or not artifact.is_file():
        raise ArtifactError(f"{artifact}: expected an existing .onnx, .engine or .plan file")
    name = model_name or artifact.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"Triton model name {name!r} must be letters, digits, '_', '.' or '-'")
    platform, filename = _PLATFORMS[artifact.suffix]
    inputs, outputs, profile, params = _describe(artifact)
    max_batch_size = _max_batch_size(artifact, (*inputs, *outputs), profile, max_batch)
    text = render_config(name, platform, max_batch_size, inputs, outputs, params)
    folder = Path(repo_dir) / name
    with atomic_path(folder / "1" / filename) as tmp:
        shutil.copyfile(artifact, tmp)
    write_text(folder / "config.pbtxt", text)
    LOGGER.info("wrote Triton model %s (%s, max_batch_size %d) to %s", name, platform, max_batch_size, folder)
    return folder


def check_repository_folder(repo_dir: str | Path) -> Path:
    """Check, before any work, that a model repository can be written at ``repo_dir`` (created when missing).

    Raises:
        ConfigError: ``repo_dir`` is a file, cannot be created or cannot be written.
    """
    return check_output_folder(repo_dir, "the Triton repository folder (--triton)", ConfigError)


def _describe(
    artifact: Path,
) -> tuple[tuple[IOSpec, ...], tuple[IOSpec, ...], tuple[int, int, int] | None, dict[str, str]]:
    """I/O specs, batch profile (None: unbounded) and client parameters of an artifact."""
    if artifact.suffix == ".onnx":
        onnx = require("onnx")
        proto = onnx.load(str(artifact), load_external_data=False)
        inputs, outputs = onnx_io_specs(proto)
        meta = onnx_meta(proto, str(artifact))
        profile = read_sidecar(artifact).batch_profile if sidecar_path(artifact).is_file() else None
    else:
        car = read_sidecar(artifact)
        if not car.inputs or not car.outputs:
            raise ArtifactError(f"{artifact}: its sidecar records no I/O; rebuild it with yolov6-build")
        inputs, outputs, profile, meta = car.inputs, car.outputs, car.batch_profile, car.meta
    client = ArtifactMeta(
        model=meta.model, names=meta.names, imgsz=meta.imgsz, precision=meta.precision, end2end=meta.end2end,
        multi_label=meta.multi_label_or(bool(meta.end2end)),
    )  # fmt: skip
    return inputs, outputs, profile, client.to_props()


def _max_batch_size(
    artifact: Path, specs: Sequence[IOSpec], profile: tuple[int, int, int] | None, max_batch: int | None
) -> int:
    """0 for a fixed batch; else the largest batch Triton may send."""
    first = {spec.shape[0] if spec.shape else -1 for spec in specs}
    if first != {None}:
        if None in first:
            raise ArtifactError(f"{artifact}: some inputs/outputs have a dynamic first axis and some do not: {specs}")
        if max_batch is not None:
            raise ConfigError(
                f"{artifact} has a fixed batch; max_batch applies to dynamic-batch artifacts only "
                "(export/build with a dynamic batch, e.g. --bs 1 32)"
            )
        return 0
    if profile is not None and profile[0] > 1:
        raise ArtifactError(
            f"{artifact}: its batch profile starts at {profile[0]}, but Triton may send a single image; "
            "rebuild with a profile from 1 (--bs 1 ...)"
        )
    limit = profile[2] if profile is not None else None
    if max_batch is not None and (max_batch < 1 or (limit is not None and max_batch > limit)):
        raise ConfigError(f"max_batch must be in 1..{limit or 'any'} for {artifact.name}, got {max_batch}")
    return max_batch or limit or DEFAULT_MAX_BATCH


def preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Up to three preferred sizes for dynamic batching: the largest powers of two <= max, and max itself."""
    sizes = {1 << k for k in range(1, max_batch_size.bit_length()) if 1 << k <= max_batch_size}
    return sorted(sizes | {max_batch_size})[-3:]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor_block(spec: IOSpec, drop_batch: bool) -> str:
    if spec.dtype not in TRITON_TYPES:
        raise ArtifactError(f"tensor {spec.name} has dtype {spec.dtype}, which Triton has no type for")
    dims = spec.shape[1:] if drop_batch else spec.shape
    dims_text = ", ".join("-1" if d is None else str(d) for d in dims)
    return f"  {{\n    name: {_quote(spec.name)}\n    data_type: {TRITON_TYPES[spec.dtype]}\n    dims: [ {dims_text} ]\n  }}"


def render_config(
    name: str,
    platform: str,
    max_batch_size: int,
    inputs: Sequence[IOSpec],
    outputs: Sequence[IOSpec],
    parameters: dict[str, str] | None = None,
) -> str:
    """The ``config.pbtxt`` text (protobuf text format of Triton's ModelConfig)."""
    batched = max_batch_size > 0
    lines = [f"name: {_quote(name)}", f"platform: {_quote(platform)}", f"max_batch_size: {max_batch_size}"]
    lines.append("input [\n" + ",\n".join(_tensor_block(s, batched) for s in inputs) + "\n]")
    lines.append("output [\n" + ",\n".join(_tensor_block(s, batched) for s in outputs) + "\n]")
    if max_batch_size > 1:
        sizes = ", ".join(str(s) for s in preferred_batch_sizes(max_batch_size))
        lines.append(
            f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
            f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}"
        )
    if platform == "tensorrt_plan":
        lines.append("instance_group [\n  {\n    kind: KIND_GPU\n    count: 1\n  }\n]")
    for key, value in (parameters or {}).items():
        lines.append(f"parameters {{\n  key: {_quote(key)}\n  value: {{ string_value: {_quote(value)} }}\n}}")
    return "\n".join(lines) + "\n"
