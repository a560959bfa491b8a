"""Checking a torch ``.pt`` file before any unpickler touches it, so that reading it costs memory bounded by its size.

``torch.save`` writes a zip archive (``<root>/data.pkl``, the pickled object, plus one stored record
``<root>/data/<key>`` per tensor storage) or, in the legacy format, a run of pickles followed by the raw storages.
:func:`open_checkpoint` checks either layout from the bytes alone:

- zip: every entry is stored uncompressed, lies inside the file, and the entries sum to at most the file size, so no
  record can make torch allocate more than the file holds;
- the pickle is walked opcode by opcode (:mod:`yolov6_sdk.pickle_walk`: nothing is built, no global is imported),
  and every storage it references must exist with the size the tensor claims.

:func:`load_plain` then reads files made of tensors and plain containers with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import mmap
import numbers
import os
import reprlib
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from yolov6_sdk.errors import CheckpointError
from yolov6_sdk.pickle_walk import STORAGE_ITEMSIZE, AllowedGlobal, PickleWalk

_PLAIN_GLOBALS = frozenset(
    {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter")}
    | {("torch", "Size"), ("torch", "device")}
)
_DTYPE_NAMES = frozenset(name for name, value in vars(torch).items() if isinstance(value, torch.dtype))
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy torch.save file


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 3, 60, 60


def shown(value: Any) -> str:
    """A bounded ``repr`` of a plain value read from a file: deep nesting, long strings and containers are cut
    (a value nested 100,000 deep would exhaust the recursion limit of ``repr``)."""
    return _SHOWN.repr(value)


def shown_keys(mapping: dict[Any, Any], count: int = 10) -> list[str]:
    """The first ``count`` keys of ``mapping`` (sorted), each cut as :func:`shown` cuts values."""
    return sorted(key[:60] if isinstance(key, str) else shown(key) for key in mapping)[:count]


@contextlib.contextmanager
def refuse_deep_nesting(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a RecursionError met while reading or checking the checkpoint ``path`` into one CheckpointError."""
    try:
        yield
    except RecursionError:
        raise CheckpointError(
            f"{path}: its content is nested too deeply for a checkpoint (a crafted or damaged file); download or "
            "save it again"
        ) from None


def is_plain_global(module: str, name: str) -> bool:
    """True for the globals a pickle of tensors, dicts, lists and numbers needs (bounded and side-effect free)."""
    if module == "torch" and (name in STORAGE_ITEMSIZE or name in _DTYPE_NAMES):  # no getattr: it may import
        return True
    return (module, name) in _PLAIN_GLOBALS


def _no_globals(module: str, name: str) -> bool:
    return False


@dataclass(frozen=True)
class CheckpointFile:
    """A torch file whose structure passed :func:`open_checkpoint`.

    Attributes:
        path: the file.
        size: its size in bytes.
        sha256: hex digest of its bytes.
        layout: "zip" (torch >= 1.6) or "legacy".
        globals: every ``(module, name)`` its pickle references.
    """

    path: Path
    size: int
    sha256: str
    layout: str
    globals: frozenset[tuple[str, str]]

    @property
    def is_plain(self) -> bool:
        """True when the pickle holds only tensors and plain containers (``torch.load(weights_only=True)`` reads it)."""
        return all(is_plain_global(module, name) for module, name in self.globals)


def open_checkpoint(path: str | os.PathLike[str], allowed: AllowedGlobal = is_plain_global) -> CheckpointFile:
    """Check ``path`` as described in the module docstring and return what was found.

    Raises :class:`CheckpointError` naming the file, what is wrong and what to do, for a missing, empty, truncated,
    corrupt or oversized-claiming file, and for a pickle that references a global ``allowed`` refuses.
    """
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
        stream.seek(0)
        if head == b"PK\x03\x04":
            layout, found = "zip", _check_zip(path, stream, size, allowed)
        elif head[:1] == b"\x80":
            layout, found = "legacy", _check_legacy(path, stream, size, allowed)
        else:
            raise CheckpointError(
                f"{path} is not a torch checkpoint (it starts with {head!r}); expected a .pt written by torch.save"
            )
    return CheckpointFile(path, size, digest.hexdigest(), layout, frozenset(found))


