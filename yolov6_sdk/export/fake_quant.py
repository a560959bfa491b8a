"""Fake quantisation of a fused YOLOv6 with the placement of a post-training Q/DQ model, and its Q/DQ export.

A :class:`QuantPlan` is read from a Q/DQ ONNX that :func:`~yolov6_sdk.export.ort_quant.quantize_model` wrote for
the same fused model (:func:`plan_from_qdq`), so quantisation-aware training quantises exactly the tensors PTQ
quantises, with PTQ's calibrated scales as the starting point: the model input, every activation tensor that
carries a QuantizeLinear (conv, ReLU, max-pool, transposed-conv and SiLU outputs, the Sigmoid inside a SiLU for
the ``onnxruntime-cpu`` target), and the weights of every convolution whose weight is dequantised.
Concat and residual-Add tensors share one scale in PTQ; the activation scales stay fixed during training, so
they still share it, and a Concat of tensors on one grid is on that grid already (no quantiser of its own).

torch's own fake-quant ops do the work (``torch.fake_quantize_per_tensor_affine`` for activations with the
target's type, uint8 asymmetric for ``onnxruntime-cpu`` and int8 symmetric for ``tensorrt``;
``torch.fake_quantize_per_channel_affine`` for int8 symmetric per-channel weights, scale ``max|w| / 127`` per
output channel as ONNX Runtime computes it; biases rounded to the int32 grid of ``input scale * weight scale``).
Quantisers are registered as submodules under ``qat_quantizers`` with non-persistent buffers, so the model's
``state_dict`` stays the fused model's and a checkpoint keeps the plan in its metadata (:meth:`QuantPlan.to_meta`).

:func:`export_qat_onnx` traces the fake-quant model with the classic exporter (opset 13, per-channel axis), which
writes each fake-quant op as a QuantizeLinear/DequantizeLinear pair, then stores weights as int8 and biases as
int32 initializers behind their DequantizeLinear (:func:`yolov6_sdk.export.qdq.fold_weight_quantize`; float for
the ``tensorrt`` target, whose parser takes no int32 DequantizeLinear, as its PTQ model has them) and drops
the ReLUs that a uint8 zero-point-0 tensor makes idle (:func:`~yolov6_sdk.export.qdq.drop_clamping_relus`),
the form PTQ writes.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from yolov6_sdk.errors import BuildError, CheckpointError
from yolov6_sdk.export import qdq
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.fileio import atomic_path

if TYPE_CHECKING:
    from yolov6_sdk.weights import LoadedModel

PLAN_FORMAT = "yolov6-sdk-qat/1"
QAT_META_KEY = "qat"
"""Checkpoint ``meta`` key of a QAT model's :meth:`QuantPlan.to_meta`."""
INPUT_SITE = "images"
SIGMOID_SUFFIX = ":sigmoid"
INPUT_SUFFIX = ":input"
_OUTPUT_MODULES = {"Conv": nn.Conv2d, "ConvTranspose": nn.ConvTranspose2d, "Relu": nn.ReLU, "MaxPool": nn.MaxPool2d}
_SILU_OPS = ("Mul", "Sigmoid")
BIAS_INT32_LIMIT = 2**30  # |quantised bias| stays below this (int32 with a margin for float rounding)
_CALL_SUFFIX = re.compile(r"^(.+)_(\d+)$")


