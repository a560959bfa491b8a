"""Reading official meituan/YOLOv6 release ``.pt`` files safely.

Release files hold a whole pickled ``yolov6.models.yolo.Model`` (often fp16) under ``ema`` or ``model``. They are
read without the official package and without running arbitrary pickle content: the file's structure and pickle are
checked first (:mod:`yolov6_sdk.checkpoint_reader`: bounded memory, allow-listed globals only), then a restricted
unpickler admits only the official model classes (restored as inert :class:`OfficialModule` shells whose
``state_dict()`` gives the official keys), an explicit list of torch layers, tensor rebuild functions and plain
containers; the few builtins that could allocate from a number (``bytes(n)``, numpy arrays) are admitted only in the
forms pickles use. The zoo config is then found by matching keys and shapes exactly, the tensors are checked (dense,
finite) and the weights are loaded into our own model.
"""

from __future__ import annotations

import builtins
import codecs
import copyreg
import functools
import importlib
import logging
import math
import numbers
import pickle
import reprlib
import types
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from yolov6_sdk.checkpoint_reader import (
    CheckpointFile,
    check_tensors,
    is_plain_global,
    open_checkpoint,
    refuse_deep_nesting,
    shown,
    shown_keys,
    torch_load,
    valid_batchnorm_settings,
)
from yolov6_sdk.errors import CheckpointError
from yolov6_sdk.models import ZOO, ModelConfig, YOLOv6
from yolov6_sdk.models.signature import signature_difference, structure_signature

_LOG = logging.getLogger(__name__)

_ANCHOR_AIDED = ("detect.cls_preds_ab.", "detect.reg_preds_ab.")

# -------------------------------------------------------------------------------- restricted unpickling


class OfficialModule(nn.Module):
    """Inert stand-in for a class of the official ``yolov6`` package while reading a release file.

    Unpickling restores only what ``nn.Module`` keeps (submodules, parameters, buffers, plain attributes), so
    ``state_dict()`` gives the official keys. It has no forward and runs no official code.
    """

    official_name: ClassVar[str] = ""


@functools.cache
def _shell_class(qualified_name: str) -> type[OfficialModule]:
    short = qualified_name.rsplit(".", 1)[1]
    return type(short, (OfficialModule,), {"official_name": qualified_name, "__module__": __name__})


# Model classes of releases 0.2.0 .. 0.4.x (paper line, v3.0, P6, Lite, base, MBLA and QARepVGG); all map to the shell.
_OFFICIAL_CLASSES: dict[str, frozenset[str]] = {
    module: frozenset(names.split())
    for module, names in {
        "yolov6.models.yolo": "Model",
        "yolov6.models.yolo_lite": "Model",
        "yolov6.models.efficientrep": "EfficientRep EfficientRep6 CSPBepBackbone CSPBepBackbone_P6 Lite_EffiBackbone",
        "yolov6.models.reppan": "RepPANNeck RepBiFPANNeck RepPANNeck6 RepBiFPANNeck6 CSPRepPANNeck CSPRepBiFPANNeck "
        "CSPRepPANNeck_P6 CSPRepBiFPANNeck_P6 Lite_EffiNeck",
        "yolov6.models.effidehead": "Detect",
        "yolov6.models.heads.effidehead_distill_ns": "Detect",
        "yolov6.models.heads.effidehead_fuseab": "Detect",
        "yolov6.models.heads.effidehead_lite": "Detect",
        "yolov6.layers.common": "SiLU Conv SimConv ConvWrapper SimConvWrapper ConvModule ConvBNReLU ConvBNSiLU ConvBN "
        "ConvBNHS SPPFModule SimSPPF SPPF CSPSPPFModule SimCSPSPPF CSPSPPF Transpose Concat RepVGGBlock QARepVGGBlock "
        "QARepVGGBlockV2 RealVGGBlock ScaleLayer LinearAddBlock RepBlock BottleRep BottleRep3 Conv_C3 BepC3 MBLABlock "
        "BiFusion SEBlock Lite_EffiBlockS1 Lite_EffiBlockS2 DPBlock DarknetBlock CSPBlock",
    }.items()
}
_TORCH_LAYERS = frozenset(
    {"Conv2d", "ConvTranspose2d", "BatchNorm2d", "ReLU", "SiLU", "Hardswish", "Hardsigmoid", "Sigmoid", "Identity"}
    | {"MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Upsample", "Sequential", "ModuleList", "ModuleDict"}
)
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol-2 pickles use Python 2 names