def load_plain(path: str | os.PathLike[str]) -> Any:
    """Read a checkpoint made of tensors and plain containers (our formats, a training state) on the CPU.

    The file is checked with :func:`open_checkpoint` first (its walk names every global without importing any),
    then read with ``torch.load(weights_only=True)`` if it references plain globals only. Raises
    :class:`CheckpointError` for any file that cannot be read so.
    """
    checked = open_checkpoint(path, lambda module, name: True)  # refused below, before torch reads anything
    if not checked.is_plain:
        found = sorted(f"{module}.{name}" for module, name in checked.globals if not is_plain_global(module, name))
        raise CheckpointError(
            f"{checked.path} holds pickled Python objects ({', '.join(found[:3])}); this reader takes tensors and "
            "plain containers only: pass a checkpoint or training state that yolov6-sdk wrote"
        )
    with refuse_deep_nesting(checked.path):
        return torch_load(checked, weights_only=True)


def torch_load(checked: CheckpointFile, **kwargs: Any) -> Any:
    """``torch.load(checked.path, map_location="cpu", **kwargs)`` with every failure turned into one CheckpointError.

    torch's own advice to retry with ``weights_only=False`` is never repeated: for a file from elsewhere it would
    run whatever the pickle holds.
    """
    try:
        return torch.load(checked.path, map_location="cpu", **kwargs)
    except CheckpointError:
        raise
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, ValueError, EOFError, ... on bad bytes
        raise CheckpointError(
            f"{checked.path} cannot be read as a torch checkpoint ({type(exc).__name__}: {_torch_reason(exc)}); the "
            "file is truncated or corrupt: download or save it again"
        ) from None


def _torch_reason(exc: BaseException) -> str:
    """The part of a torch error that describes the file, without torch's advice about ``weights_only``."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    first = text.strip().splitlines()[0] if text.strip() else ""
    return "no details" if "weights_only" in first or not first else first[:200]


# ------------------------------------------------------------------------------------------------- zip layout


def _check_zip(path: Path, stream: IO[bytes], size: int, allowed: AllowedGlobal) -> set[tuple[str, str]]:
    """Check the archive's directory against the file, then the pickle and the storages it references."""
    try:
        archive = zipfile.ZipFile(stream)
        entries = archive.infolist()
        records = {entry.filename: entry for entry in entries}
        if len(records) != len(entries):
            raise CheckpointError(
                f"{path} is a damaged torch archive (duplicate entry names): download or save it again"
            )
        total = 0
        for entry in entries:
            _check_entry(path, stream, size, entry)
            total += entry.file_size
        if total > size:
            raise CheckpointError(f"{path} declares {total} bytes of content in a {size}-byte file: it is corrupt")
        pickles = [name for name in records if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{path} is a zip but not a torch checkpoint (no single <root>/data.pkl entry)")
        root = pickles[0][: -len("data.pkl")]
        if not all(name.startswith(root) for name in records):  # torch reads records under the first entry's folder
            raise CheckpointError(f"{path} is a zip but not a torch checkpoint (entries outside {root})")
        data = archive.read(pickles[0])  # stored, at most the file's size; zipfile checks its CRC
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error) as exc:
        raise CheckpointError(
            f"{path} is a damaged torch archive ({type(exc).__name__}: {exc}); the file is truncated or corrupt: "
            "download or save it again"
        ) from None
    found = PickleWalk(path, allowed)
    found.run(io.BytesIO(data), len(data))
    for key, nbytes in found.storages.items():
        entry = records.get(f"{root}data/{key}")
        if entry is None or entry.file_size != nbytes:
            stored = "missing" if entry is None else f"{entry.file_size} bytes"
            raise CheckpointError(
                f"{path}: tensor storage {key!r} should hold {nbytes} bytes but its record is {stored}; the file is "
                "corrupt: download or save it again"
            )
    return found.globals


