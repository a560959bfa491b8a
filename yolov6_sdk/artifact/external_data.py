"""ONNX external data: tensors a model stores outside its ``.onnx`` file, checked to stay inside the model's folder.

An ONNX file may keep its weights in other files, named by a relative ``location`` (plus an ``offset`` and a
``length``) in each tensor. The location comes from the file, so it is untrusted: ``../../etc/passwd`` or an
absolute path would read a file the model does not own, and a missing or short file gives a model that cannot
load. :func:`check_external_data` refuses such a model with one :class:`~yolov6_sdk.errors.ArtifactError` naming
the model, the location and the fix, without reading any weight; :func:`read_model_proto` parses a file and runs
that check, the one test an ONNX artifact passes before it is published; :func:`copy_self_contained` copies a model
with its external data read into the one file (what a build publishes from such a source).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

from yolov6_sdk.errors import ArtifactError, BuildError


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph`` and its subgraphs: initializers, sparse initializers, attribute tensors."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def external_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The tensors of ``proto`` whose data lives in another file."""
    return [tensor for tensor in _graph_tensors(proto.graph) if uses_external_data(tensor)]


def _refuse(model: Path, tensor: onnx.TensorProto, location: str, problem: str) -> ArtifactError:
    return ArtifactError(
        f"{model}: tensor {tensor.name!r} keeps its data in {location!r}, which {problem}; external data must be "
        f"files inside the model's folder ({model.parent}): export the model again with its weights inside the "
        "ONNX file (onnx.save without save_as_external_data), or put the data file beside it"
    )


def check_external_data(proto: onnx.ModelProto, model: str | Path) -> list[Path]:
    """The files that ``proto`` (read from ``model``) keeps its external data in, each checked to be a regular
    file inside ``model``'s folder (links resolved) that holds every byte range the tensors name.

    Raises:
        ArtifactError: a location that is absolute, leaves the folder, is missing, is not a regular file, or is
            shorter than the tensor's ``offset + length``; naming the model, the tensor and the location.
    """
    model = Path(model)
    folder = Path(os.path.realpath(model.parent))
    files: dict[Path, int] = {}
    for tensor in external_tensors(proto):
        info = ExternalDataInfo(tensor)
        location = str(info.location or "")
        if not location or Path(location).is_absolute() or Path(location).drive:
            raise _refuse(model, tensor, location, "is not a path relative to the model")
        target = Path(os.path.realpath(folder / location))
        if folder not in target.parents:
            raise _refuse(model, tensor, location, "lies outside the model's folder")
        if target not in files:
            if not target.is_file():
                raise _refuse(model, tensor, location, "is missing or not a regular file")
            files[target] = target.stat().st_size
        end = int(info.offset or 0) + int(info.length or 0)
        if int(info.offset or 0) < 0 or end > files[target]:
            raise _refuse(model, tensor, location, f"holds {files[target]} bytes, fewer than the {end} it needs")
    return sorted(files)


def copy_self_contained(source: str | Path, dest: str | Path) -> Path:
    """Copy the ONNX file ``source`` to ``dest`` with all its weights inside: external data (checked by
    :func:`check_external_data` first) is read in and saved into the one file. Returns ``dest``.

    Raises:
        ArtifactError: as :func:`read_model_proto`. BuildError: the weights do not fit one ONNX file (protobuf's
            2 GB limit).
    """
    source, dest = Path(source), Path(dest)
    proto = read_model_proto(source)
    if not external_tensors(proto):
        shutil.copyfile(source, dest)
        return dest
    load_external_data_for_model(proto, str(source.parent))
    try:
        onnx.save(proto, str(dest))
    except ValueError as exc:  # protobuf refuses a message over 2 GB
        raise BuildError(
            f"{source}: its external weights do not fit one ONNX file ({exc}); build a TensorRT engine or an "
            "OpenVINO IR from it instead (--backend tensorrt / openvino)"
        ) from None
    return dest


def read_model_proto(path: str | Path) -> onnx.ModelProto:
    """Parse the ONNX file ``path`` (weights kept outside it are not loaded) and check its external data.

    Raises:
        ArtifactError: the file is not ONNX, or its external data fails :func:`check_external_data`.
    """
    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, OSError, ...
        raise ArtifactError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    check_external_data(proto, path)
    return proto


__all__ = ["check_external_data", "copy_self_contained", "external_tensors", "read_model_proto"]