@dataclass(frozen=True)
class QuantPlan:
    """Where a fused model is fake-quantised, and with which activation scales.

    Attributes:
        target: "tensorrt" (int8 symmetric activations) or "onnxruntime-cpu" (uint8 asymmetric).
        activations: site -> (scale, zero point). A site is :data:`INPUT_SITE` (the model input), a module path
            (the module's output), a module path + :data:`INPUT_SUFFIX` (its input: a Concat output) or a SiLU
            module path + :data:`SIGMOID_SUFFIX` (the Sigmoid inside it).
        weights: conv module path -> (weight channel axis, input scale or None when the bias stays float).
    """

    target: str
    activations: Mapping[str, tuple[float, int]]
    weights: Mapping[str, tuple[int, float | None]]

    @property
    def signed(self) -> bool:
        return self.target == "tensorrt"

    @property
    def float_bias(self) -> bool:
        """Biases stay float in the export (``ort_quant.TARGETS[target].float_bias``: TensorRT's rule)."""
        return self.target == "tensorrt"

    def to_meta(self) -> dict[str, Any]:
        """Plain values for checkpoint metadata."""
        return {
            "format": PLAN_FORMAT,
            "target": self.target,
            "activations": {k: [float(s), int(z)] for k, (s, z) in sorted(self.activations.items())},
            "weights": {k: [int(a), None if s is None else float(s)] for k, (a, s) in sorted(self.weights.items())},
        }

    @classmethod
    def from_meta(cls, meta: Any, source: str) -> QuantPlan:
        """Inverse of :meth:`to_meta`; ``source`` names the file in the error.

        Raises:
            CheckpointError: not a plan of this format.
        """
        try:
            if meta["format"] != PLAN_FORMAT or meta["target"] not in ("tensorrt", "onnxruntime-cpu"):
                raise ValueError(f"format {meta['format']!r}, target {meta['target']!r}")
            acts = {str(k): (float(s), int(z)) for k, (s, z) in meta["activations"].items()}
            weights = {str(k): (int(a), None if s is None else float(s)) for k, (a, s) in meta["weights"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source}: the quantisation plan in its metadata is unreadable ({exc}); train it again with "
                "yolov6-train --qat"
            ) from exc
        return cls(str(meta["target"]), acts, weights)


# --------------------------------------------------------------------------------------------- quantisers


class ActivationFakeQuant(nn.Module):
    """Per-tensor fake quantisation ``[*] -> [*]`` with a fixed scale and zero point (int8 or uint8 grid)."""

    def __init__(self, scale: float, zero_point: int, signed: bool) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        self.register_buffer("zero_point", torch.tensor(zero_point, dtype=torch.int32), persistent=False)
        self.quant_min, self.quant_max = (-128, 127) if signed else (0, 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:  # fp16 activations under CUDA autocast: quantise in float32
            return self(x.float()).to(x.dtype)
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.quant_min, self.quant_max)


