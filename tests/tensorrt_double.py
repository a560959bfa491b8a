"""A strict stand-in for the ``tensorrt`` module, TensorRT 10 or 11 flavour, for tests only.

It implements the part of the TensorRT Python API the SDK calls (Builder, network, OnnxParser, IBuilderConfig,
optimisation profiles, timing caches, Runtime, ICudaEngine, IExecutionContext) and enforces the documented rules
that matter here, raising or failing the way TensorRT does:

* ONNX parser (onnx-tensorrt's operator table): opsets 9..:data:`MAX_OPSET`; only listed op types (plugin ops such
  as ``EfficientNMS_TRT`` only after ``init_libnvinfer_plugins``); DequantizeLinear reads INT8 (the quantised
  types) only, never INT32 ("only activation types allowed as input to this layer"); Q/DQ zero points int8 and 0.
* Builder flags per version: TensorRT 11 has no FP16/INT8 flags, no weak typing, no implicit calibrator; precision
  flags on a strongly typed network fail the build.
* Profiles: every dynamic input dimension needs an optimisation profile, min <= opt <= max, fixed dims kept.
* Execution: ``set_input_shape`` returns False outside profile 0; ``execute_async_v3`` fails unless every
  dynamic input shape and every I/O tensor address is set.

Every call lands in :attr:`Recorder.calls` as ``(name, args)``. It computes no tensor values: a serialised
"engine" is a JSON description of the network, and output dimensions it cannot derive from the input's stay -1.
"""

from __future__ import annotations

import enum
import json
import types
from dataclasses import dataclass, field
from typing import Any

import onnx

VERSIONS = {10: "10.16.1.11", 11: "11.1.0.106"}
MAX_OPSET = {10: 22, 11: 23}
# ONNX op types of onnx-tensorrt's operator table that the SDK's exports use (plus a few neighbours)
SUPPORTED_OPS = frozenset({
    "Add", "ArgMax", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "DequantizeLinear",
    "Div", "Equal", "Expand", "Gather", "Identity", "MaxPool", "Mul", "NonMaxSuppression", "QuantizeLinear",
    "Range", "ReduceMax", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Squeeze",
    "Sub", "TopK", "Transpose", "Unsqueeze", "Where",
})  # fmt: skip
PLUGIN_OPS = frozenset({"EfficientNMS_TRT"})
QUANTISED_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.INT4}
_ONNX_TO_TRT = {
    onnx.TensorProto.FLOAT: "FLOAT",
    onnx.TensorProto.FLOAT16: "HALF",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
}
_MODULES: list[types.ModuleType] = []  # kept alive: the SDK caches one logger per module id
ENGINE_MAGIC = "tensorrt-double-engine"
CACHE_MAGIC = "tensorrt-double-timing-cache"


@dataclass
class Recorder:
    """The calls made on one stand-in module, in order, and its environment (GPU, plugins)."""

    version: str
    gpu: str = "NVIDIA H100 80GB HBM3"
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    plugins: bool = False

    def record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def make_tensorrt(major: int, gpu: str = "NVIDIA H100 80GB HBM3") -> types.ModuleType:
    """A fresh stand-in ``tensorrt`` module of TensorRT ``major`` (10 or 11); its recorder is ``module.recorder``."""
    rec = Recorder(VERSIONS[major], gpu)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = rec.version
    trt.recorder = rec
    flags = ["TF32", "REFIT", "FP16", "INT8"] if major == 10 else ["TF32", "REFIT"]
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"])
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    trt.DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "INT64", "BOOL"])
    trt.HardwareCompatibilityLevel = enum.IntEnum(
        "HardwareCompatibilityLevel", {"NONE": 0, "AMPERE_PLUS": 1, "SAME_COMPUTE_CAPABILITY": 2}
    )
    trt.ILogger = _logger_class()

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        rec.record("init_libnvinfer_plugins", namespace)
        rec.plugins = True
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins
    trt.Builder = type("Builder", (_Builder,), {"trt": trt})
    trt.OnnxParser = type("OnnxParser", (_OnnxParser,), {"trt": trt})
    trt.Runtime = type("Runtime", (_Runtime,), {"trt": trt})
    config_api = {"trt": trt, "major": major}
    if major == 10:
        config_api["int8_calibrator"] = None  # deprecated since 10.1, gone in 11
    trt.IBuilderConfig = type("IBuilderConfig", (_BuilderConfig,), config_api)
    engine_api: dict[str, Any] = {"trt": trt}
    if major == 10:
        engine_api["device_memory_size"] = property(lambda self: 1 << 20)
    trt.ICudaEngine = type("ICudaEngine", (_Engine,), engine_api)
    _MODULES.append(trt)
    return trt


