"""Q/DQ placement rules and graph passes on YOLOv6 ONNX graphs.

* **Head split.** The head's float part (the sigmoid, box decode, DFL projection and any NMS) stays float:
  :func:`split_head` finds the head's last convolutions (``cls_preds`` / ``reg_preds``) and every node downstream
  of them. The body (everything else) is quantised. Calibration runs on :func:`body_model`, the subgraph that
  ends at the predictor outputs, so it needs no plugin op (``EfficientNMS_TRT``) and no decode.
* **Shared scales.** The inputs and the output of a Concat, and the two inputs of a residual Add, get one
  range (the union of their calibrated ranges), so all of them carry the same scale and zero point: TensorRT
  concatenates int8 tensors without re-quantising, as YOLOv6's own ``--graph-opt`` export arranges.
  ONNX Runtime's QDQ quantiser does not do this by itself (it gives every tensor its own calibrated range);
  :func:`scale_groups` + :func:`align_ranges` do it before quantisation, :func:`concat_scale_mismatches`
  checks the result.
  With uint8 activations a Relu in such a group stays a float node (:func:`relus_below_zero`).
* **Predictor outputs.** :func:`strip_output_qdq` removes the Q/DQ pair on a tensor, used to keep the
  predictor convolutions' outputs (class logits, box distances) in float while their inputs and weights are int8.

Node names follow the torch exporter (``/detect/cls_preds.0/Conv``); :func:`module_path` turns one into the
module path users know (``detect.cls_preds.0``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper, utils

from yolov6_sdk.errors import BuildError

_PREDS = re.compile(r"(^|[./])(cls_preds|reg_preds|reg_preds_dist)[./]")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class HeadSplit:
    """Where the quantised body ends.

    Attributes:
        preds: names of the head's predictor Conv nodes (the last convolutions before the decode).
        outputs: their output tensors (class logits [B, nc, h, w] and box regression [B, R, h, w] per level).
        tail: names of every node downstream of ``outputs`` (sigmoid, decode, DFL, NMS): they stay float.
    """

    preds: tuple[str, ...]
    outputs: tuple[str, ...]
    tail: tuple[str, ...]


def module_path(node_name: str) -> str:
    """``/detect/cls_preds.0/Conv`` -> ``detect.cls_preds.0`` (the torch module a node came from)."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1]) if len(parts) > 1 else node_name


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _is_projection(node: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto]) -> bool:
    """The DFL projection: a 1x1 conv with one output channel whose weights are 0, 1, ..., bins - 1."""
    if len(node.input) < 2 or node.input[1] not in inits:
        return False
    weight = numpy_helper.to_array(inits[node.input[1]])
    return weight.shape[0] == 1 and np.array_equal(weight.ravel(), np.arange(weight.size, dtype=weight.dtype))


