"""The SDK's metadata in an OpenVINO model (``rt_info``): the IR writer and reader of
:class:`~yolov6_sdk.artifact.meta.ArtifactMeta`.

An SDK-built IR keeps the same keys and JSON-encoded values as an ONNX export's ``metadata_props`` in the
``rt_info`` section :data:`METADATA_SECTION`. OpenVINO's ONNX reader keeps an ONNX file's ``metadata_props`` in
the section ``framework``, so the reader falls back to it: an ``.onnx`` export and the IR built from it read the
same.
"""

from __future__ import annotations

from typing import Any

from yolov6_sdk.artifact.meta import ArtifactMeta, decode_props, read_meta

METADATA_SECTION = "yolov6_sdk"
ONNX_METADATA_SECTION = "framework"  # where OpenVINO's ONNX reader keeps metadata_props


def write_ir_metadata(model: Any, meta: ArtifactMeta) -> None:
    """Record ``meta`` in ``model`` (an ``openvino.Model``), encoded as in ONNX exports."""
    for key, value in meta.to_props().items():
        model.set_rt_info(value, [METADATA_SECTION, key])


def read_ir_metadata(model: Any, where: str) -> ArtifactMeta:
    """The :class:`ArtifactMeta` an ``openvino.Model`` read from the file ``where`` carries (empty when none).

    Raises:
        ArtifactError: a recorded value that breaks the record's rules (see :func:`read_meta`).
    """
    info = model.get_rt_info()
    for section in (METADATA_SECTION, ONNX_METADATA_SECTION):
        if section in info.keys():  # noqa: SIM118  (an RTMap, not a dict)
            values = info[section]
            items = values.items() if isinstance(values, dict) else values.astype(dict).items()
            return read_meta(decode_props({str(key): value.astype(str) for key, value in items}, where), where)
    return ArtifactMeta()