def _check_entry(path: Path, stream: IO[bytes], size: int, entry: zipfile.ZipInfo) -> None:
    """An entry must be stored (torch never compresses) and its local header and bytes must lie inside the file."""
    if entry.compress_type != zipfile.ZIP_STORED or entry.compress_size != entry.file_size:
        raise CheckpointError(
            f"{path}: entry {entry.filename!r} is compressed ({entry.file_size} bytes from {entry.compress_size}); "
            "torch.save stores entries uncompressed, so the file was altered: download or save it again"
        )
    stream.seek(entry.header_offset)
    header = stream.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise CheckpointError(f"{path}: entry {entry.filename!r} has no local header: the file is truncated or corrupt")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    end = entry.header_offset + 30 + name_length + extra_length + entry.compress_size
    if end > size:
        raise CheckpointError(
            f"{path}: entry {entry.filename!r} ends at byte {end} of a {size}-byte file: the file is truncated; "
            "download or save it again"
        )


# ---------------------------------------------------------------------------------------------- legacy layout


def _check_legacy(path: Path, stream: IO[bytes], size: int, allowed: AllowedGlobal) -> set[tuple[str, str]]:
    """Legacy files: magic, protocol and system-info pickles, the object pickle, the storage-key list, then for
    each key an 8-byte element count followed by the storage's bytes. Walked through a read-only map, whose reads
    never allocate more than the file holds."""
    with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        magic = PickleWalk(path, _no_globals).run(mapped, size)
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(
                f"{path} is not a torch checkpoint (no torch magic number): expected a torch.save file"
            )
        for _ in ("protocol version", "system info"):
            PickleWalk(path, _no_globals).run(mapped, size)
        found = PickleWalk(path, allowed)
        found.run(mapped, size)
        keys = PickleWalk(path, _no_globals, keep_lists=True).run(mapped, size)
        position = mapped.tell()
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys) or set(keys) != set(found.storages):
        raise CheckpointError(f"{path}: the storage list does not match the tensors: the file is corrupt")
    for key in keys:
        position += 8 + found.storages[key]
    if position > size:
        raise CheckpointError(
            f"{path}: the tensors need {position} bytes but the file has {size}: it is truncated; download it again"
        )
    return found.globals


# ---------------------------------------------------------------------------------------------- tensor checks


def valid_batchnorm_settings(eps: Any, momentum: Any) -> bool:
    """True for a BatchNorm's ``eps`` > 0 and ``momentum`` in [0, 1] or None, both finite reals (not bools)."""

    def real(value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)

    return real(eps) and eps > 0 and (momentum is None or (real(momentum) and 0 <= momentum <= 1))


def check_tensors(checked: CheckpointFile, tensors: Any, field: str) -> dict[str, torch.Tensor]:
    """Return ``tensors`` if it maps names to dense, finite CPU tensors whose bytes the file holds, else raise.

    Floating tensors must be finite (a NaN or Inf weight gives silent garbage at inference); integer tensors are
    int64 (BatchNorm ``num_batches_tracked``). Every tensor must own its elements (contiguous, inside its storage),
    and all together take at most the file's size, so that converting them costs memory bounded by the file.
    """
    path = checked.path
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{path}: field {field!r} must map names to tensors, got {type(tensors).__name__}")
    total = 0
    for key, value in tensors.items():
        where = f"{field}[{shown(key)}]"
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            got = type(key).__name__ if not isinstance(key, str) else type(value).__name__
            raise CheckpointError(f"{path}: {field} must map str names to tensors, found a {got} at {where}")
        if not (value.dtype.is_floating_point or value.dtype == torch.int64):
            raise CheckpointError(f"{path}: {where} has dtype {value.dtype}; weights are floating point or int64")
        if value.layout != torch.strided or value.device.type != "cpu" or not _owns_elements(value):
            raise CheckpointError(
                f"{path}: {where} is not a dense tensor inside its storage (shape {list(value.shape)}, strides "
                f"{list(value.stride())}); the file was altered: download or save it again"
            )
        total += value.numel() * value.element_size()
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{path}: {where} holds NaN or Inf values; a model with them detects nothing: use the weights "
                "of an earlier epoch or retrain"
            )
    if total > checked.size:
        raise CheckpointError(
            f"{path}: {field} describes {total} bytes of tensors in a {checked.size}-byte file; tensors share "
            "storage in a way torch.save never writes: download or save it again"
        )
    return tensors


def _owns_elements(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` is contiguous and its elements lie inside its storage (no stride-0 or overlapping view)."""
    end = (tensor.storage_offset() + tensor.numel()) * tensor.element_size()
    return tensor.is_contiguous() and end <= tensor.untyped_storage().nbytes()
