"""Every option of a build, once: :class:`BuildOptions`, each field with its default, its help and its check.

The ``yolov6-build`` parser is generated from these fields (:func:`yolov6_sdk.cli.build` reads ``help``,
``group``, ``flags`` and the argparse settings in ``cli`` from each field's metadata), the library takes the
same record (``plan_build(BuildOptions(weights="best.pt", precision="int8"))``), and the plan carries it.

A field's ``check`` takes the value as given and returns it normalised (a path as :class:`~pathlib.Path`, a
list as a tuple, ``imgsz`` as ``(h, w)``), or raises :class:`~yolov6_sdk.errors.ConfigError` naming the
option; checks between options that need nothing but the options run after them. What needs the source or
the machine (a file's content, the backend ``auto`` resolves to) is checked by
:func:`yolov6_sdk.export.plan.plan_build`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from yolov6_sdk.artifact.preprocess import check_imgsz
from yolov6_sdk.artifact.spec import BUILD_BACKENDS, BUILD_SUFFIXES, PRECISIONS
from yolov6_sdk.artifact.trt_compat import HARDWARE_LEVELS
from yolov6_sdk.errors import ConfigError

DEFAULT_OPSET = 13  # ONNX opset of an export from a checkpoint, and the oldest one accepted
DEFAULT_WORKSPACE_GIB = 4.0  # TensorRT builder workspace memory pool limit
DEFAULT_CALIB_SIZE = 500  # calibration images used, evenly sampled from the folder
CALIB_METHODS = ("minmax", "entropy", "percentile")  # how int8 activation ranges are chosen
HARDWARE_COMPAT = ("none", *HARDWARE_LEVELS)  # TensorRT hardware-compatibility levels of an engine

Check = Callable[[Any], Any]
"""``check(value) -> checked value``; raises ConfigError naming the option."""


def _option(default: Any, help: str, check: Check | None = None, group: str = "artifact",
            flags: tuple[str, ...] = (), **cli: Any) -> Any:  # fmt: skip
    """A :class:`BuildOptions` field: ``help`` (without the default, which the CLI appends), ``check``,
    the CLI ``group`` and ``flags`` (default ``--<name>``), and argparse settings (``type``, ``nargs``,
    ``metavar``, ``choices``; a bool becomes a switch)."""
    return field(default=default, metadata={"help": help, "check": check, "group": group, "flags": flags, "cli": cli})


def _path(name: str, optional: bool = True) -> Check:
    def check(value: Any) -> Path | None:
        if value is None and optional:
            return None
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"{name} takes a path, got {value!r}")
        return Path(value)

    return check


def _switch(name: str, optional: bool = False) -> Check:
    def check(value: Any) -> bool | None:
        if not isinstance(value, bool) and not (optional and value is None):
            raise ConfigError(f"{name} must be True{', False or None' if optional else ' or False'}, got {value!r}")
        return value

    return check


def _choice(name: str, choices: Sequence[str]) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def _text(name: str) -> Check:
    def check(value: Any) -> str | None:
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{name} takes a non-empty name, got {value!r}")
        return value

    return check


def _count(name: str) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} takes a positive number of images, got {value!r}")
        return value

    return check


def _number(name: str, low: float, high: float | None = None, above: bool = False) -> Check:
    """A float from ``low`` (excluded when ``above``) up to ``high`` (excluded); None passes (the option then has
    its own default)."""

    def check(value: Any) -> float | None:
        if value is None:
            return None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        too_low = number and (value <= low if above else value < low)
        if not number or too_low or (high is not None and not value < high):
            bound = f"{'>' if above else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
            raise ConfigError(f"{name} takes a number {bound}, got {value!r}")
        return float(value)

    return check


def check_batches(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    """The ``--batch`` list as a tuple of positive ints."""
    sizes = tuple(batch_sizes) if isinstance(batch_sizes, Sequence) else (batch_sizes,)
    if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in sizes):
        raise ConfigError(f"--batch takes positive batch sizes, got {list(sizes)}; e.g. --batch 1 32")
    return sizes


def _imgsz(value: Any) -> tuple[int, int] | None:
    """None (the source's own size), or H [W] as ``(h, w)``: one image-size rule, the contract's."""
    if value is None:
        return None
    if isinstance(value, Sequence) and len(value) == 1:
        value = value[0]
    return check_imgsz(value)


def _exclude(value: Any) -> tuple[str, ...]:
    excludes = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(name, str) and name for name in excludes):
        raise ConfigError(f"--exclude takes layer names or 'auto', got {list(excludes)}")
    if "auto" in excludes and len(excludes) > 1:
        raise ConfigError(f"--exclude takes 'auto' or layer names, not both: {list(excludes)}")
    return excludes


def _opset(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < DEFAULT_OPSET):
        raise ConfigError(f"--opset must be {DEFAULT_OPSET} or newer, got {value}")
    return value


@dataclass(frozen=True)
class BuildOptions:
    """What ``yolov6-build`` is asked to make; each field's help and check are in its metadata (``--help``).

    Construct it with keywords (``BuildOptions(weights="best.pt", precision="int8", calib="calib/")``); values
    are checked and normalised on construction, ConfigError names a bad one.
    """

    weights: Path | None = _option(
        None,
        "checkpoint (.pt, SDK or official); default weights/yolov6n-shapes.pt",
        _path("--weights"),
        "source",
        metavar="PT",
        type=Path,
    )
    onnx: Path | None = _option(
        None, "an fp32 ONNX export (or a QAT Q/DQ export) instead of a checkpoint", _path("--onnx"), "source", type=Path
    )
    qat: Path | None = _option(
        None,
        "a yolov6-train --qat checkpoint: int8 from its trained ranges, no calibration",
        _path("--qat"),
        "source",
        metavar="CKPT",
        type=Path,
    )
    model: str | None = _option(
        None, "zoo name (with --random-weights; checked against the checkpoint otherwise)", _text("--model"), "source"
    )
    random_weights: bool = _option(False, "untrained network, for timing only", _switch("random_weights"), "source")
    precision: str = _option(
        "fp32",
        "numeric precision of the artifact; int8 calibrates on --calib",
        _choice("precision", PRECISIONS),
        choices=PRECISIONS,
    )
    backend: str = _option(
        "auto",
        "runtime the artifact is for: "
        + ", ".join(f"{backend} ({suffix})" for backend, suffix in BUILD_SUFFIXES.items())
        + "; auto: tensorrt when TensorRT and a GPU are here, else onnxruntime",
        _choice("backend", ("auto", *BUILD_BACKENDS)),
        choices=("auto", *BUILD_BACKENDS),
    )
    batch_sizes: tuple[int, ...] = _option(
        (1,),
        "batch sizes to serve: N, or MIN [OPT] MAX for a TensorRT profile",
        check_batches,
        flags=("--batch", "--bs"),
        type=int,
        nargs="+",
        metavar="N",
    )
    imgsz: tuple[int, int] | None = _option(
        None,
        "H [W], multiples of 32 (default: the checkpoint's training size, else 640)",
        _imgsz,
        type=int,
        nargs="+",
        metavar="PX",
    )
    end2end: bool = _option(False, "NMS inside the graph (EfficientNMS outputs)", _switch("end2end"))
    multi_label: bool | None = _option(
        None,
        "NMS keeps a box once per class above conf (COCO evaluation); default: "
        "each box's best class only (an --onnx source keeps what it records)",
        _switch("multi_label", optional=True),
    )
    dynamic_hw: bool = _option(
        False,
        "dynamic input height and width up to --imgsz: the Detector letterboxes each "
        "batch to the smallest multiple-of-32 rectangle (a 640x480 picture runs on 480x640); "
        "TensorRT gets a min/opt/max profile (an --onnx source keeps what it records)",
        _switch("dynamic_hw"),
    )
    output: Path = _option(
        Path("engines"),
        "output folder",
        _path("--output", optional=False),
        flags=("-o", "--output"),
        type=Path,
        metavar="DIR",
    )
    name: str | None = _option(
        None,
        "artifact file name in the output folder, suffix optional (default: from what "
        "it holds, e.g. yolov6n-3f2a9c1d-640-int8.onnx: model, weights digest, imgsz, "
        "precision[, batch profile][, NMS][, -ml])",
        _text("--name"),
    )
    force: bool = _option(False, "replace an existing artifact of that name built from other weights", _switch("force"))
    workspace_gib: float | None = _option(
        None,
        f"builder workspace memory pool limit in GiB (default {DEFAULT_WORKSPACE_GIB:g})",
        _number("--workspace", 0.0, above=True),
        "tensorrt",
        flags=("--workspace",),
        type=float,
        metavar="GIB",
    )
    timing_cache: Path | None = _option(
        None,
        "timing cache to read and update (default: timing-trt<version>-sm<cc>-<gpu>.cache beside the engine)",
        _path("--timing-cache"),
        "tensorrt",
        type=Path,
        metavar="FILE",
    )
    hardware_compat: str = _option(
        "none",
        "engine runs on other GPUs too: ampere_plus (any Ampere or newer) or "
        "same_compute_capability (none: this GPU's kind only)",
        _choice("--hardware-compat", HARDWARE_COMPAT),
        "tensorrt",
        choices=HARDWARE_COMPAT,
    )
    opset: int | None = _option(
        None,
        f"ONNX opset of the export from --weights (default {DEFAULT_OPSET}; {DEFAULT_OPSET} or newer)",
        _opset,
        "tensorrt",
        type=int,
        metavar="N",
    )
    calib: Path | None = _option(
        None,
        "folder of calibration images, searched recursively (default calib/)",
        _path("--calib"),
        "int8",
        type=Path,
        metavar="DIR",
    )
    calib_method: str = _option(
        "minmax",
        "how activation ranges are chosen from the calibration images",
        _choice("calibration method", CALIB_METHODS),
        "int8",
        choices=CALIB_METHODS,
    )
    calib_size: int = _option(
        DEFAULT_CALIB_SIZE, "images used, evenly sampled", _count("--calib-size"), "int8", type=int, metavar="N"
    )
    calib_batch: int = _option(
        8, "images per calibration batch", _count("--calib-batch"), "int8", type=int, metavar="N"
    )
    sensitivity: bool = _option(False, "rank layers by INT8 sensitivity and print them", _switch("sensitivity"), "int8")
    exclude: tuple[str, ...] = _option(
        (), "layers kept float: module paths (wildcards allowed) or 'auto'", _exclude, "int8", nargs="+", metavar="NAME"
    )
    max_ap_drop: float = _option(
        0.01,
        "--exclude auto budget with --val: mAP50-95 the artifact may lose, as a "
        "fraction like every mAP the SDK prints (0.01 = one point)",
        _number("--max-ap-drop (a fraction of mAP, like every mAP the SDK prints)", 0.0, 1.0),
        "int8",
        type=float,
        metavar="FRACTION",
    )
    max_error: float = _option(
        0.02,
        "--exclude auto budget without --val: output error against fp32, as --sensitivity measures it",
        _number("--max-error", 0.0),
        "int8",
        type=float,
    )
    val: Path | None = _option(
        None,
        "dataset (COCO root or YOLO data.yaml) to report mAP of fp32 and the artifact "
        "on; with --sensitivity it also measures mAP once per layer (slow on a large set)",
        _path("--val"),
        "validation",
        type=Path,
        metavar="DATA",
    )

    def __post_init__(self) -> None:
        for option in fields(self):
            check = option.metadata["check"]
            object.__setattr__(self, option.name, check(getattr(self, option.name)))
        self._check_together()

    def _check_together(self) -> None:
        """Refuse options that contradict each other (nothing but the options is needed to see it)."""
        if self.weights is not None and self.onnx is not None:
            raise ConfigError("pass either --weights or --onnx, not both")
        if self.qat is not None and (self.weights is not None or self.onnx is not None or self.random_weights):
            raise ConfigError("--qat CKPT is the build's source: drop --weights / --onnx / --random-weights")
        if self.random_weights and (self.weights is not None or self.onnx is not None):
            raise ConfigError("--random-weights builds an untrained network; it takes no --weights or --onnx")
        if (self.sensitivity or self.exclude) and self.precision != "int8":
            raise ConfigError("--sensitivity and --exclude apply to int8 builds only")
        if self.opset is not None and self.onnx is not None:
            raise ConfigError(
                f"--opset applies to exports from --weights; {self.onnx} keeps the opset it was saved with"
            )


__all__ = [
    "CALIB_METHODS",
    "DEFAULT_CALIB_SIZE",
    "DEFAULT_OPSET",
    "DEFAULT_WORKSPACE_GIB",
    "HARDWARE_COMPAT",
    "BuildOptions",
    "check_batches",
]
