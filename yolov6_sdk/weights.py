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
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolov6_sdk import __version__
from yolov6_sdk.errors import CheckpointError, ConfigError
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.models import ZOO, ModelConfig, YOLOv6, get_config
from yolov6_sdk.models import fuse as fuse_model
from yolov6_sdk.official import read_official

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
        imgsz: square training/inference size in pixels (640 for official files, which do not record it).
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
    imgsz: int = 640,
    meta: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``model`` in our format to ``path`` atomically and return the path.

    Floating tensors are stored as fp32, or as fp16 with ``half=True`` (half the file size, as official release
    files do); :func:`load` always returns an fp32 model.

    The file appears complete or not at all: it is written to a temporary file in the same folder and moved into
    place with ``os.replace``. ``names`` defaults to ``model.names``; ``meta`` may hold plain values only (str, int,
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
    or foreign file.
    """
    path, digest = _check_file(path)
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from exc
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Not plain data: an official release file holds pickled modules, which only the restricted reader admits.
        loaded = _from_official(path, digest)
    except Exception as exc:
        raise CheckpointError.unreadable(path, exc) from exc
    else:
        loaded = _from_sdk_checkpoint(path, digest, checkpoint)
    if fuse:
        fuse_model(loaded.model)
    try:
        loaded.model.to(target)
    except (RuntimeError, AssertionError) as exc:  # torch asserts when built without the device's support
        raise ConfigError(f"cannot move the model to {target}: {exc}; pick an available device") from exc
    return loaded


def _from_sdk_checkpoint(path: Path, digest: str, checkpoint: Any) -> LoadedModel:
    if not isinstance(checkpoint, dict) or "format" not in checkpoint:
        found = sorted(map(str, checkpoint))[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is neither a yolov6-sdk checkpoint (no 'format' key) nor an official YOLOv6 release file "
            f"(no pickled model under 'ema' or 'model'); found {found}"
        )
    if checkpoint["format"] != FORMAT:
        raise CheckpointError(
            f"{path} has format {checkpoint['format']!r}; this yolov6-sdk {__version__} reads {FORMAT!r}: "
            "upgrade yolov6-sdk or re-save the checkpoint with this version"
        )
    missing = [key for key in _SDK_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} is a {FORMAT} checkpoint without {missing}: it is damaged, save it again")
    try:
        config = get_config(checkpoint["model"])
    except ConfigError as exc:
        raise CheckpointError(
            f"{path} holds model {checkpoint['model']!r}, unknown to yolov6-sdk {__version__}: {exc}"
        ) from None
    meta = dict(checkpoint["meta"])
    config = replace(config, distill_head=bool(meta.get("distill_head", config.distill_head)))
    nc = checkpoint["num_classes"]
    try:
        model = _build_with_weights(config, nc, bool(meta.get("fused", False)), checkpoint["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {config.name} with {nc} classes: {exc}") from exc
    for name, (eps, momentum) in meta.get("batchnorm", {}).items():
        batchnorm = model.get_submodule(name)
        batchnorm.eps, batchnorm.momentum = eps, momentum
    names = _check_names(list(checkpoint["names"]), nc)
    model.names = names
    model.eval()
    return LoadedModel(model, config.name, tuple(names), checkpoint["imgsz"], meta, "sdk", digest, path)


def _from_official(path: Path, digest: str) -> LoadedModel:
    """Build the model of an official release file from what :func:`~yolov6_sdk.official.read_official` read."""
    found = read_official(path)
    model = _build_with_weights(found.config, found.num_classes, found.fused, found.state_dict)
    modules = dict(model.named_modules())
    for name, (eps, momentum) in found.batchnorm.items():
        if isinstance(modules.get(name), nn.BatchNorm2d):
            modules[name].eps, modules[name].momentum = eps, momentum
    model.names = list(found.names)
    model.eval()
    meta = {
        "fused": found.fused,
        "distill_head": found.config.distill_head,
        "sdk_version": __version__,
        "batchnorm": _batchnorm_overrides(model),
        **found.meta,
    }
    return LoadedModel(model, found.config.name, tuple(found.names), 640, meta, "official", digest, path)


def _build_with_weights(config: ModelConfig, nc: int, deploy: bool, state: dict[str, torch.Tensor]) -> YOLOv6:
    """Build on the meta device (no initialisation cost) and adopt ``state``, as fp32, with strict key checks."""
    with torch.device("meta"):
        model = YOLOv6(config, nc, deploy=deploy)
    fp32 = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    model.load_state_dict(fp32, strict=True, assign=True)
    return model


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
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where} keys must be strings, got {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN):
        raise ConfigError(
            f"{where} is a {type(value).__module__}.{type(value).__name__}; checkpoint metadata takes plain "
            "str/int/float/bool/None values and lists/dicts of them: convert it, e.g. float(x)"
        )


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
    """torch.save through :func:`~yolov6_sdk.fileio.atomic_path`, flushed to disk before the rename."""
    with atomic_path(path) as tmp, tmp.open("wb") as stream:
        torch.save(obj, stream)
        stream.flush()
        os.fsync(stream.fileno())


# ------------------------------------------------------------------------------------------------ file checks


def _check_file(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Resolve ``path``, reject missing/empty/non-torch files, and return it with its sha256."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file): check the path")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the download or save was interrupted; redo it")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        head = stream.read(4)
        stream.seek(0)
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    # torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle (protocol 2+ opcode).
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{path} is not a torch checkpoint (it starts with {head!r}); expected a .pt written by torch.save"
        )
    return path, digest.hexdigest()


def load_official(path: str | os.PathLike[str]) -> LoadedModel:
    """Read an official meituan/YOLOv6 release ``.pt`` (see :func:`yolov6_sdk.official.read_official`) and build
    its model on the CPU in eval mode, fp32, with each BatchNorm's own eps and momentum."""
    path, digest = _check_file(path)
    return _from_official(path, digest)