class _PickledBytes(bytes):
    """``builtins.bytes`` as pickles call it (``bytes()`` or from bytes-like data), never ``bytes(length)``."""

    def __new__(cls, *args: Any) -> bytes:  # type: ignore[misc]
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError("bytes(length) allocates from a number; pickles never call it so")
        return bytes(*args)


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` for the one form protocol-0/1 pickles of plain objects use (``base`` object)."""
    if base is not object:
        raise pickle.UnpicklingError(f"copyreg._reconstructor with base {base!r}")
    return copyreg._reconstructor(cls, object, None)


def _encode_latin1(text: Any, encoding: Any) -> bytes:
    """``_codecs.encode`` as protocol 2 pickles bytes: ``encode(str, "latin1")`` only."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with {type(text).__name__} and {encoding!r}")
    return codecs.encode(text, "latin1")


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _encode_latin1,  # how protocol 2 pickles bytes
    ("builtins", "bytes"): _PickledBytes,
    ("torch.nn.parameter", "Parameter"): nn.Parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    **{
        ("builtins", name): getattr(builtins, name)
        for name in ["set", "frozenset", "list", "dict", "tuple", "int", "float", "bool", "str", "object"]
    },
    **{
        ("torch._utils", name): getattr(torch._utils, name)
        for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")
        if hasattr(torch._utils, name)
    },
}
# numpy scalars appear in the official 'results' entry (pycocotools returns numpy floats).
_NUMPY_GLOBALS = frozenset(
    {("numpy", "dtype"), ("numpy", "ndarray")}
    | {(f"numpy.{core}.multiarray", fn) for core in ("core", "_core") for fn in ("scalar", "_reconstruct")}
)


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified_name = f"{module}.{name}"


def is_official_global(module: str, name: str) -> bool:
    """True for the globals an official release file may reference (what :func:`_resolve_global` admits)."""
    module = _MODULE_ALIASES.get(module, module)
    return (
        name in _OFFICIAL_CLASSES.get(module, ())
        or (module.startswith("torch.nn.modules.") and name in _TORCH_LAYERS)
        or (module, name) in _SAFE_GLOBALS
        or (module, name) in _NUMPY_GLOBALS
        or is_plain_global(module, name)
    )


def _resolve_global(module: str, name: str) -> Any:
    """The object a pickle may reference as ``module.name``, from the allow-list only; never imports the name."""
    module = _MODULE_ALIASES.get(module, module)
    if name in _OFFICIAL_CLASSES.get(module, ()):
        return _shell_class(f"{module}.{name}")
    if module.startswith("torch.nn.modules.") and name in _TORCH_LAYERS:
        return _pickled_layer_class(name)
    if (module, name) in _SAFE_GLOBALS:
        return _SAFE_GLOBALS[module, name]
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    if (module, name) in _NUMPY_GLOBALS:
        return _numpy_global(name)
    raise _RefusedGlobal(module, name)


@functools.cache
def _pickled_layer_class(name: str) -> type[nn.Module]:
    """The torch layer ``name`` as pickles restore it (``__new__`` then ``__dict__``): calling it, which would
    allocate weights of any size the pickle names, is refused."""

    def refuse(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        raise pickle.UnpicklingError(f"torch.nn.{name}(...) allocates from numbers; pickles never call it")

    return type(name, (getattr(nn, name),), {"__init__": refuse, "__module__": __name__})


def _numpy_global(name: str) -> Any:
    """numpy's pickling helpers, guarded: arrays come only from ``_reconstruct(ndarray, (0,), ...)`` followed by
    their pickled data (never ``ndarray(shape)``), scalars only from bytes of their dtype's size."""
    import numpy

    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module("numpy.core.multiarray")
    if name == "dtype":
        return numpy.dtype
    if name == "ndarray":
        return _pickled_ndarray_class()

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
        if shape != (0,) or not (isinstance(subtype, type) and issubclass(subtype, numpy.ndarray)):
            raise pickle.UnpicklingError(f"numpy _reconstruct of shape {shape!r}")
        return multiarray._reconstruct(subtype, shape, dtype)

    def scalar(dtype: Any, data: Any = None) -> Any:
        if not isinstance(dtype, numpy.dtype) or (isinstance(data, bytes) and len(data) != dtype.itemsize):
            raise pickle.UnpicklingError("numpy scalar whose bytes do not match its dtype")
        return multiarray.scalar(dtype, data) if data is not None else multiarray.scalar(dtype)

    return reconstruct if name == "_reconstruct" else scalar


@functools.cache
def _pickled_ndarray_class() -> type:
    """``numpy.ndarray`` for pickles: the type ``_reconstruct`` takes, which refuses ``ndarray(shape)``."""
    import numpy

    def refuse(cls: type, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray(shape) allocates from numbers; pickles never call it so")

    return type("ndarray", (numpy.ndarray,), {"__new__": refuse, "__module__": __name__})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _resolve_global(module, name)


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# torch.load needs a module-like object with Unpickler and load (the latter for the legacy format).
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__=f"{__name__}.restricted_pickle", Unpickler=_RestrictedUnpickler, load=_restricted_load
)


# --------------------------------------------------------------------------------------- official release files


@dataclass(frozen=True)
class OfficialCheckpoint:
    """What an official release file holds, as plain data; :func:`yolov6_sdk.weights.load` builds the model.

    Attributes:
        config: the zoo config whose keys and shapes the weights match (``distill_head`` False for v3.0 n/s
            heads trained without ``reg_preds_dist``).
        num_classes: classes of the detection head.
        fused: True for a reparameterised (deploy) model, which has no BatchNorm.
        state_dict: ``{key: tensor}`` as stored (fp16 or fp32), without the anchor-aided training branch.
        names: class names, ``"0".."nc-1"`` when the file records none.
        batchnorm: ``{module name: [eps, momentum]}`` of every BatchNorm, as the release trained it.
        meta: the official module classes and, when present, the training ``epoch`` and ``results``.
    """

    config: ModelConfig
    num_classes: int
    fused: bool
    state_dict: dict[str, torch.Tensor]
    names: list[str]
    batchnorm: dict[str, list[float | None]]
    meta: dict[str, Any]


def read_official(source: Path | CheckpointFile) -> OfficialCheckpoint:
    """Read an official meituan/YOLOv6 release ``.pt`` without the ``yolov6`` package and without running its pickle.

    Takes the pickled model under ``ema`` (when truthy) or ``model``, finds the zoo config whose state_dict keys
    and shapes it matches exactly (unfused or fused; v3.0 n/s with or without ``reg_preds_dist``) and drops the
    anchor-aided training branch (``cls_preds_ab``/``reg_preds_ab``) if present. ``source`` is a path, or a file
    :func:`~yolov6_sdk.checkpoint_reader.open_checkpoint` already checked with :func:`is_official_global`.
    Raises :class:`CheckpointError` for forbidden pickle content, an unreadable, damaged or altered file (NaN or
    Inf weights included) or an unknown layout.
    """
    checked = source if isinstance(source, CheckpointFile) else open_checkpoint(source, is_official_global)
    with refuse_deep_nesting(checked.path):
        return _read_checked(checked)


def _read_checked(checked: CheckpointFile) -> OfficialCheckpoint:
    """:func:`read_official` of a file whose structure passed the checks."""
    path = checked.path
    checkpoint = _unpickle_restricted(checked)
    official = _official_model(path, checkpoint)
    try:
        state = official.state_dict()
    except Exception as exc:  # a shell restored from a damaged or hand-made pickle
        raise CheckpointError(f"{path} holds a malformed YOLOv6 model ({type(exc).__name__}: {exc})") from None
    check_tensors(checked, state, "the model's state_dict")
    dropped = [key for key in state if key.startswith(_ANCHOR_AIDED)]
    if dropped:
        _LOG.info(
            "%s: dropping %d tensors of the anchor-aided training branch (unused at inference)", path, len(dropped)
        )
    state = {key: value for key, value in state.items() if not key.startswith(_ANCHOR_AIDED)}
    nc = _class_count(path, state)
    config, deploy = _match_config(path, official, state, nc)
    meta = {"official_classes": _official_classes(official), **_official_training_info(checkpoint)}
    _LOG.info("read official %s: %s, %d classes, fused=%s", path, _label(config), nc, deploy)
    return OfficialCheckpoint(config, nc, deploy, state, _official_names(path, official, checkpoint, nc),
                              _batchnorm_settings(path, official), meta)  # fmt: skip


def _unpickle_restricted(checked: CheckpointFile) -> Any:
    """The file's object, through the restricted unpickler (the checks of ``open_checkpoint`` already passed)."""
    return torch_load(checked, pickle_module=_RESTRICTED_PICKLE, weights_only=False)


def _official_model(path: Path, checkpoint: Any) -> OfficialModule:
    """The pickled model: ``ema`` when truthy, else ``model`` (as the official loader picks it)."""
    if isinstance(checkpoint, OfficialModule):
        return checkpoint
    if isinstance(checkpoint, dict):
        ema, model = checkpoint.get("ema"), checkpoint.get("model")  # no truth test: a tensor has none
        found = ema if isinstance(ema, OfficialModule) else model
        if isinstance(found, OfficialModule):
            return found
    found_keys = shown_keys(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise CheckpointError(
        f"{path} is neither a yolov6-sdk checkpoint (no 'format' key) nor an official YOLOv6 release file "
        f"(no pickled YOLOv6 model under 'ema' or 'model'); found {found_keys}"
    )


def _class_count(path: Path, state: dict[str, torch.Tensor]) -> int:
    weight = state.get("detect.cls_preds.0.weight")
    if weight is None:
        raise CheckpointError(f"{path} holds a model without detect.cls_preds.0.weight: not a YOLOv6 detector")
    if weight.dim() != 4 or weight.shape[0] < 1:
        raise CheckpointError(
            f"{path}: detect.cls_preds.0.weight has shape {list(weight.shape)}, expected [classes, channels, 1, 1]; "
            "the file was altered: download it again"
        )
    return int(weight.shape[0])


def _zoo_variants() -> list[ModelConfig]:
    """Every zoo config, plus the other form of each v3.0-style n/s head (raw ltrb regression): without the
    distillation branch ``reg_preds_dist`` where the zoo entry has it, with it where the entry has none."""
    variants = []
    for config in ZOO.values():
        variants.append(config)
        if config.distill_head or (config.family == "qarepvgg" and not config.use_dfl):
            variants.append(replace(config, distill_head=not config.distill_head))
    return variants


def _label(config: ModelConfig) -> str:
    if ZOO[config.name].distill_head == config.distill_head:
        return config.name
    return f"{config.name} {'with' if config.distill_head else 'without'} reg_preds_dist"


@functools.lru_cache(maxsize=64)
def _layout(config: ModelConfig, nc: int, deploy: bool) -> dict[str, tuple[int, ...]]:
    """{state_dict key: shape} of a config, built on the meta device (no memory). Shared: do not mutate."""
    with torch.device("meta"):
        model = YOLOv6(config, nc, deploy=deploy)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@functools.lru_cache(maxsize=64)
def _signature(config: ModelConfig, nc: int, deploy: bool) -> dict[str, str]:
    """:func:`structure_signature` of a config, built on the meta device. Shared: do not mutate."""
    with torch.device("meta"):
        return structure_signature(YOLOv6(config, nc, deploy=deploy))


def _match_config(
    path: Path, official: OfficialModule, state: dict[str, torch.Tensor], nc: int
) -> tuple[ModelConfig, bool]:
    """The zoo config (and whether fused) whose state_dict keys and shapes equal ``state``'s exactly and whose
    activations and block variants equal the pickled model's (configs such as yolov6l and yolov6l-base share
    every tensor name and shape and differ only there)."""
    found = {key: tuple(value.shape) for key, value in state.items()}
    deploy = not any(key.endswith(".running_mean") for key in found)
    # The stem's first conv has 3 input channels; its output width narrows the search to one n/t/s/m/l size.
    widths = {shape[0] for key, shape in found.items() if key.startswith("backbone.stem.") and shape[1:2] == (3,)}
    candidates = [c for c in _zoo_variants() if not widths or c.channels[0] in widths]
    same_tensors = [config for config in candidates if _layout(config, nc, deploy) == found]
    signature = structure_signature(official)
    for config in same_tensors:
        if _signature(config, nc, deploy) == signature:
            return config, deploy
    summary = ", ".join(f"{part} {name}" for part, name in _official_classes(official).items())
    if same_tensors:
        differences = "; ".join(signature_difference(signature, _signature(same_tensors[0], nc, deploy)))
        hint = (
            f"its tensors match {', '.join(map(_label, same_tensors))}, but its activations or block types do not "
            f"({differences}), so loading it as that would compute something else"
        )
    else:
        hint = _closest(found, candidates, nc, deploy) or f"no zoo config has a stem of {sorted(widths)} channels"
    raise CheckpointError(
        f"{path} holds a YOLOv6 model that matches no zoo config: {nc} classes, {len(found)} tensors, "
        f"{'fused' if deploy else 'unfused'}, {summary}; {hint}. Supported: {', '.join(ZOO)}"
    )


def _closest(found: dict[str, tuple[int, ...]], candidates: list[ModelConfig], nc: int, deploy: bool) -> str:
    """The text ``closest is <config>: <difference>`` for the candidate whose layout differs least from ``found``."""
    scored = [(*_difference(found, _layout(config, nc, deploy)), config) for config in candidates]
    if not scored:
        return ""
    _, difference, config = min(scored, key=lambda item: item[0])
    return f"closest is {_label(config)}: {difference}"


def _difference(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> tuple[int, str]:
    """(size, text) of how ``found`` differs from ``expected``; the text names the first keys of each kind."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    shapes = [
        f"{k} {list(found[k])} vs {list(expected[k])}" for k in expected if k in found and found[k] != expected[k]
    ]
    parts = [
        f"{label} ({len(keys)}): {', '.join(keys[:3])}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
        if keys
    ]
    return len(missing) + len(unexpected) + len(shapes), "; ".join(parts)


def _official_classes(official: OfficialModule) -> dict[str, str]:
    """Official class names of the model's parts, e.g. {"detect": "yolov6.models.effidehead.Detect"}."""
    parts = {"model": official, **{name: getattr(official, name, None) for name in ("backbone", "neck", "detect")}}
    return {name: part.official_name for name, part in parts.items() if isinstance(part, OfficialModule)}


def _batchnorm_settings(path: Path, official: nn.Module) -> dict[str, list[float | None]]:
    """{module name: [eps, momentum]} of every BatchNorm of the pickled model (release values vary)."""
    settings: dict[str, list[float | None]] = {}
    for name, module in official.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            eps, momentum = module.__dict__.get("eps"), module.__dict__.get("momentum")
            if not valid_batchnorm_settings(eps, momentum):
                raise CheckpointError(
                    f"{path}: BatchNorm {name} has eps {shown(eps)} and momentum {shown(momentum)}; expected eps > 0 "
                    "and momentum in [0, 1] or None: the file was altered, download it again"
                )
            settings[name] = [float(eps), None if momentum is None else float(momentum)]
    return settings


def _official_names(path: Path, official: nn.Module, checkpoint: Any, nc: int) -> list[str]:
    """Class names from the model's ``names`` attribute or the checkpoint's ``names`` entry, else "0".."nc-1"."""
    sources = (
        ("the model's names attribute", getattr(official, "names", None)),
        ("the checkpoint's 'names' entry", checkpoint.get("names") if isinstance(checkpoint, dict) else None),
    )
    for where, value in sources:
        if value is None:
            continue
        if isinstance(value, dict):
            value = [value[key] for key in sorted(value, key=str)]
        if isinstance(value, (list, tuple)) and len(value) == nc and all(isinstance(n, str) for n in value):
            return list(value)
        _LOG.warning("%s: ignoring %s: expected %d class names, got %s", path, where, nc, reprlib.repr(value))
    return [str(i) for i in range(nc)]


def _official_training_info(checkpoint: Any) -> dict[str, Any]:
    """``epoch`` and ``results`` (official order: mAP@0.5, mAP@0.5:0.95) as plain Python numbers, when present."""
    if not isinstance(checkpoint, dict):
        return {}
    info: dict[str, Any] = {}
    epoch = checkpoint.get("epoch")
    if isinstance(epoch, numbers.Integral) and not isinstance(epoch, bool):
        info["epoch"] = int(epoch)
    results = checkpoint.get("results")
    if isinstance(results, (list, tuple)) and all(_finite_real(r) for r in results):
        info["results"] = [float(r) for r in results]
    return info


def _finite_real(value: Any) -> bool:
    """True for a real number that is a finite float (``2**2000`` overflows float, NaN is no score)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (OverflowError, ValueError, TypeError):
        return False
