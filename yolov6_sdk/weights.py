"""Checkpoints: the SDK's own format, and safe import of official YOLOv6 release files.

Our format (``FORMAT``) is a plain dict written with ``torch.save`` that ``torch.load(weights_only=True)`` reads::

    {"format": "yolov6-sdk/1", "model": zoo name, "num_classes": nc, "names": [nc class names],
     "state_dict": {key: tensor}, "imgsz": 640, "meta": {...}}

State-dict tensors are stored as saved by the model: fp32 for floating tensors (so a round trip is exact; a
checkpoint is about twice the size of an fp16 release file), int64 ``num_batches_tracked``. ``meta`` holds
``fused`` (built with ``deploy=True`` when loading), ``distill_head`` (whether the n/s head carries
``reg_preds_dist``), ``sdk_version``, ``batchnorm`` ({module name: [eps, momentum]} for every BatchNorm whose
settings differ from a freshly built model's; eps is not part of a state_dict) and whatever the caller adds.

Official release files (meituan/YOLOv6) pickle the whole ``yolov6.models.yolo.Model`` object. They are read with a
restricted unpickler: official model classes become an inert :class:`OfficialModule` shell, torch layers, tensors and
plain containers are admitted from an allow-list, and any other global is refused before it can run.

Every file is checked by :func:`~yolov6_sdk.checkpoint_reader.open_checkpoint` before torch reads it (memory bounded by
the file's size, allow-listed globals only), and every field of our format is checked against the model it names
(types, names, tensor keys and shapes, finite values), so a damaged or altered file gives one :class:`CheckpointError`
that names the file and the field.
"""

from __future__ import annotations

import logging
import os
import reprlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolov6_sdk import __version__
from yolov6_sdk.artifact.preprocess import MAX_SIDE
from yolov6_sdk.checkpoint_reader import (
    CheckpointFile,
    check_tensors,
    open_checkpoint,
    refuse_deep_nesting,
    shown,
    shown_keys,
    torch_load,
    valid_batchnorm_settings,
)
from yolov6_sdk.errors import CheckpointError, ConfigError
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.models import ZOO, ModelConfig, YOLOv6, get_config
from yolov6_sdk.models import fuse as fuse_model
from yolov6_sdk.official import is_official_global, read_official

_LOG = logging.getLogger(__name__)

FORMAT = "yolov6-sdk/1"
"""Value of the ``format`` key of our checkpoints."""

_SDK_KEYS = ("format", "model", "num_classes", "names", "state_dict", "imgsz", "meta")
_PLAIN = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class LoadedModel:
    """A model read from a checkpoint.

    Attributes:
        model: the network, eval mode, fp32, on the requested device.
        name: zoo config name (``model.config`` may be its variant without the distillation branch).
        names: class names, ``len(names) == model.num_classes``.
        imgsz: square training/inference size in pixels (for official files, which do not record it, the model's
            official size: 1280 for P6, 640 otherwise).
        meta: the checkpoint's metadata (see the module docstring); ``meta["fused"]`` describes the file.
        source: "sdk" (our format) or "official" (a meituan/YOLOv6 release file).
        sha256: hex digest of the file.
        path: the file read.
    """

    model: YOLOv6
    name: str
    names: tuple[str, ...]
    imgsz: int
    meta: dict[str, Any]
    source: str
    sha256: str
    path: Path


# --------------------------------------------------------------------------------------------------- our format


