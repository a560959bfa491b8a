"""ONNX Runtime backend: raw and end-to-end ``.onnx`` exports, fp32, fp16 or quantised.

The session runs with graph optimisation level ALL. Providers follow the device asked: "cpu" -> CPU;
"cuda[:N]" -> TensorRT EP (when this onnxruntime build has it), CUDA EP, then CPU for unsupported nodes;
"auto" -> the CUDA providers when installed, else CPU. What the model is comes from the export's
``metadata_props`` and, for ONNX files from elsewhere, from the graph's input and output shapes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from yolov6_sdk.artifact.preprocess import check_imgsz
from yolov6_sdk.artifact.sidecar import decode_metadata, recorded_multi_label
from yolov6_sdk.artifact.spec import END2END_OUTPUTS, IOSpec
from yolov6_sdk.errors import ArtifactError, ConfigError, MissingDependencyError
from yolov6_sdk.runtime.backends.base import Backend, ModelInfo
from yolov6_sdk.runtime.backends.registry import parse_device

LOGGER = logging.getLogger(__name__)

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


def select_providers(device: str) -> tuple[list[Any], str]:
    """Execution providers for ``device`` among those installed, and the resolved device ("cpu" / "cuda:N").

    Raises:
        ConfigError: a malformed device string.
        MissingDependencyError: "cuda" asked but this onnxruntime has no GPU provider.
    """
    kind, index = parse_device(device)
    installed = ort.get_available_providers()
    gpu = [name for name in _GPU_PROVIDERS if name in installed]
    if kind == "cpu" or (kind == "auto" and not gpu):
        return ["CPUExecutionProvider"], "cpu"
    if not gpu:
        raise MissingDependencyError(
            f"device {device!r} needs onnxruntime with CUDA, but this onnxruntime {ort.__version__} has only "
            f"{', '.join(installed)}: pip uninstall onnxruntime && pip install onnxruntime-gpu, or use device='cpu'"
        )
    providers: list[Any] = [(name, {"device_id": index}) for name in gpu]
    return [*providers, "CPUExecutionProvider"], f"cuda:{index}"


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

    ``infer`` takes a numpy ``[B, 3, H, W]`` float array (cast to the graph's input dtype, e.g. fp16) and
    returns ``{output name: numpy array}``.
    """

    kind = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        threads: int | None = None,
        imgsz: int | tuple[int, int] | None = None,
    ) -> None:
        providers, resolved = select_providers(device)
        super().__init__(path, resolved)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive int or None (ONNX Runtime's default), got {threads!r}")
        session = self._open(providers, threads)
        active = session.get_providers()
        if resolved != "cpu" and not any(name in active for name in _GPU_PROVIDERS):
            raise ArtifactError(
                f"ONNX Runtime could not start a GPU provider for {self.path} (active: {active}); check the CUDA "
                f"and cuDNN libraries onnxruntime-gpu {ort.__version__} needs, or use device='cpu'"
            )
        self._info = self._read_info(session, imgsz)
        self._input_dtype = np.dtype(self._info.inputs[0].dtype)
        self.session: ort.InferenceSession | None = session
        LOGGER.info("loaded %s on %s (providers %s)", self.path, self.device, active)

    def _open(self, providers: list[Any], threads: int | None) -> ort.InferenceSession:
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

    def _read_info(self, session: ort.InferenceSession, imgsz: int | tuple[int, int] | None) -> ModelInfo:
        meta = decode_metadata(dict(session.get_modelmeta().custom_metadata_map))
        inputs = tuple(_spec(arg) for arg in session.get_inputs())
        outputs = tuple(_spec(arg) for arg in session.get_outputs())
        end2end = {spec.name for spec in outputs} >= set(END2END_OUTPUTS)
        if not end2end and len(outputs[0].shape) != 3:
            raise ArtifactError(
                f"{self.path} is not a YOLOv6 export: expected output [B, anchors, 5 + classes] or the "
                f"{', '.join(END2END_OUTPUTS)} outputs, got {[(s.name, s.shape) for s in outputs]}"
            )
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, None):
            raise ArtifactError(f"{self.path}: expected one input [B, 3, H, W], got {[s.shape for s in inputs]}")
        if inputs[0].dtype not in ("float32", "float16"):
            raise ArtifactError(f"{self.path}: expected a float32 or float16 input, got {inputs[0].dtype}")
        batch = inputs[0].shape[0]
        precision = meta.get("precision") or ("fp16" if inputs[0].dtype == "float16" else "fp32")
        size = self._imgsz(meta, inputs[0], imgsz)
        return ModelInfo(
            names=self._names(meta, session, size, end2end),
            imgsz=size,
            end2end=end2end,
            multi_label=recorded_multi_label(meta, end2end, str(self.path)),
            precision=str(precision),
            max_batch=batch,
            min_batch=batch or 1,
            inputs=inputs,
            outputs=outputs,
            extra=meta,
        )

    def _names(
        self, meta: dict[str, Any], session: ort.InferenceSession, imgsz: tuple[int, int], end2end: bool
    ) -> list[str]:
        """Recorded class names, else "0".."nc-1" with nc from the raw output's last axis."""
        names = meta.get("names")
        if isinstance(names, list) and names:
            return [str(name) for name in names]
        if end2end:
            LOGGER.warning("%s records no class names; classes are shown by number", self.path)
            return []
        columns = _spec(session.get_outputs()[0]).shape[2]
        if columns is None:  # symbolic in the graph: run one gray image to learn it
            spec = _spec(session.get_inputs()[0])
            probe = np.full((spec.shape[0] or 1, 3, *imgsz), 114 / 255, dtype=spec.dtype)
            columns = session.run(None, {spec.name: probe})[0].shape[2]
        return [str(i) for i in range(columns - 5)]

    def _imgsz(self, meta: dict[str, Any], spec: IOSpec, asked: int | tuple[int, int] | None) -> tuple[int, int]:
        fixed = spec.shape[2:]
        recorded = meta.get("imgsz")
        if isinstance(recorded, list) and len(recorded) == 2:
            known: tuple[int, int] | None = (int(recorded[0]), int(recorded[1]))
        else:
            known = (int(fixed[0]), int(fixed[1])) if None not in fixed else None
        if asked is None:
            if known is None:
                raise ConfigError(
                    f"{self.path} has a dynamic input size and records no imgsz; pass imgsz=(H, W), multiples of 32"
                )
            return known
        size = check_imgsz(asked)
        if None not in fixed and size != tuple(fixed):
            raise ConfigError(f"{self.path} takes input {tuple(fixed)} only, got imgsz={asked!r}; drop imgsz")
        return size

    def infer(self, images: Any) -> dict[str, Any]:
        """Run ``images`` [B, 3, H, W] (numpy); returns ``{output name: numpy array}``."""
        info = self._info
        count = len(images)
        if count < info.min_batch or (info.max_batch is not None and count > info.max_batch):
            served = f"{info.min_batch}" if info.min_batch == info.max_batch else f"{info.min_batch}..{info.max_batch}"
            raise ArtifactError(
                f"{self.path} was exported for batch {served}, got {count} images; use Detector (it splits and "
                f"pads batches) or export with dynamic_batch=True"
            )
        if self.session is None:
            raise ArtifactError(f"the session of {self.path} is closed; create a new backend")
        feed = np.ascontiguousarray(images, dtype=self._input_dtype)
        values = self.session.run(None, {self._info.inputs[0].name: feed})
        return {spec.name: value for spec, value in zip(info.outputs, values, strict=True)}

    def close(self) -> None:
        self.session = None
