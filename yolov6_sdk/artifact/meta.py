"""What every artifact records (:class:`ArtifactMeta`): one typed record, one writer per format, one reader.

Each field's name is its key in every format, spelled only here:

* ONNX ``metadata_props`` and OpenVINO IR ``rt_info`` (:meth:`ArtifactMeta.to_props`): one entry per recorded
  field, JSON-encoded (strings kept as they are); each source hash is an entry of its own named ``*sha256``, and
  the ``extra`` entries sit beside the fields.
* the sidecar ``.json`` (:meth:`ArtifactMeta.to_record`): the fields at the top level, ``source_hashes`` and
  ``extra`` as objects (:mod:`yolov6_sdk.artifact.sidecar` adds what the build machine was).

:func:`read_meta` is the one reader. Everything it reads comes from a file and is treated as untrusted input:
JSON is parsed with size, depth and digit limits (:func:`bounded_json`), every field is checked against its
type, and image sizes and dynamic ranges obey the same rule as sizes the user gives
(:func:`~yolov6_sdk.artifact.preprocess.check_imgsz`) before anything is allocated for them. A violation is one
:class:`~yolov6_sdk.errors.ArtifactError` naming the file and saying to rebuild it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from yolov6_sdk.artifact.preprocess import MAX_SIDE
from yolov6_sdk.artifact.spec import NMS_MODES, PRECISIONS, NmsMode, Precision
from yolov6_sdk.errors import ArtifactError

MAX_JSON_CHARS = 4 << 20  # a sidecar or one metadata value; an SDK sidecar with 1000 class names is ~30 kB
MAX_JSON_DEPTH = 16  # the deepest SDK record (a sidecar's I/O specs) is 4 levels
MAX_INT_DIGITS = 20  # int64 has 19
MAX_CLASSES = 10_000
MAX_DETECTIONS = 100_000
MAX_LAYERS = 10_000
HASH_SUFFIX = "sha256"  # metadata_props keys of source hashes end with it

_REBUILD = "rebuild or re-export the artifact with yolov6-build"


# ------------------------------------------------------------------------- field checks (values read from files)


def _str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError("must be a string")
    if len(str(value)) > 1024:
        raise ValueError("must be at most 1024 characters long")
    return str(value)


def _bool(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


def _int(low: int, high: int) -> Callable[[Any], int | None]:
    def check(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer in {low}..{high}")
        return value

    return check


def _fraction(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError("must be a number in 0..1")
    return float(value)


def _size(value: Any) -> tuple[int, int] | None:
    """An (H, W) in pixels, bounded as user-given sizes are (:data:`~yolov6_sdk.artifact.preprocess.MAX_SIDE`)."""
    if value is None:
        return None
    sides = list(value) if isinstance(value, (list, tuple)) else []
    if len(sides) != 2 or not all(type(side) is int and 1 <= side <= MAX_SIDE for side in sides):
        raise ValueError(f"must be [height, width], integers in 1..{MAX_SIDE} (pixels)")
    return sides[0], sides[1]


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, Mapping):  # {"0": "person", ...}
        if not all(isinstance(key, str) and key.isdigit() and len(key) < 6 for key in value):
            raise ValueError("must be a list of class names or a {id: name} map")
        value = [value[key] for key in sorted(value, key=int)]
    if not isinstance(value, (list, tuple)):
        raise TypeError("must be a list of class names")
    if len(value) > MAX_CLASSES:
        raise ValueError(f"must hold at most {MAX_CLASSES} classes")
    return tuple(_str(name) for name in value)


def _strides(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > 8:
        raise TypeError("must be a list of at most 8 strides")
    return tuple(_int(1, MAX_SIDE)(stride) for stride in value)  # type: ignore[misc]


def _choice(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is not None and value not in options:
            raise ValueError(f"must be one of {', '.join(repr(option) for option in options)}")
        return value

    return check


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError("must be an object")
    return {str(key): item for key, item in value.items()}


def _hash_map(value: Any) -> dict[str, str]:
    return {key: _str(digest) for key, digest in _mapping(value).items()}


def _hash_key(name: str) -> str:
    return name if name.endswith(HASH_SUFFIX) else f"{name}_{HASH_SUFFIX}"


def _layers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LAYERS:
        raise TypeError(f"must be a list of at most {MAX_LAYERS} layer names")
    return tuple(_str(name) for name in value)


def _calibration_images(value: Any) -> int:
    return _int(0, 1 << 31)(value) or 0


def _dynamic_hw(value: Any) -> bool:
    return bool(_bool(value))


def _field(default: Any, check: Callable[[Any], Any]) -> Any:
    """A record field with its default and the check :func:`read_meta` applies to a value read from a file."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class ArtifactMeta:
    """What an artifact records about itself; every field is optional (a graph from elsewhere records none).

    Attributes:
        model: zoo name, e.g. "yolov6n".
        names: class names, index = class id.
        num_classes: number of classes of the model.
        imgsz: (H, W) input size in pixels the model was exported at (its scale).
        strides: output strides, e.g. (8, 16, 32).
        precision: "fp32", "fp16", "bf16" or "int8"; None when unrecorded.
        dynamic_batch, batch: the batch axis is symbolic; the batch of a static export (and of the tracing input).
        dynamic_hw: input height and width are symbolic (rectangular inference), served from ``imgsz_min`` to
            ``imgsz_max`` (H, W).
        end2end: NMS inside the graph: "ort", "trt", or "" (raw output).
        multi_label: NMS semantics (see :meth:`multi_label_or`); None when unrecorded.
        conf, iou, max_det: the NMS settings an end-to-end graph was exported with.
        calibration_method, calibration_images: how an int8 artifact was calibrated ("qat": trained ranges).
        quant_target: what an int8 artifact was quantised for ("onnxruntime-cpu", "tensorrt").
        float_layers: module paths of the layers an int8 artifact keeps in float.
        source_hashes: name -> sha256 hex digest of what the artifact was made from.
        sdk_version, producer: who wrote it ("yolov6-sdk").
        extra: anything else recorded (build key, quantisation target, ...).
    """

    model: str = _field("", _str)
    names: tuple[str, ...] = _field((), _names)
    num_classes: int | None = _field(None, _int(1, MAX_CLASSES))
    imgsz: tuple[int, int] | None = _field(None, _size)
    strides: tuple[int, ...] = _field((), _strides)
    precision: Precision | None = _field(None, _choice(PRECISIONS))
    dynamic_batch: bool | None = _field(None, _bool)
    batch: int | None = _field(None, _int(1, 1 << 16))
    dynamic_hw: bool = _field(False, _dynamic_hw)
    imgsz_min: tuple[int, int] | None = _field(None, _size)
    imgsz_max: tuple[int, int] | None = _field(None, _size)
    end2end: NmsMode | Literal[""] = _field("", _choice(("", *NMS_MODES)))
    multi_label: bool | None = _field(None, _bool)
    conf: float | None = _field(None, _fraction)
    iou: float | None = _field(None, _fraction)
    max_det: int | None = _field(None, _int(1, MAX_DETECTIONS))
    calibration_method: str = _field("", _str)
    calibration_images: int = _field(0, _calibration_images)
    quant_target: str = _field("", _str)
    float_layers: tuple[str, ...] = _field((), _layers)
    source_hashes: Mapping[str, str] = field(default_factory=dict)
    sdk_version: str = _field("", _str)
    producer: str = _field("", _str)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        """The artifact records SDK metadata (a model name, class names or an input size)."""
        return bool(self.model or self.names or self.imgsz)

    def multi_label_or(self, end2end: bool) -> bool:
        """The NMS semantics: True, a box may come out once per class scoring above conf (COCO evaluation);
        False, each box keeps only its best class (detection). An artifact from before the field reads as the
        old behaviour of its kind: ``end2end`` (NMS in the graph ran over every class) True, raw False."""
        return end2end if self.multi_label is None else self.multi_label

    def to_values(self) -> dict[str, Any]:
        """Flat plain values of the recorded fields, source hashes and extra entries (what :meth:`to_props`
        encodes); unrecorded fields (None, empty) are left out."""
        values: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in ("source_hashes", "extra") or value == item.default:
                continue
            values[item.name] = list(value) if isinstance(value, tuple) else value
        values.update({_hash_key(name): digest for name, digest in self.source_hashes.items()})
        values.update(self.extra)
        return values

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` / IR ``rt_info`` writer: key -> JSON text (strings kept as they are)."""
        return {key: value if isinstance(value, str) else json.dumps(value) for key, value in self.to_values().items()}

    def to_record(self) -> dict[str, Any]:
        """The sidecar writer: every field, tuples as lists."""
        record = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in record.items()}

    def updated(self, values: Mapping[str, Any], where: str) -> ArtifactMeta:
        """This record with ``values`` (flat, as in :meth:`to_values`) set over it, checked by :func:`read_meta`."""
        return read_meta({**self.to_values(), **values}, where)


FIELDS = tuple(item.name for item in dataclasses.fields(ArtifactMeta))
_CHECKS = {item.name: item.metadata["check"] for item in dataclasses.fields(ArtifactMeta) if "check" in item.metadata}


# ---------------------------------------------------------------------------------------------------- reading


class _Refused(ValueError):
    """A JSON text over a limit (as opposed to text that is not JSON at all)."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(text: str) -> float:
    raise _Refused(f"{text} is not a number JSON allows")


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON (a scalar is 0), without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, level = pending.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, level + 1) for child in children)
    return deepest


def _loads(text: str) -> Any:
    """``json.loads`` within the limits; raises :class:`_Refused` over a limit, ``JSONDecodeError`` for text
    that is not JSON."""
    if len(text) > MAX_JSON_CHARS:
        raise _Refused(f"{len(text)} characters (at most {MAX_JSON_CHARS})")
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError as exc:
        raise _Refused(f"nested deeper than {MAX_JSON_DEPTH} levels") from exc
    if _depth(value) > MAX_JSON_DEPTH:
        raise _Refused(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def bounded_json(text: str, where: str) -> Any:
    """Parse JSON ``text`` read from the file ``where``, refusing what no SDK record holds: more than
    :data:`MAX_JSON_CHARS` characters, nesting deeper than :data:`MAX_JSON_DEPTH`, integers longer than
    :data:`MAX_INT_DIGITS` digits, NaN / Infinity.

    Raises:
        ArtifactError: not JSON, or over a limit.
    """
    try:
        return _loads(text)
    except ValueError as exc:  # _Refused and JSONDecodeError
        raise ArtifactError(f"{where}: not a readable SDK record ({exc}); {_REBUILD}") from None


def decode_props(pairs: Mapping[str, str], where: str) -> dict[str, Any]:
    """JSON-decode ``metadata_props`` / ``rt_info`` values as :meth:`ArtifactMeta.to_props` encodes them; a value
    that is not JSON stays the string it is.

    Raises:
        ArtifactError: a value over a limit of :func:`bounded_json`.
    """
    decoded: dict[str, Any] = {}
    for key, text in pairs.items():
        try:
            decoded[key] = _loads(text)
        except _Refused as exc:
            raise ArtifactError(f"{where}: metadata entry {key[:64]!r} is {exc}; {_REBUILD}") from None
        except json.JSONDecodeError:
            decoded[key] = text
    return decoded


def read_meta(values: Mapping[str, Any], where: str) -> ArtifactMeta:
    """The one reader: the :class:`ArtifactMeta` of decoded ``values`` read from the file ``where`` (ONNX metadata,
    IR rt_info or a sidecar's fields). Keys that are not fields: ``*sha256`` ones become source hashes, the others
    ``extra`` entries.

    Raises:
        ArtifactError: a field of the wrong type or out of bounds; the message names the file, the field and the fix.
    """
    known: dict[str, Any] = {}
    hashes = dict(_check("source_hashes", values.get("source_hashes", {}), _hash_map, where))
    extra = dict(_check("extra", values.get("extra", {}), _mapping, where))
    for key, value in values.items():
        if key in ("source_hashes", "extra"):
            continue
        if key in _CHECKS:
            known[key] = _check(key, value, _CHECKS[key], where)
        elif str(key).endswith(HASH_SUFFIX) and isinstance(value, str):
            hashes[str(key)] = value
        else:
            extra[str(key)] = value
    meta = ArtifactMeta(**{k: v for k, v in known.items() if v is not None}, source_hashes=hashes, extra=extra)
    _check_range(meta, where)
    return meta


def _check(key: str, value: Any, check: Callable[[Any], Any], where: str) -> Any:
    try:
        return check(value)
    except (TypeError, ValueError, OverflowError) as exc:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise ArtifactError(f"{where}: recorded {key} {exc}, got {shown}; {_REBUILD}") from None


def _check_range(meta: ArtifactMeta, where: str) -> None:
    low, high = meta.imgsz_min, meta.imgsz_max
    if low is not None and high is not None and (low[0] > high[0] or low[1] > high[1]):
        raise ArtifactError(f"{where}: recorded imgsz_min {low} is larger than imgsz_max {high}; {_REBUILD}")


# ------------------------------------------------------------------------------------------------------- ONNX


def onnx_meta(proto: Any, where: str) -> ArtifactMeta:
    """The ONNX reader: the :class:`ArtifactMeta` in an ``onnx.ModelProto``'s ``metadata_props``."""
    return read_meta(decode_props({prop.key: prop.value for prop in proto.metadata_props}, where), where)


def write_onnx_meta(proto: Any, meta: ArtifactMeta) -> None:
    """The ONNX writer: replace the ``metadata_props`` of an ``onnx.ModelProto`` by ``meta``'s."""
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)


__all__ = [
    "FIELDS",
    "ArtifactMeta",
    "bounded_json",
    "decode_props",
    "onnx_meta",
    "read_meta",
    "write_onnx_meta",
]