def _logger_class() -> type:
    class ILogger:
        Severity = enum.IntEnum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])

        def __init__(self) -> None:
            pass

    return ILogger


# ----------------------------------------------------------------------------------------------- network, parser


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: Any
    symbols: tuple[str, ...] = ()  # ONNX dim_param of each dynamic axis ("" for fixed axes)


class _Network:
    def __init__(self, strongly_typed: bool) -> None:
        self.strongly_typed = strongly_typed
        self.inputs: list[_Tensor] = []
        self.outputs: list[_Tensor] = []
        self.parsed_from: str = ""
        self.has_qdq = False

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]

    def get_output(self, index: int) -> _Tensor:
        return self.outputs[index]


class _Builder:
    trt: Any

    def __init__(self, logger: Any) -> None:
        self.trt.recorder.record("Builder")

    def create_network(self, flags: int = 0) -> _Network:
        rec, trt = self.trt.recorder, self.trt
        rec.record("create_network", flags)
        strong_bit = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if flags & ~strong_bit:
            raise TypeError(f"create_network: unknown flags {flags}")
        return _Network(strongly_typed=bool(flags & strong_bit) or not hasattr(trt.BuilderFlag, "FP16"))

    def create_builder_config(self) -> _BuilderConfig:
        self.trt.recorder.record("create_builder_config")
        return self.trt.IBuilderConfig()

    def create_optimization_profile(self) -> _Profile:
        self.trt.recorder.record("create_optimization_profile")
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _BuilderConfig) -> memoryview | None:
        rec = self.trt.recorder
        rec.record("build_serialized_network")
        problem = _build_problem(network, config)
        if problem:
            rec.record("error", problem)
            return None
        description = {
            "magic": ENGINE_MAGIC,
            "version": rec.version,
            "inputs": [_tensor_json(t) for t in network.inputs],
            "outputs": [_tensor_json(t) for t in network.outputs],
            "profiles": [p.shapes for p in config.profiles],
            "flags": sorted(f.name for f in config.flags),
            "hardware_compatibility": int(config.hardware_compatibility_level),
        }
        if config.cache is not None:
            config.cache.entries += 1  # the build "times" tactics into the cache
        return memoryview(json.dumps(description).encode())


def _tensor_json(tensor: _Tensor) -> dict[str, Any]:
    return {"name": tensor.name, "shape": list(tensor.shape), "dtype": tensor.dtype.name, "symbols": tensor.symbols}


def _build_problem(network: _Network, config: _BuilderConfig) -> str:
    """What TensorRT would refuse about this build ("" when nothing)."""
    if not network.parsed_from:
        return "the network is empty (nothing parsed)"
    precision = {f.name for f in config.flags} & {"FP16", "INT8"}
    if network.strongly_typed and precision:
        return f"BuilderFlag {sorted(precision)} is not allowed for a strongly typed network"
    if network.has_qdq and not network.strongly_typed and "INT8" not in precision:
        return "a weakly typed network with Q/DQ layers needs BuilderFlag.INT8"
    for tensor in network.inputs:
        dynamic = any(d < 0 for d in tensor.shape)
        profiles = [p.shapes.get(tensor.name) for p in config.profiles]
        if dynamic and not profiles:
            return f"input {tensor.name} has dynamic dimensions {tensor.shape} and no optimization profile"
        for shapes in filter(None, profiles):
            if any(len(s) != len(tensor.shape) for s in shapes):
                return f"profile of {tensor.name}: rank differs from {tensor.shape}"
            for axis, size in enumerate(tensor.shape):
                low, opt, high = (s[axis] for s in shapes)
                if size >= 0 and not low == opt == high == size:
                    return f"profile of {tensor.name}: axis {axis} is fixed at {size}, got {low}..{high}"
                if not 1 <= low <= opt <= high:
                    return f"profile of {tensor.name}: axis {axis} needs 1 <= min <= opt <= max, got {shapes}"
    if any(p.shapes.keys() - {t.name for t in network.inputs} for p in config.profiles):
        return "a profile names a tensor that is not a network input"
    return ""


