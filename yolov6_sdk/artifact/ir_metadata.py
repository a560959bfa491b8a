"""The SDK's metadata in an OpenVINO model (``rt_info``), written and read in one place.

An SDK-built IR keeps the same keys and JSON-encoded values as an ONNX export's ``metadata_props`` (class
names, imgsz, strides, precision, NMS semantics, source hashes, ...) in the ``rt_info`` section
:data:`METADATA_SECTION`. OpenVINO's ONNX reader keeps an ONNX file's ``metadata_props`` in the section
``framework``, so the reader falls back to it: an ``.onnx`` export and the IR built from it read the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from yolov6_sdk.artifact.sidecar import decode_metadata

METADATA_SECTION = "yolov6_sdk"
ONNX_METADATA_SECTION = "framework"  # where OpenVINO's ONNX reader keeps metadata_props


def write_ir_metadata(model: Any, metadata: Mapping[str, Any]) -> None:
    """Record ``metadata`` in ``model`` (an ``openvino.Model``), each value JSON-encoded as in ONNX exports
    (strings kept as they are)."""
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value)
        model.set_rt_info(text, [METADATA_SECTION, str(key)])


def read_ir_metadata(model: Any) -> dict[str, Any]:
    """The SDK metadata an ``openvino.Model`` carries, decoded as ONNX metadata is (empty when none)."""
    info = model.get_rt_info()
    for section in (METADATA_SECTION, ONNX_METADATA_SECTION):
        if section in info.keys():  # noqa: SIM118  (an RTMap, not a dict)
            values = info[section]
            items = values.items() if isinstance(values, dict) else values.astype(dict).items()
            return decode_metadata({str(key): value.astype(str) for key, value in items})
    return {}
