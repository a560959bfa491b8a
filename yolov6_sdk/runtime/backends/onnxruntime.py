"""ONNX Runtime backend: raw and end-to-end ``.onnx`` exports, fp32, fp16 or quantised.

The session runs with graph optimisation level ALL. Providers follow the device asked: "cpu" -> CPU;
"cuda[:N]" -> the CUDA EP, then CPU for unsupported nodes; "auto" -> CUDA when this onnxruntime has it, else
CPU. ``ort_provider="tensorrt"`` puts ONNX Runtime's TensorRT EP first (CUDA, then CPU behind it) with its engine
and timing caches on, in a ``<model stem>.ort-trt-cache`` folder beside the model, so the engine TensorRT
builds is reused by the next process; it refuses models quantised for the CPU (uint8 asymmetric Q/DQ, which
TensorRT does not run). What the model is comes from the export's ``metadata_props`` and, for ONNX files from
elsewhere, from the graph's input and output shapes.

``onnxruntime`` (CPU) and ``onnxruntime-gpu`` install the same ``onnxruntime`` module; with both installed one
overwrites the other's files, so the backend refuses to start and says which one to keep.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import numpy as np

from yolov6_sdk._optional import require
from yolov6_sdk.artifact.meta import decode_props, read_meta
from yolov6_sdk.artifact.model_info import graph_model_info
from yolov6_sdk.artifact.spec import IOSpec
from yolov6_sdk.errors import ArtifactError, ConfigError, MissingDependencyError
from yolov6_sdk.runtime.backends.base import Backend, BackendSpec, ModelInfo
from yolov6_sdk.runtime.backends.registry import parse_device

LOGGER = logging.getLogger(__name__)

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
PROVIDERS = ("auto", "cuda", "tensorrt")  # the GPU provider choice; "auto" = CUDA
# distributions that each install the ``onnxruntime`` module
_ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


@functools.lru_cache(maxsize=1)
def check_one_onnxruntime() -> None:
    """Refuse an environment where more than one onnxruntime distribution is installed.

    Raises:
        MissingDependencyError: e.g. both ``onnxruntime`` and ``onnxruntime-gpu``; the message says how to keep one.
    """
    found = []
    for name in _ORT_DISTRIBUTIONS:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    if len(found) > 1:
        raise MissingDependencyError(
            f"{' and '.join(found)} are installed together; they provide the same onnxruntime module and overwrite "
            "each other's files. Keep one: pip uninstall -y onnxruntime onnxruntime-gpu, then pip install "
            "onnxruntime-gpu (NVIDIA GPU) or pip install onnxruntime (CPU)"
        )


def trt_cache_dir(model: str | Path) -> Path:
    """Where ONNX Runtime's TensorRT EP keeps the engines and timing cache it builds for ``model``."""
    model = Path(model)
    return model.with_name(f"{model.stem}.ort-trt-cache")


def select_providers(device: str, provider: str = "auto", cache_dir: Path | None = None) -> tuple[list[Any], str]:
    """Execution providers for ``device`` among those installed, and the resolved device ("cpu" / "cuda:N").

    ``provider`` chooses the GPU provider: "auto" or "cuda" -> CUDA; "tensorrt" -> TensorRT EP with its engine
    and timing caches in ``cache_dir``, then CUDA. Every GPU list ends with the CPU provider.

    Raises:
        ConfigError: a malformed device string, an unknown provider, or "tensorrt" with device "cpu".
        MissingDependencyError: a GPU asked but this onnxruntime has no CUDA or TensorRT provider.
    """
    kind, index = parse_device(device)
    if provider not in PROVIDERS:
        raise ConfigError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if provider == "tensorrt" and kind == "cpu":
        raise ConfigError("provider='tensorrt' runs on a GPU; use device='cuda' (or 'auto') or drop the provider")
    ort = require("onnxruntime")
    installed = ort.get_available_providers()
    wanted = (
        ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if provider == "tensorrt" else ["CUDAExecutionProvider"]
    )
    if kind == "cpu" or (kind == "auto" and provider == "auto" and wanted[0] not in installed):
        return ["CPUExecutionProvider"], "cpu"
    if wanted[0] not in installed:
        raise MissingDependencyError(
            f"device {device!r} with provider {provider!r} needs {wanted[0]}, but this onnxruntime {ort.__version__} "
            f"has only {', '.join(installed)}: pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
            + (" (and TensorRT's libraries for its TensorRT provider)" if provider == "tensorrt" else "")
            + ", or use device='cpu'"
        )
    options: dict[str, dict[str, Any]] = {name: {"device_id": index} for name in wanted if name in installed}
    if "TensorrtExecutionProvider" in options:
        folder = str(cache_dir or Path.cwd() / "ort-trt-cache")
        options["TensorrtExecutionProvider"].update(
            trt_engine_cache_enable=True, trt_engine_cache_path=folder, trt_timing_cache_enable=True,
            trt_timing_cache_path=folder,
        )  # fmt: skip
    return [*options.items(), "CPUExecutionProvider"], f"cuda:{index}"