class _OnnxParser:
    trt: Any

    def __init__(self, network: _Network, logger: Any) -> None:
        self.network = network
        self.errors: list[str] = []
        self.trt.recorder.record("OnnxParser")

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse_from_file(self, path: str) -> bool:
        rec = self.trt.recorder
        rec.record("parse_from_file", path)
        model = onnx.load(path)
        self.errors = parse_problems(model, rec.plugins, MAX_OPSET[int(rec.version.split(".")[0])])
        if self.errors:
            return False
        graph = model.graph
        inits = {i.name for i in graph.initializer}
        self.network.inputs = [_tensor(v, self.trt) for v in graph.input if v.name not in inits]
        self.network.outputs = [_tensor(v, self.trt) for v in graph.output]
        self.network.parsed_from = path
        self.network.has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
        return True


def parse_problems(model: onnx.ModelProto, plugins: bool, max_opset: int) -> list[str]:
    """The errors TensorRT's ONNX parser reports for ``model`` (empty when it parses)."""
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not 9 <= opset <= max_opset:
        problems.append(f"unsupported opset {opset} (9..{max_opset})")
    dtypes = {i.name: i.data_type for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in PLUGIN_OPS:
            if not plugins:
                problems.append(f"{node.name}: No importer registered for op: {node.op_type} (plugins not loaded)")
        elif node.op_type not in SUPPORTED_OPS:
            problems.append(f"{node.name}: No importer registered for op: {node.op_type}")
        elif node.op_type == "DequantizeLinear" and dtypes.get(node.input[0], onnx.TensorProto.INT8) not in (
            QUANTISED_TYPES
        ):
            problems.append(f"{node.name}: only activation types allowed as input to this layer")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = next((i for i in model.graph.initializer if i.name == node.input[2]), None)
            nonzero = zero is not None and bool(onnx.numpy_helper.to_array(zero).any())
            if zero is not None and (zero.data_type not in QUANTISED_TYPES | {onnx.TensorProto.INT32} or nonzero):
                problems.append(f"{node.name}: TensorRT supports symmetric int8 quantisation only (zero point 0)")
    return problems


def _tensor(value: onnx.ValueInfoProto, trt: Any) -> _Tensor:
    kind = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim]
    symbols = tuple(d.dim_param if not d.HasField("dim_value") else "" for d in kind.shape.dim)
    name = _ONNX_TO_TRT.get(kind.elem_type, "FLOAT")
    return _Tensor(value.name, tuple(dims), trt.DataType[name], symbols)