class _OutputQuant(nn.Module):
    """Forward hook: fake-quantise a module's output."""

    def __init__(self, quant: ActivationFakeQuant) -> None:
        super().__init__()
        self.quant = quant

    def forward(self, module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        return self.quant(output)


class _InputQuant(nn.Module):
    """Forward pre-hook: fake-quantise a module's (first) input."""

    def __init__(self, quant: ActivationFakeQuant) -> None:
        super().__init__()
        self.quant = quant

    def forward(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (self.quant(inputs[0]), *inputs[1:])


class QuantSiLU(nn.SiLU):
    """``x * q(sigmoid(x))``: a SiLU whose inner Sigmoid output is fake-quantised (ONNX Runtime's QLinearSigmoid)."""

    def __init__(self, sigmoid_quant: ActivationFakeQuant) -> None:
        super().__init__()
        self.sigmoid_quant = sigmoid_quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid_quant(torch.sigmoid(x))


def fake_quant_weight(
    weight: torch.Tensor, axis: int, min_scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel symmetric int8 fake quantisation of a conv weight along ``axis`` (output channels).

    Returns the fake-quantised weight (same shape; gradients pass straight through inside the range) and the
    per-channel scales ``[C_out]``: ``max|w| / 127`` (1 for an all-zero channel), raised to ``min_scale`` where
    that is larger.
    """
    dims = [d for d in range(weight.dim()) if d != axis]
    amax = weight.detach().abs().amax(dim=dims)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    if min_scale is not None:
        scale = torch.maximum(scale, min_scale)
    zero = torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, axis, -128, 127), scale


def _bias_on_grid(bias: torch.Tensor | None, input_scale: float | None, weight_scale: torch.Tensor) -> torch.Tensor:
    """``bias`` rounded to the int32 grid ``input_scale * weight_scale`` (straight-through gradient)."""
    if bias is None or input_scale is None:
        return bias
    step = input_scale * weight_scale
    return bias + (torch.round(bias / step) * step - bias).detach()


class _QuantConv:
    """Fake-quantised weights (per channel along ``weight_axis``) and bias for a conv class it is mixed into.

    The int32 bias grid is ``input scale * weight scale``; where a channel's weights are so small (an untrained
    predictor keeps weights near 1e-9 and bias 1.0) that the bias would overflow int32 on that grid, the weight
    scale is raised until it fits, as ONNX Runtime's quantiser does.

    ``frozen`` holds constant (weight scales, on-grid bias) for export, so the traced graph quantises an
    initializer with constant scales instead of computing them.
    """

    weight_axis = 0
    input_scale: float | None = None
    frozen: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def quantised_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fake-quantised weight and the bias on its int32 grid."""
        if self.frozen is None:
            weight, scale = fake_quant_weight(self.weight, self.weight_axis, self._bias_scale_floor())
            return weight, _bias_on_grid(self.bias, self.input_scale, scale)
        scale, bias = self.frozen
        zero = torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)
        return torch.fake_quantize_per_channel_affine(self.weight, scale, zero, self.weight_axis, -128, 127), bias

    def _bias_scale_floor(self) -> torch.Tensor | None:
        """Per-channel weight scale below which the bias overflows the int32 grid (None: bias stays float)."""
        if self.bias is None or self.input_scale is None:
            return None
        return self.bias.detach().abs() / (self.input_scale * BIAS_INT32_LIMIT)

    def freeze(self) -> None:
        """Fix the current weight scales and on-grid bias as constants (before export)."""
        with torch.no_grad():
            _, scale = fake_quant_weight(self.weight, self.weight_axis, self._bias_scale_floor())
            bias = _bias_on_grid(self.bias, self.input_scale, scale)
        self.frozen = (scale, None if bias is None else bias.detach().clone())


class QuantConv2d(_QuantConv, nn.Conv2d):
    """A Conv2d with fake-quantised weights (axis 0) and bias; same parameters and state_dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *self.quantised_parameters())


class QuantConvTranspose2d(_QuantConv, nn.ConvTranspose2d):
    """A ConvTranspose2d with fake-quantised weights (axis 1, its output channels) and bias."""

    weight_axis = 1

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        weight, bias = self.quantised_parameters()
        padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)
        return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, padding, self.groups, self.dilation)


# ------------------------------------------------------------------------------------------ plan and attach


def resolve_node_module(model: nn.Module, node_name: str) -> str | None:
    """The qualified name of the module an exported node came from (``""`` for the model), None if unknown.

    The exporter names a node by its module scopes, each written relative to its parent scope or one above it
    (``/backbone/ERBlock_2/ERBlock_2.0/nonlinearity/Relu``), with ``name_N`` for the N-th call of a module
    ``name`` that runs more than once (``/.../cspsppf/m_1/MaxPool``).
    """
    modules = dict(model.named_modules())
    current = ""
    for part in [p for p in node_name.split("/") if p][:-1]:
        match = _CALL_SUFFIX.match(part)
        names = [part, match.group(1)] if match else [part]
        bases = [current, current.rpartition(".")[0]] if current else [current]
        found = next(
            (f"{b}.{n}" if b else n for b in bases for n in names if (f"{b}.{n}" if b else n) in modules), None
        )
        if found is None:
            return None
        current = found
    return current


def _site(model: nn.Module, tensor: str, producer: onnx.NodeProto | None) -> str | None:
    """The fake-quant site of quantised ``tensor``: the input, or the output of its producer's module; None for
    a Concat output (quantised at its consumers, :func:`_consumer_sites`)."""
    if producer is None:
        return INPUT_SITE
    if producer.op_type == "Concat":
        return None
    path = resolve_node_module(model, producer.name)
    module = model.get_submodule(path) if path is not None else None
    if producer.op_type in _SILU_OPS and isinstance(module, nn.SiLU):
        return path if producer.op_type == "Mul" else path + SIGMOID_SUFFIX
    expected = _OUTPUT_MODULES.get(producer.op_type)
    if expected is not None and isinstance(module, expected):
        return path
    raise BuildError(
        f"quantisation-aware training cannot place the quantiser of {tensor} ({producer.op_type} node "
        f"{producer.name}, module {path!r} is {type(module).__name__}); it supports conv, ReLU, SiLU, max-pool, "
        "transposed-conv and Concat outputs (models without residual Adds: yolov6n/t/s and the RepOpt configs)"
    )


def _consumer_sites(model: nn.Module, dqs: list[onnx.NodeProto], consumers: Mapping[str, list]) -> list[str]:
    """Input sites (``path`` + :data:`INPUT_SUFFIX`) of the modules that read a quantised Concat output."""
    sites = []
    for node in (c for dq in dqs for c in consumers.get(dq.output[0], [])):
        path = resolve_node_module(model, node.name)
        module = model.get_submodule(path) if path is not None else None
        if not isinstance(module, _OUTPUT_MODULES.get(node.op_type, ())):
            raise BuildError(f"quantisation-aware training cannot quantise the input of {node.name} (a Concat output)")
        sites.append(path + INPUT_SUFFIX)
    return sites


def _qparams(inits: Mapping[str, onnx.TensorProto], node: onnx.NodeProto) -> tuple[float, int]:
    scale = float(numpy_helper.to_array(inits[node.input[1]]).ravel()[0])
    zero = int(numpy_helper.to_array(inits[node.input[2]]).ravel()[0]) if len(node.input) > 2 else 0
    return scale, zero


def _weights(model: nn.Module, graph: onnx.ModelProto) -> dict[str, tuple[int, float | None]]:
    producers = {out: node for node in graph.graph.node for out in node.output}
    inits = {init.name: init for init in graph.graph.initializer}
    found = {}
    for node in graph.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
            continue
        weight_dq = producers.get(node.input[1])
        if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
            continue
        axis = next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)
        act_dq = producers.get(node.input[0])
        bias_dq = producers.get(node.input[2]) if len(node.input) > 2 else None
        quantised_bias = bias_dq is not None and bias_dq.op_type == "DequantizeLinear" and act_dq is not None
        path = resolve_node_module(model, node.name)
        if path is None:
            raise BuildError(f"the quantised convolution {node.name} has no module in this model")
        found[path] = (axis, _qparams(inits, act_dq)[0] if quantised_bias else None)
    return found


def plan_from_qdq(model: nn.Module, graph: onnx.ModelProto, target: str) -> QuantPlan:
    """The :class:`QuantPlan` of a PTQ Q/DQ graph of ``model`` (fused, exported by the SDK exporter).

    Raises:
        BuildError: a quantised tensor has no torch counterpart to hook, a reused module or a Concat whose
            quantisers disagree.
    """
    producers = {out: node for node in graph.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    inits = {init.name: init for init in graph.graph.initializer}
    acts: dict[str, tuple[float, int]] = {}
    for node in graph.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits:
            continue
        tensor, params = node.input[0], _qparams(inits, node)
        producer = producers.get(tensor)
        sites = [_site(model, tensor, producer)]
        if sites == [None]:
            _check_concat(producer, params, producers, inits)
            sites = _consumer_sites(model, consumers.get(node.output[0], []), consumers)
        for site in sites:
            if acts.setdefault(site, params) != params:
                raise BuildError(f"{site} runs more than once with different quantisation scales; QAT needs one")
    return QuantPlan(target, acts, _weights(model, graph))


def _check_concat(
    concat: onnx.NodeProto,
    params: tuple[float, int],
    producers: Mapping[str, onnx.NodeProto],
    inits: Mapping[str, onnx.TensorProto],
) -> None:
    for tensor in concat.input:
        dq = producers.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear" or _qparams(inits, dq) != params:
            raise BuildError(
                f"{concat.name}: its quantised output does not share the scale of every input; quantisation-aware "
                "training needs the shared Concat scales that yolov6-build writes"
            )


def attach(model: nn.Module, plan: QuantPlan) -> nn.Module:
    """Fake-quantise the fused ``model`` in place as ``plan`` says and return it (``model.qat_plan = plan``).

    Raises:
        BuildError: the model is not fused, or a site of ``plan`` names no fitting module of ``model``.
    """
    if getattr(model, "qat_plan", None) is not None:
        raise BuildError("the model is fake-quantised already")
    quantizers = nn.ModuleDict()
    # SiLUs are replaced before any hook goes on a module, so a SiLU's output hook lands on its replacement
    ordered = sorted(plan.activations.items(), key=lambda item: not item[0].endswith(SIGMOID_SUFFIX))
    for path, (scale, zero) in ordered:
        quant = ActivationFakeQuant(scale, zero, plan.signed)
        quantizers[f"q{len(quantizers)}"] = quant
        if path == INPUT_SITE:
            model.register_forward_pre_hook(_InputQuant(quant))
        elif path.endswith(INPUT_SUFFIX):
            _module(model, path.removesuffix(INPUT_SUFFIX), nn.Module).register_forward_pre_hook(_InputQuant(quant))
        elif path.endswith(SIGMOID_SUFFIX):
            _replace(model, path.removesuffix(SIGMOID_SUFFIX), nn.SiLU, lambda _m, q=quant: QuantSiLU(q))
        else:
            _module(model, path, nn.Module).register_forward_hook(_OutputQuant(quant))
    for path, (axis, input_scale) in plan.weights.items():
        conv = _module(model, path, (nn.Conv2d, nn.ConvTranspose2d))
        wanted = QuantConvTranspose2d if isinstance(conv, nn.ConvTranspose2d) else QuantConv2d
        if axis != wanted.weight_axis or conv.groups != 1:
            raise BuildError(f"{path}: per-channel weight axis {axis} of a {type(conv).__name__} is not supported")
        conv.__class__ = wanted  # same parameters and buffers: only the forward changes
        conv.input_scale = None if plan.float_bias else input_scale  # None: the bias is not put on a grid
    model.qat_quantizers = quantizers
    model.qat_plan = plan
    return model


def _module(model: nn.Module, path: str, kind: type | tuple[type, ...]) -> nn.Module:
    try:
        module = model.get_submodule(path)
    except AttributeError:
        module = None
    if not isinstance(module, kind):
        raise BuildError(f"the quantisation plan names {path!r}, which this model lacks; it is from another model")
    return module


def _replace(model: nn.Module, path: str, kind: type, make: Any) -> None:
    module = _module(model, path, kind)
    parent_path, _, name = path.rpartition(".")
    model.get_submodule(parent_path)._modules[name] = make(module)


def qat_model(loaded: LoadedModel, device: torch.device | str = "cpu") -> nn.Module:
    """The fake-quantised model of a loaded QAT checkpoint (fused weights, the plan in ``meta["qat"]``), in eval
    mode: a copy, ``loaded.model`` is left as it is.

    Raises:
        CheckpointError: not a QAT checkpoint (the message says how to make one).
    """
    if QAT_META_KEY not in loaded.meta:
        raise CheckpointError(
            f"{loaded.path} is not a quantisation-aware training checkpoint (no {QAT_META_KEY!r} metadata); make "
            "one with yolov6-train --qat --teacher CKPT, or build this one without --qat"
        )
    plan = QuantPlan.from_meta(loaded.meta[QAT_META_KEY], str(loaded.path))
    return attach(copy.deepcopy(loaded.model), plan).to(device).eval()


# -------------------------------------------------------------------------------------------------- export


def export_qat_onnx(
    model: nn.Module, path: str | Path, options: ExportOptions, metadata: Mapping[str, object] | None = None
) -> Path:
    """Export a fake-quantised model (:func:`attach`) as a Q/DQ ONNX at ``path`` (atomically).

    Activations keep the QuantizeLinear/DequantizeLinear pairs the exporter writes for the fake-quant ops;
    weights become int8 and biases int32 initializers behind a DequantizeLinear, as in a PTQ model (float for the
    ``tensorrt`` target).
    Metadata records ``precision="int8"``, ``quant_target`` and ``calibration_method="qat"``.

    Raises:
        BuildError: ``model`` is not fake-quantised, ``options.opset`` < 13 (no per-channel axis), or the
            export fails.
    """
    plan: QuantPlan | None = getattr(model, "qat_plan", None)
    if plan is None:
        raise BuildError("export_qat_onnx takes a fake-quantised model (yolov6_sdk.export.fake_quant.attach)")
    if options.opset < 13:
        raise BuildError(f"per-channel Q/DQ needs ONNX opset 13 or newer, got {options.opset}")
    meta = {"precision": "int8", "quant_target": plan.target, "calibration_method": "qat", "float_layers": []}
    meta.update(metadata or {})
    path, model = Path(path), copy.deepcopy(model).float().eval().cpu()
    for module in model.modules():
        if isinstance(module, _QuantConv):
            module.freeze()
    with tempfile.TemporaryDirectory(prefix="yolov6-qat-") as tmp:
        graph = onnx.load(str(export_onnx(model, Path(tmp) / "qat.onnx", options, metadata=meta)))
    qdq.drop_clamping_relus(graph)
    qdq.fold_weight_quantize(graph, quantize_biases=not plan.float_bias)
    onnx.checker.check_model(graph)
    with atomic_path(path) as tmp_out:
        onnx.save(graph, str(tmp_out))
    return path