def save_checkpoint(
    path: str | os.PathLike[str],
    model: YOLOv6,
    names: list[str] | None = None,
    imgsz: int | None = None,
    meta: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``model`` in our format to ``path`` atomically and return the path.

    Floating tensors are stored as fp32, or as fp16 with ``half=True`` (half the file size, as official release
    files do); :func:`load` always returns an fp32 model.

    The file appears complete or not at all: it is written to a temporary file in the same folder and moved into
    place with ``os.replace``. ``imgsz`` defaults to the model's official size (1280 for P6, 640 otherwise);
    ``names`` defaults to ``model.names``; ``meta`` may hold plain values only (str, int,
    float, bool, None, and lists/dicts of them), e.g. training epoch and mAP. The keys the SDK records itself
    (fused, distill_head, sdk_version, batchnorm) are always recomputed from the model.
    """
    path = Path(path)
    if not isinstance(model, YOLOv6):
        raise CheckpointError(
            f"save_checkpoint({str(path)!r}) expects a yolov6_sdk YOLOv6 model (from build_model or load), "
            f"got {type(model).__name__}"
        )
    zoo_name = _zoo_name(model.config)
    names = _check_names(list(model.names if names is None else names), model.num_classes)
    imgsz = model.config.imgsz if imgsz is None else imgsz
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz <= 0 or imgsz % max(model.strides):
        raise ConfigError(f"imgsz must be a positive multiple of {max(model.strides)} pixels, got {imgsz!r}")
    extra = dict(meta or {})
    _check_plain(extra, "meta")
    extra.update(
        fused=_is_fused(model),
        distill_head=model.config.distill_head,
        sdk_version=__version__,
        batchnorm=_batchnorm_overrides(model),
    )
    state = {
        key: value.detach().to(
            "cpu", (torch.float16 if half else torch.float32) if value.is_floating_point() else value.dtype
        )
        for key, value in model.state_dict().items()
    }
    checkpoint = {
        "format": FORMAT,
        "model": zoo_name,
        "num_classes": model.num_classes,
        "names": names,
        "state_dict": state,
        "imgsz": imgsz,
        "meta": extra,
    }
    _atomic_save(checkpoint, path)
    _LOG.info("saved %s (%s, %d classes, fused=%s)", path, zoo_name, model.num_classes, extra["fused"])
    return path


def load(path: str | os.PathLike[str], fuse: bool = False, device: str | torch.device = "cpu") -> LoadedModel:
    """Read our checkpoint or an official release ``.pt`` (detected from the content) and rebuild the model.

    ``fuse=True`` reparameterises an unfused model after loading (a fused file is always rebuilt fused). The model
    is returned in eval mode, fp32, on ``device``. Raises :class:`CheckpointError` for a missing, empty, truncated
    or foreign file, for one whose fields do not describe a zoo model, and for forbidden pickle content.
    """
    checked = open_checkpoint(path, is_official_global)  # the official allow-list includes the plain one
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from exc
    with refuse_deep_nesting(checked.path):
        if checked.is_plain:
            loaded = _from_sdk_checkpoint(checked, torch_load(checked, weights_only=True))
        else:  # pickled modules: an official release file, which only the restricted reader admits
            loaded = _from_official(checked)
    if fuse:
        fuse_model(loaded.model)
        check_fused_weights(loaded.model, str(checked.path))
    try:
        loaded.model.to(target)
    except (RuntimeError, AssertionError) as exc:  # torch asserts when built without the device's support
        raise ConfigError(f"cannot move the model to {target}: {exc}; pick an available device") from exc
    return loaded


def _from_sdk_checkpoint(checked: CheckpointFile, checkpoint: Any) -> LoadedModel:
    """Check every field of our format against the model it names, then build that model with the weights."""
    path = checked.path
    fields = _sdk_fields(path, checkpoint)
    try:
        config = get_config(fields["model"])
    except ConfigError as exc:
        raise CheckpointError(
            f"{path} holds model {shown(fields['model'])}, unknown to yolov6-sdk {__version__}: {exc}"
        ) from None
    meta = fields["meta"]
    config = replace(config, distill_head=meta.get("distill_head", config.distill_head))
    nc = fields["num_classes"]
    state = check_tensors(checked, fields["state_dict"], "state_dict")
    with torch.device("meta"):
        model = YOLOv6(config, nc, deploy=meta.get("fused", False))
    _check_layout(path, config.name, nc, state, model)
    imgsz = fields["imgsz"]
    if imgsz % max(model.strides):
        raise _field_error(path, "imgsz", f"a multiple of the largest stride {max(model.strides)}", imgsz)
    model.load_state_dict(_fp32(state), strict=True, assign=True)
    _apply_batchnorm(path, model, meta.get("batchnorm", {}))
    _check_batchnorm_statistics(path, model)
    model.names = fields["names"]
    model.eval()
    return LoadedModel(model, config.name, tuple(model.names), imgsz, meta, "sdk", checked.sha256, path)


def _sdk_fields(path: Path, checkpoint: Any) -> dict[str, Any]:
    """The fields of our format with their types checked (the tensors are checked against the model later)."""
    if not isinstance(checkpoint, dict) or "format" not in checkpoint:
        found = shown_keys(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is neither a yolov6-sdk checkpoint (no 'format' key) nor an official YOLOv6 release file "
            f"(no pickled model under 'ema' or 'model'); found {found}"
        )
    if not (isinstance(checkpoint["format"], str) and checkpoint["format"] == FORMAT):
        raise CheckpointError(
            f"{path} has format {shown(checkpoint['format'])}; this yolov6-sdk {__version__} reads {FORMAT!r}: "
            "upgrade yolov6-sdk or re-save the checkpoint with this version"
        )
    missing = [key for key in _SDK_KEYS if key not in checkpoint]
    unknown = shown_keys({key: None for key in checkpoint if key not in _SDK_KEYS}, count=5)
    if missing or unknown:
        found = f"without {missing}" if missing else f"with unknown fields {unknown[:5]}"
        raise CheckpointError(f"{path} is a {FORMAT} checkpoint {found}: it is damaged, save it again")
    nc = checkpoint["num_classes"]
    checks = {
        "model": (isinstance(checkpoint["model"], str), "a zoo model name (str)"),
        "num_classes": (_positive_int(nc), "a positive int"),
        "imgsz": (
            _positive_int(checkpoint["imgsz"]) and checkpoint["imgsz"] <= MAX_SIDE,
            f"a positive int up to {MAX_SIDE} (pixels)",
        ),
        "names": (_is_names(checkpoint["names"], nc), f"a list of {nc} class names (str)"),
        "meta": (isinstance(checkpoint["meta"], dict), "a dict"),
    }
    for field, (ok, expected) in checks.items():
        if not ok:
            raise _field_error(path, field, expected, checkpoint[field])
    meta = checkpoint["meta"]
    try:
        problem = _plain_problem(meta, "meta")
    except RecursionError:
        problem = "meta is nested too deeply"
    if problem:
        raise CheckpointError(f"{path}: {problem}; the file was altered: save it again with save_checkpoint")
    for key, kind in (("fused", bool), ("distill_head", bool), ("sdk_version", str), ("batchnorm", dict)):
        if key in meta and not isinstance(meta[key], kind):
            raise _field_error(path, f"meta[{key!r}]", f"a {kind.__name__}", meta[key])
    return checkpoint


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_names(names: Any, nc: Any) -> bool:
    return isinstance(names, list) and len(names) == nc and all(isinstance(name, str) for name in names)


def _field_error(path: Path, field: str, expected: str, got: Any) -> CheckpointError:
    shown = reprlib.repr(got) if isinstance(got, (str, int, float, bool, type(None))) else type(got).__name__
    if isinstance(got, (list, tuple, dict)):
        shown = f"{type(got).__name__} of {len(got)} items: {reprlib.repr(got)}"  # reprlib: bounded, any depth
    return CheckpointError(
        f"{path}: field {field!r} must be {expected}, got {shown}; the file was altered or written by other code: "
        "save it again with yolov6_sdk.save_checkpoint"
    )


def _check_layout(path: Path, name: str, nc: int, state: dict[str, torch.Tensor], model: YOLOv6) -> None:
    """The state_dict's keys and shapes must equal those of the model the fields describe."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    if found == expected:
        return
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    shapes = [
        f"{key} {list(found[key])} vs {list(expected[key])}"
        for key in expected
        if found.get(key, expected[key]) != expected[key]
    ]
    parts = [f"{label} ({len(keys)}): {', '.join(keys[:3])}" for label, keys in
             (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if keys]  # fmt: skip
    raise CheckpointError(
        f"{path}: field 'state_dict' does not fit {name} with {nc} classes ({'; '.join(parts)}); the file was "
        "altered or the fields were edited: save it again with yolov6_sdk.save_checkpoint"
    )


def _fp32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}


def _apply_batchnorm(path: Path, model: YOLOv6, settings: dict[str, Any]) -> None:
    """Set each named BatchNorm's ``[eps, momentum]`` (meta ``batchnorm``), checking names and values."""
    modules = dict(model.named_modules())
    for name, value in settings.items():
        ok = isinstance(modules.get(name), nn.BatchNorm2d) and isinstance(value, list) and len(value) == 2
        eps, momentum = value if ok else (None, None)
        if not (ok and valid_batchnorm_settings(eps, momentum)):
            raise _field_error(
                path, f"meta['batchnorm'][{name!r}]", "[eps > 0, momentum in [0, 1] or None] of a BatchNorm", value
            )
        modules[name].eps, modules[name].momentum = float(eps), momentum


def _from_official(checked: CheckpointFile) -> LoadedModel:
    """Build the model of an official release file from what :func:`~yolov6_sdk.official.read_official` read."""
    found = read_official(checked)
    with torch.device("meta"):
        model = YOLOv6(found.config, found.num_classes, deploy=found.fused)
    model.load_state_dict(_fp32(found.state_dict), strict=True, assign=True)
    modules = dict(model.named_modules())
    for name, (eps, momentum) in found.batchnorm.items():
        if isinstance(modules.get(name), nn.BatchNorm2d):
            modules[name].eps, modules[name].momentum = eps, momentum
    _check_batchnorm_statistics(checked.path, model)
    model.names = list(found.names)
    model.eval()
    meta = {
        "fused": found.fused,
        "distill_head": found.config.distill_head,
        "sdk_version": __version__,
        "batchnorm": _batchnorm_overrides(model),
        **found.meta,
    }
    return LoadedModel(
        model, found.config.name, tuple(found.names), found.config.imgsz, meta, "official", checked.sha256, checked.path
    )


def _check_batchnorm_statistics(path: Path, model: nn.Module) -> None:
    """Every BatchNorm's ``running_var`` must be >= 0: fusing divides by ``sqrt(running_var + eps)``, so a
    negative variance becomes NaN weights and a model that detects nothing."""
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d) and module.running_var is not None:
            negative = int((module.running_var < 0).sum())
            if negative:
                raise CheckpointError(
                    f"{path}: {name}.running_var holds {negative} negative values (a variance is >= 0); the file "
                    "was altered or damaged: use the weights of an earlier epoch or save them again"
                )


