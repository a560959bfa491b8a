"""OpenVINO IR artifacts: an SDK ONNX (fp32, or int8 Q/DQ) converted to ``.xml`` + ``.bin`` with its metadata.

The conversion keeps the graph's numerics: float weights stay fp32 (no fp16 compression), Q/DQ pairs become
OpenVINO's quantised form, and the ONNX export's metadata is written into the IR's ``rt_info``
(:mod:`yolov6_sdk.artifact.ir_metadata`) with ``precision`` set to what the artifact runs: "fp32", "bf16"
(fp32 weights that OpenVINO computes in bf16 on CPUs that have it) or "int8".

The pair is published so that a reader never sees an ``.xml`` beside a ``.bin`` of another build
(:func:`publish_ir`): the old ``.xml`` goes first, then the new ``.bin`` and sidecar, the new ``.xml`` last.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.ir_metadata import read_ir_metadata, write_ir_metadata
from yolov6_sdk.artifact.sidecar import Sidecar, file_sha256, onnx_sidecar, publish_artifact
from yolov6_sdk.errors import BuildError

IR_PRECISIONS = ("fp32", "bf16", "int8")


def weights_path(xml: str | Path) -> Path:
    """The ``.bin`` that holds the weights of the IR ``xml``."""
    return Path(xml).with_suffix(".bin")


def write_ir(onnx_path: str | Path, xml: str | Path, precision: str, metadata: dict[str, Any] | None = None) -> None:
    """Convert ``onnx_path`` to the IR ``xml`` (and its ``.bin``), recording the ONNX metadata plus
    ``precision`` and ``metadata``.

    Raises:
        BuildError: an unknown precision, or OpenVINO cannot read the ONNX file.
    """
    if precision not in IR_PRECISIONS:
        raise BuildError(f"an OpenVINO IR is built as {', '.join(IR_PRECISIONS)}, not {precision!r}")
    ov = require("openvino")
    try:
        model = ov.Core().read_model(str(onnx_path))
    except RuntimeError as exc:
        raise BuildError(f"OpenVINO cannot read {onnx_path} ({str(exc).strip().splitlines()[0]})") from exc
    where = str(onnx_path)
    recorded = read_ir_metadata(model, where).updated(metadata or {}, where)
    write_ir_metadata(model, dataclasses.replace(recorded, precision=precision))  # type: ignore[arg-type]
    ov.save_model(model, str(xml), compress_to_fp16=False)


def ir_sidecar(source_onnx: str | Path, xml: str | Path, precision: str, **fields: Any) -> Sidecar:
    """The sidecar of the IR ``xml`` built from ``source_onnx``: the ONNX's own sidecar fields (names, size,
    I/O, NMS, hashes) with kind "openvino", ``precision`` and the ``.bin``'s sha256; ``fields`` as for
    :func:`~yolov6_sdk.artifact.sidecar.onnx_sidecar`."""
    base = onnx_sidecar(source_onnx, **fields)
    hashes = {**base.source_hashes, "bin": file_sha256(weights_path(xml))}
    return base.replaced(kind="openvino", precision=precision, source_hashes=hashes)


def check_readable(xml: Path) -> None:
    """Read the IR ``xml`` back (graph and weights) before it is published.

    Raises:
        BuildError: OpenVINO cannot read it (a short or damaged ``.bin``, a broken ``.xml``).
    """
    ov = require("openvino")
    try:
        ov.Core().read_model(str(xml))
    except RuntimeError as exc:
        raise BuildError(f"the IR written for {xml.name} cannot be read back ({str(exc).strip().splitlines()[0]}); "
                         "nothing was published: check the disk and build again") from exc  # fmt: skip


def publish_ir(built_xml: str | Path, xml: str | Path, sidecar: Sidecar) -> Path:
    """Move the finished IR ``built_xml`` (and its ``.bin``; temporaries beside ``xml``) to ``xml`` in the order of
    the module docstring; returns the sidecar's path."""
    built_xml, xml = Path(built_xml), Path(xml)
    check_readable(built_xml)
    xml.unlink(missing_ok=True)
    os.replace(weights_path(built_xml), weights_path(xml))
    return publish_artifact(built_xml, xml, sidecar)