def _last_convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Convs reached walking back from the graph outputs through non-conv nodes (DFL projections passed)."""
    producers, inits = _producers(model), _initializers(model)
    stack = [out.name for out in model.graph.output]
    seen: set[str] = set()
    found: dict[str, onnx.NodeProto] = {}
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv" and not _is_projection(node, inits):
            found[node.name] = node
            continue
        stack.extend(name for name in node.input if name not in inits)
    return [node for node in model.graph.node if node.name in found]


def downstream(model: onnx.ModelProto, tensors: Iterable[str]) -> list[str]:
    """Names of the nodes that consume ``tensors`` directly or indirectly, in graph order."""
    consumers = _consumers(model)
    reached: set[str] = set()
    stack = list(tensors)
    while stack:
        for node in consumers.get(stack.pop(), []):
            if node.name not in reached:
                reached.add(node.name)
                stack.extend(node.output)
    return [node.name for node in model.graph.node if node.name in reached]


def split_head(model: onnx.ModelProto) -> HeadSplit:
    """Find the head's predictor convs (by module name, else structurally) and the float tail after them.

    Raises:
        BuildError: no predictor convolution found (not a YOLOv6 detection graph).
    """
    preds = [n for n in model.graph.node if n.op_type == "Conv" and _PREDS.search(n.name + "/")]
    if not preds:  # a graph whose node names were rewritten: take the last convs before the outputs
        preds = _last_convs(model)
    if not preds:
        raise BuildError(
            "cannot find the detection head's predictor convolutions (cls_preds / reg_preds) in the ONNX graph; "
            "quantise a YOLOv6 export from yolov6-build or yolov6_sdk.export.onnx.export_onnx"
        )
    outputs = tuple(n.output[0] for n in preds)
    return HeadSplit(tuple(n.name for n in preds), outputs, tuple(downstream(model, outputs)))


def body_model(model: onnx.ModelProto, split: HeadSplit) -> onnx.ModelProto:
    """The subgraph from ``images`` to the predictor outputs (no decode, no NMS), for calibration.

    The batch axis stays as it is in ``model`` (dynamic for the SDK's exports): onnxruntime's
    ``quant_pre_process`` is not used, so its symbolic shape inference, which fails on dynamic-batch graphs
    with an upsample, never runs.
    """
    inputs = [v.name for v in model.graph.input if v.name not in _initializers(model)]
    body = utils.Extractor(model).extract_model(inputs, list(split.outputs))
    body.ClearField("metadata_props")
    return body


def _find(parent: dict[str, str], item: str) -> str:
    while parent[item] != item:
        parent[item] = parent[parent[item]]
        item = parent[item]
    return item


def scale_groups(model: onnx.ModelProto, excluded: Iterable[str] = ()) -> list[tuple[str, ...]]:
    """Tensors that must share one quantisation scale: Concat inputs + output, residual Add inputs.

    Nodes named in ``excluded`` (kept float) are ignored. Groups that share a tensor are merged. Each group is
    sorted; groups of one tensor are left out.
    """
    skip, inits = set(excluded), _initializers(model)
    parent: dict[str, str] = {}
    for node in model.graph.node:
        if node.name in skip or node.op_type not in ("Concat", "Add"):
            continue
        members = [t for t in node.input if t and t not in inits]
        if node.op_type == "Concat":
            members.append(node.output[0])
        elif len(members) != 2:  # an Add with a constant operand is a bias, not a residual
            continue
        for tensor in members:
            parent.setdefault(tensor, tensor)
        root = _find(parent, members[0])
        for tensor in members[1:]:
            parent[_find(parent, tensor)] = root
    groups: dict[str, list[str]] = {}
    for tensor in parent:
        groups.setdefault(_find(parent, tensor), []).append(tensor)
    return sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1)


def align_ranges(
    ranges: Mapping[str, tuple[float, float]], groups: Sequence[Sequence[str]]
) -> dict[str, tuple[float, float]]:
    """A copy of ``ranges`` where every tensor of a group gets the group's union range (min low, max high)."""
    aligned = dict(ranges)
    for group in groups:
        known = [ranges[t] for t in group if t in ranges]
        if not known:
            continue
        union = (min(lo for lo, _ in known), max(hi for _, hi in known))
        for tensor in group:
            if tensor in ranges:
                aligned[tensor] = union
    return aligned


def relus_below_zero(model: onnx.ModelProto, ranges: Mapping[str, tuple[float, float]]) -> list[str]:
    """Relu nodes whose output range, after :func:`align_ranges`, reaches below zero.

    With asymmetric uint8 activations ONNX Runtime's quantiser drops a Relu and lets the [0, max] range of its
    output do the clamping. A Relu output that shares a scale with a tensor holding negative values (a Concat
    fed by the upsample) gets a range below zero, and the ReLU would silently vanish: such Relus stay as float
    nodes between the Q/DQ pairs.
    """
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "Relu" and node.output[0] in ranges and ranges[node.output[0]][0] < 0
    ]