def check_fused_weights(model: nn.Module, source: str) -> None:
    """Raise unless every floating parameter and buffer of the fused ``model`` is finite.

    Fusing folds each BatchNorm into its convolution (weight * gamma / sqrt(running_var + eps)): statistics that
    were finite can still give Inf or NaN weights (a variance near -eps, a huge gamma), which detect nothing.
    ``source`` names the weights in the message.

    Raises:
        CheckpointError: naming the first tensor that is not finite.
    """
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{source}: fusing the model gives NaN or Inf values in {name}: its BatchNorm statistics are out "
                "of range (a variance of about -eps, or huge scales); use the weights of an earlier epoch or retrain"
            )


def _zoo_name(config: ModelConfig) -> str:
    """The zoo name of ``config``, which may differ from its zoo entry only by dropping the distillation branch."""
    zoo = ZOO.get(config.name)
    if zoo is None or replace(zoo, distill_head=config.distill_head) != config:
        raise CheckpointError(
            f"model config {config.name!r} is not a zoo config (or its variant without the distillation branch); "
            f"build the model with build_model() from one of: {', '.join(ZOO)}"
        )
    return config.name


def _check_names(names: list[Any], nc: int) -> list[str]:
    if len(names) != nc or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"names must be {nc} strings (one per class), got {len(names)} items: {names[:5]}...")
    return names