# ----------------------------------------------------------------------------------------------- builder config


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, list[list[int]]] = {}

    def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (TensorRT's names)
        self.shapes[name] = [list(map(int, min)), list(map(int, opt)), list(map(int, max))]


class _TimingCache:
    def __init__(self, origin: str, entries: int) -> None:
        self.origin, self.entries = origin, entries

    def serialize(self) -> memoryview:
        return memoryview(json.dumps({"magic": CACHE_MAGIC, "origin": self.origin, "entries": self.entries}).encode())


class _BuilderConfig:
    trt: Any
    major: int

    def __init__(self) -> None:
        self.flags = {self.trt.BuilderFlag.TF32}  # TensorRT sets TF32 by default
        self.pools: dict[Any, int] = {}
        self.profiles: list[_Profile] = []
        self.cache: _TimingCache | None = None
        self.hardware_compatibility_level = self.trt.HardwareCompatibilityLevel.NONE

    def _origin(self) -> str:
        return f"{self.trt.recorder.version}/{self.trt.recorder.gpu}"

    def set_flag(self, flag: Any) -> None:
        self.trt.recorder.record("set_flag", flag.name)
        self.flags.add(flag)

    def clear_flag(self, flag: Any) -> None:
        self.trt.recorder.record("clear_flag", flag.name)
        self.flags.discard(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.trt.recorder.record("set_memory_pool_limit", pool.name, size)
        self.pools[pool] = size

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.trt.recorder.record("add_optimization_profile", profile.shapes)
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob: bytes) -> _TimingCache | None:
        """A new cache for b""; the cache of a blob this stand-in serialised; None for anything else."""
        self.trt.recorder.record("create_timing_cache", len(blob))
        if not blob:
            return _TimingCache(self._origin(), 0)
        try:
            data = json.loads(bytes(blob))
        except ValueError:
            return None
        return _TimingCache(data["origin"], data["entries"]) if data.get("magic") == CACHE_MAGIC else None

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        """False (cache not taken) for a cache of another TensorRT release or GPU unless mismatches are ignored."""
        taken = ignore_mismatch or cache.origin == self._origin()
        self.trt.recorder.record("set_timing_cache", cache.entries, ignore_mismatch, taken)
        if taken:
            self.cache = cache
        return taken

    def get_timing_cache(self) -> _TimingCache | None:
        self.trt.recorder.record("get_timing_cache")
        return self.cache


# ----------------------------------------------------------------------------------------------- runtime


class _Runtime:
    trt: Any

    def __init__(self, logger: Any) -> None:
        self.trt.recorder.record("Runtime")

    def deserialize_cuda_engine(self, blob: bytes) -> _Engine | None:
        self.trt.recorder.record("deserialize_cuda_engine")
        try:
            data = json.loads(bytes(blob))
        except ValueError:
            return None
        if data.get("magic") != ENGINE_MAGIC or data.get("version") != self.trt.recorder.version:
            return None
        return self.trt.ICudaEngine(data)


class _Engine:
    trt: Any

    def __init__(self, description: dict[str, Any]) -> None:
        self.description = description
        self.tensors = {t["name"]: ("INPUT", t) for t in description["inputs"]}
        self.tensors |= {t["name"]: ("OUTPUT", t) for t in description["outputs"]}

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    @property
    def device_memory_size_v2(self) -> int:
        return 1 << 20

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> Any:
        return self.trt.TensorIOMode[self.tensors[name][0]]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name][1]["shape"])

    def get_tensor_dtype(self, name: str) -> Any:
        return self.trt.DataType[self.tensors[name][1]["dtype"]]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self.description["profiles"][profile][name]]

    def create_execution_context(self) -> _Context:
        self.trt.recorder.record("create_execution_context")
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.rec = engine.trt.recorder
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        mode, tensor = self.engine.tensors.get(name, ("", {}))
        ok = mode == "INPUT" and len(shape) == len(tensor["shape"]) and self._in_profile(name, shape)
        self.rec.record("set_input_shape", name, shape, ok)
        if ok:
            self.shapes[name] = shape
        return ok

    def _in_profile(self, name: str, shape: tuple[int, ...]) -> bool:
        fixed = all(f < 0 or f == d for f, d in zip(self.engine.tensors[name][1]["shape"], shape, strict=True))
        profiles = self.engine.description["profiles"]
        if not profiles or name not in profiles[0]:
            return fixed
        low, _, high = profiles[0][name]
        return fixed and all(lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True))

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        mode, tensor = self.engine.tensors[name]
        if mode == "INPUT":
            return self.shapes.get(name, tuple(tensor["shape"]))
        known = {}
        for _, (m, t) in self.engine.tensors.items():
            if m == "INPUT" and t["name"] in self.shapes:
                known |= {s: d for s, d in zip(t["symbols"], self.shapes[t["name"]], strict=True) if s}
        return tuple(d if d >= 0 else known.get(s, -1) for d, s in zip(tensor["shape"], tensor["symbols"], strict=True))

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.tensors or not isinstance(address, int) or address == 0:
            raise ValueError(f"set_tensor_address({name!r}, {address!r}): unknown tensor or null address")
        self.rec.record("set_tensor_address", name, address)
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        missing = sorted(set(self.engine.tensors) - set(self.addresses))
        unset = [
            n
            for n, (m, t) in self.engine.tensors.items()
            if m == "INPUT" and min(t["shape"]) < 0 and n not in self.shapes
        ]
        ok = not missing and not unset
        self.rec.record("execute_async_v3", stream_handle, ok)
        if stream_handle == 0:
            self.rec.record("warning", "execute_async_v3 on the legacy default stream adds synchronisation")
        return ok