def _qparams(model: onnx.ModelProto, dq: onnx.NodeProto) -> tuple[float, int]:
    inits = _initializers(model)
    scale = float(numpy_helper.to_array(inits[dq.input[1]]).ravel()[0])
    zero = int(numpy_helper.to_array(inits[dq.input[2]]).ravel()[0]) if len(dq.input) > 2 else 0
    return scale, zero


def concat_scale_mismatches(model: onnx.ModelProto) -> list[str]:
    """Concats of a Q/DQ graph whose quantised inputs do not all carry the same (scale, zero point).

    Returns one line per offending Concat (its name and the parameters found); empty when all share.
    """
    producers = _producers(model)
    problems = []
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        params = {
            _qparams(model, producers[t])
            for t in node.input
            if t in producers and producers[t].op_type == "DequantizeLinear"
        }
        if len(params) > 1:
            problems.append(f"{node.name}: {sorted(params)}")
    return problems


def conv_inputs_without_dq(model: onnx.ModelProto, skip: Iterable[str] = ()) -> list[str]:
    """Conv/ConvTranspose nodes (not named in ``skip``) whose activation or weight input is not DequantizeLinear."""
    producers, skip = _producers(model), set(skip)
    missing = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or node.name in skip:
            continue
        if any(t not in producers or producers[t].op_type != "DequantizeLinear" for t in node.input[:2]):
            missing.append(node.name)
    return missing


def qdq_nodes_among(model: onnx.ModelProto, names: Iterable[str]) -> list[str]:
    """Nodes named in ``names`` that consume or produce a quantised tensor (touch a Q/DQ node)."""
    wanted = set(names)
    producers, consumers = _producers(model), _consumers(model)
    touched = []
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        fed = any(t in producers and producers[t].op_type in _QDQ for t in node.input)
        feeds = any(c.op_type in _QDQ for t in node.output for c in consumers.get(t, []))
        if fed or feeds:
            touched.append(node.name)
    return touched