def _check_plain(value: Any, where: str) -> None:
    """Raise unless ``value`` is made of plain Python values that ``torch.load(weights_only=True)`` accepts."""
    problem = _plain_problem(value, where)
    if problem:
        raise ConfigError(f"{problem}: convert it, e.g. float(x)")


def _plain_problem(value: Any, where: str) -> str | None:
    """What keeps ``value`` from being plain str/int/float/bool/None values and lists/dicts of them, or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            problem = f"{where} keys must be strings, got {key!r}" if not isinstance(key, str) else None
            problem = problem or _plain_problem(item, f"{where}[{key!r}]")
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _plain_problem(item, f"{where}[{index}]")
            if problem:
                return problem
    elif not isinstance(value, _PLAIN):
        return (
            f"{where} is a {type(value).__module__}.{type(value).__name__}; checkpoint metadata takes plain "
            "str/int/float/bool/None values and lists/dicts of them"
        )
    return None


def _is_fused(model: nn.Module) -> bool:
    """True when no BatchNorm is left, i.e. every block has been reparameterised (or was built with deploy=True)."""
    return not any(isinstance(module, nn.BatchNorm2d) for module in model.modules())


def _batchnorm_overrides(model: YOLOv6) -> dict[str, list[float | None]]:
    """{module name: [eps, momentum]} for BatchNorms whose settings differ from a freshly built model's."""
    with torch.device("meta"):
        fresh = dict(YOLOv6(model.config, model.num_classes).named_modules())
    overrides = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            default = fresh.get(name)
            if default is None or (module.eps, module.momentum) != (default.eps, default.momentum):
                overrides[name] = [float(module.eps), module.momentum]
    return overrides


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save through :func:`~yolov6_sdk.fileio.atomic_path` (which fsyncs it before the rename)."""
    with atomic_path(path) as tmp, tmp.open("wb") as stream:
        torch.save(obj, stream)


def load_official(path: str | os.PathLike[str]) -> LoadedModel:
    """Read an official meituan/YOLOv6 release ``.pt`` (see :func:`yolov6_sdk.official.read_official`) and build
    its model on the CPU in eval mode, fp32, with each BatchNorm's own eps and momentum."""
    checked = open_checkpoint(path, is_official_global)
    with refuse_deep_nesting(checked.path):
        return _from_official(checked)