def refuse_asymmetric_qdq(path: Path) -> None:
    """Refuse an ONNX model quantised with uint8 (asymmetric) Q/DQ, which TensorRT does not run.

    Raises:
        ConfigError: the model has a QuantizeLinear or DequantizeLinear with a uint8 zero point.
    """
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises protobuf's own error types
        raise ArtifactError(f"{path} cannot be read as an ONNX model ({exc}); re-export it") from exc
    uint8 = {init.name for init in proto.graph.initializer if init.data_type == onnx.TensorProto.UINT8}
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in uint8:
            raise ConfigError(
                f"{path} is quantised for ONNX Runtime on the CPU (uint8 asymmetric Q/DQ, e.g. at {node.name or node.op_type}), "
                "which TensorRT does not run; build an int8 model for TensorRT instead (yolov6-build --precision int8 "
                "--backend tensorrt) or run this one with the CUDA provider"
            )


def _spec(arg: Any) -> IOSpec:
    shape = tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in arg.shape)
    return IOSpec(arg.name, shape, _DTYPES.get(arg.type, arg.type))


class OnnxRuntimeBackend(Backend):
    """An ``.onnx`` file in an ONNX Runtime session.

    Args:
        path: the ``.onnx`` file.
        device: "auto", "cpu", "cuda" or "cuda:N".
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        imgsz: input (H, W) for a model whose input size is neither fixed in the graph nor recorded in its
            metadata; must agree with a fixed size.
        ort_provider: the GPU provider, "auto" (CUDA), "cuda" or "tensorrt" (see the module docstring).

    ``infer`` takes a numpy ``[B, 3, H, W]`` float array (cast to the graph's input dtype, e.g. fp16) and
    returns ``{output name: numpy array}``.
    """

    spec = BackendSpec(
        name="onnxruntime",
        suffixes=(".onnx",),
        options=("threads", "imgsz", "ort_provider"),
        modules=("onnxruntime",),
        install="pip install onnxruntime (CPU) or onnxruntime-gpu (NVIDIA GPU)",
        devices=("cpu", "cuda"),
        precisions=("fp32", "fp16", "int8"),
    )

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        threads: int | None = None,
        imgsz: int | tuple[int, int] | None = None,
        ort_provider: str = "auto",
    ) -> None:
        check_one_onnxruntime()
        providers, resolved = select_providers(device, ort_provider, trt_cache_dir(path))
        if any(isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider" for p in providers):
            refuse_asymmetric_qdq(Path(path))
        super().__init__(path, resolved)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive int or None (ONNX Runtime's default), got {threads!r}")
        session = self._open(providers, threads)
        active = session.get_providers()
        if resolved != "cpu" and not any(name in active for name in _GPU_PROVIDERS):
            raise ArtifactError(
                f"ONNX Runtime could not start a GPU provider for {self.path} (active: {active}); check the CUDA "
                f"and cuDNN libraries onnxruntime-gpu {require('onnxruntime').__version__} needs, or use device='cpu'"
            )
        self._info = self._read_info(session, imgsz)
        self._input_dtype = np.dtype(self._info.inputs[0].dtype)
        self.session: Any = session
        LOGGER.info("loaded %s on %s (providers %s)", self.path, self.device, active)

    def _open(self, providers: list[Any], threads: int | None) -> Any:
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only; the library logger reports the rest
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ArtifactError(
                f"ONNX Runtime cannot load {str(self.path)!r} ({type(exc).__name__}: {exc}); the file is truncated, "
                f"corrupt or not an ONNX model: re-export it (export_onnx or yolov6-build)"
            ) from exc

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _read_info(self, session: Any, imgsz: int | tuple[int, int] | None) -> ModelInfo:
        where = str(self.path)
        meta = read_meta(decode_props(dict(session.get_modelmeta().custom_metadata_map), where), where)
        inputs = tuple(_spec(arg) for arg in session.get_inputs())
        outputs = tuple(_spec(arg) for arg in session.get_outputs())

        def probe(size: tuple[int, int]) -> tuple[int, int]:
            shape = (inputs[0].shape[0] or 1, 3, *size)
            anchors, columns = session.run(None, {inputs[0].name: np.full(shape, 114 / 255, inputs[0].dtype)})[0].shape[
                1:
            ]
            return int(anchors), int(columns)

        return graph_model_info(where, meta, inputs, outputs, imgsz, probe)

    def infer(self, images: Any) -> dict[str, Any]:
        """Run ``images`` [B, 3, H, W] (numpy); returns ``{output name: numpy array}``."""
        info = self._info
        self.check_batch_served(len(images))
        if self.session is None:
            raise ArtifactError(f"the session of {self.path} is closed; create a new backend")
        feed = np.ascontiguousarray(images, dtype=self._input_dtype)
        values = self.session.run(None, {self._info.inputs[0].name: feed})
        return {spec.name: value for spec, value in zip(info.outputs, values, strict=True)}

    def close(self) -> None:
        self.session = None