def strip_output_qdq(model: onnx.ModelProto, tensors: Iterable[str]) -> int:
    """Remove the QuantizeLinear -> DequantizeLinear pair that follows each of ``tensors`` (in place).

    The consumers of the DequantizeLinear output read the float tensor instead. Returns how many pairs went.
    """
    consumers = _consumers(model)
    dead: set[int] = set()
    rename: dict[str, str] = {}
    for tensor in tensors:
        for q in consumers.get(tensor, []):
            if q.op_type != "QuantizeLinear":
                continue
            dqs = consumers.get(q.output[0], [])
            if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
                continue
            dead.update(id(node) for node in (q, *dqs))
            rename.update({d.output[0]: tensor for d in dqs})
    if not dead:
        return 0
    kept = [node for node in model.graph.node if id(node) not in dead]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for output in model.graph.output:
        if output.name in rename:
            raise BuildError(f"cannot remove the Q/DQ pair before graph output {output.name!r}")
    del model.graph.node[:]
    model.graph.node.extend(kept)
    _drop_unused_initializers(model)
    return len(rename)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Move every Constant node's tensor into the initializers (same name), so Q/DQ parameters are readable."""
    kept = []
    for node in model.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is None:
            kept.append(node)
            continue
        tensor = numpy_helper.from_array(numpy_helper.to_array(value.t), node.output[0])
        model.graph.initializer.append(tensor)
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _quantize_array(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear of a constant: ``saturate(rint(x / scale) + zero)`` with per-axis parameters."""
    shape = [1] * x.ndim
    if scale.size > 1:
        shape[axis] = -1
    info = np.iinfo(zero.dtype)
    q = np.rint(x / scale.reshape(shape)) + zero.reshape(shape).astype(np.int64)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def fold_weight_quantize(model: onnx.ModelProto, quantize_biases: bool = True) -> None:
    """Store quantised constants as integers (in place), the form ONNX Runtime's quantiser writes.

    A QuantizeLinear of an initializer (a conv weight) becomes an int8 initializer read by its DequantizeLinear.
    With ``quantize_biases``, the float bias of a Conv/ConvTranspose whose input and weight are dequantised
    becomes an int32 initializer with scale ``input scale * weight scale`` (per output channel) behind a new
    DequantizeLinear; the bias must already lie on that grid for the graph's output to stay as it was. Without
    it (the TensorRT target, whose DequantizeLinear takes no int32) biases stay float. Constant nodes become
    initializers.
    """
    _constants_to_initializers(model)
    inits, consumers = _initializers(model), _consumers(model)
    arrays = {name: numpy_helper.to_array(init) for name, init in inits.items()}
    dead: set[int] = set()
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or not all(name in inits for name in q.input[:3]):
            continue
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        folded = _quantize_array(arrays[q.input[0]], arrays[q.input[1]], arrays[q.input[2]], axis)
        name = f"{q.input[0]}_quantized" if f"{q.input[0]}_quantized" not in arrays else f"{q.output[0]}_folded"
        model.graph.initializer.append(numpy_helper.from_array(folded, name))
        arrays[name] = folded
        for dq in consumers.get(q.output[0], []):
            dq.input[0] = name
        dead.add(id(q))
    kept = [node for node in model.graph.node if id(node) not in dead]
    del model.graph.node[:]
    model.graph.node.extend(_quantize_biases(kept, arrays, model) if quantize_biases else kept)
    _drop_unused_initializers(model)


def _quantize_biases(
    nodes: list[onnx.NodeProto], arrays: dict[str, np.ndarray], model: onnx.ModelProto
) -> list[onnx.NodeProto]:
    """``nodes`` with an int32 DequantizeLinear inserted before each quantised conv's float bias."""
    producers = {out: node for node in nodes for out in node.output}
    out = []
    for node in nodes:
        dqs = [producers.get(t) for t in node.input[:2]]
        bias = node.input[2] if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 2 else ""
        if bias in arrays and arrays[bias].dtype == np.float32 and all(d and d.op_type == _QDQ[1] for d in dqs):
            step = (arrays[dqs[0].input[1]].ravel()[0] * arrays[dqs[1].input[1]]).astype(np.float32)
            zero = np.zeros(step.shape, dtype=np.int32)
            stem = f"{node.name}/bias"  # per conv: one float bias may be shared by convs with different grids
            names = [f"{stem}_quantized", f"{stem}_quantized_scale", f"{stem}_quantized_zero_point"]
            values = [_quantize_array(arrays[bias], step, zero, 0), step, zero]
            model.graph.initializer.extend(numpy_helper.from_array(v, n) for v, n in zip(values, names, strict=True))
            out.append(helper.make_node(_QDQ[1], names, [f"{stem}_dequantized"], f"{stem}_DequantizeLinear", axis=0))
            node.input[2] = f"{stem}_dequantized"
        out.append(node)
    return out


def drop_clamping_relus(model: onnx.ModelProto) -> int:
    """Remove each Relu that reads a DequantizeLinear of uint8 with zero point 0 (in place; returns how many).

    Such a tensor is never negative, so the Relu does nothing; ONNX Runtime's quantiser leaves these Relus out
    too, and its consumers then read the dequantised tensor directly. Constant nodes become initializers.
    """
    _constants_to_initializers(model)
    producers, inits = _producers(model), _initializers(model)
    rename: dict[str, str] = {}
    for node in model.graph.node:
        dq = producers.get(node.input[0]) if node.op_type == "Relu" else None
        if dq is None or dq.op_type != _QDQ[1] or len(dq.input) < 3 or dq.input[2] not in inits:
            continue
        zero = numpy_helper.to_array(inits[dq.input[2]])
        if zero.dtype == np.uint8 and not zero.any() and node.output[0] not in {o.name for o in model.graph.output}:
            rename[node.output[0]] = node.input[0]
    kept = [node for node in model.graph.node if not (node.op_type == "Relu" and node.output[0] in rename)]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return len(rename)
