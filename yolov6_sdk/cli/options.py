"""Options every command spells the same way: ``-o/--output``, ``--batch`` (alias ``--bs``), ``--device``.

Also the two parsing rules the commands share: an old option name keeps working for one release and prints a
deprecation note (:func:`add_deprecated_alias`), and a list option followed by positionals
(``yolov6-bench --batch 1 8 engines/x.onnx``) hands the values that are not its own to the positionals
(:class:`ListThenPositionals`, :func:`parse`).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from yolov6_sdk.artifact.preprocess import check_imgsz
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.runtime.backends.registry import canonical_device

DEVICE_HELP = "where to run: auto, cpu, cuda, cuda:N or N (GPU index, same as cuda:N) (default auto)"
_SPILLED = "_spilled_positionals"


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the candidate closest to ``word``, or "" when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors suggest the closest option or choice to a misspelt one."""

    def error(self, message: str) -> None:  # type: ignore[override]
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            options = [s for action in self._actions for s in action.option_strings]
            hints = [f"{word}{did_you_mean(word.split('=')[0], options)}" for word in unknown.group(1).split()]
            message = "unrecognized arguments: " + " ".join(hints)
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            valid = re.findall(r"'([^']*)'", choice.group(2)) or [c.strip() for c in choice.group(2).split(",")]
            message += did_you_mean(choice.group(1), valid)
        super().error(message)


def device(text: str) -> str:
    """argparse ``type`` of ``--device``: "0" -> "cuda:0", "CUDA" -> "cuda"; anything unknown is refused."""
    try:
        return canonical_device(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_device(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = "auto") -> None:
    """``--device`` with the one spelling every command accepts."""
    parser.add_argument("--device", type=device, default=default, metavar="DEVICE", help=DEVICE_HELP)


class _DeprecatedAlias(argparse.Action):
    """Stores like the option it stands for and prints a note naming that option."""

    def __init__(self, option_strings: Sequence[str], dest: str, replacement: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        print(
            f"{parser.prog}: note: {option_string} is deprecated and will be removed in the next release; "
            f"use {self.replacement}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_deprecated_alias(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, dest: str, replacement: str, **kwargs: Any
) -> None:
    """``old`` sets ``dest`` as ``replacement`` does (same ``type``/``nargs`` in ``kwargs``), with a note."""
    parser.add_argument(old, dest=dest, action=_DeprecatedAlias, replacement=replacement,
                        default=argparse.SUPPRESS, help=f"deprecated alias of {replacement}", **kwargs)  # fmt: skip


class ListThenPositionals(argparse.Action):
    """A list option (``nargs="+"``) whose values end where a value stops being one of its own.

    ``convert`` turns each string into a value (int, a name checked against ``valid``, ...); the first value
    must convert, and from the first one that does not on, the strings are positionals (read back by
    :func:`parse`). ``valid``: the accepted names, shown in the help like argparse's choices.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, convert: Callable[[str], Any] = str,
                 valid: Sequence[str] | None = None, **kwargs: Any) -> None:  # fmt: skip
        if valid is not None:
            kwargs.setdefault("metavar", "{" + ",".join(valid) + "}")
        super().__init__(option_strings, dest, nargs="+", **kwargs)
        self.convert, self.valid = convert, None if valid is None else tuple(valid)

    def _value(self, text: str) -> Any:
        if self.valid is not None and text not in self.valid:
            raise ValueError(
                f"invalid choice {text!r} (choose from {', '.join(self.valid)}){did_you_mean(text, self.valid)}"
            )
        return self.convert(text)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        kept: list[Any] = []
        for i, text in enumerate(values):
            try:
                kept.append(self._value(text))
            except (ValueError, argparse.ArgumentTypeError) as exc:
                if not kept:
                    parser.error(f"argument {option_string}: {exc}")
                getattr(namespace, _SPILLED).extend(values[i:])
                break
        setattr(namespace, self.dest, kept)


INVOKED_AS: list[str] = []  # "yolov6 <command>" while the yolov6 dispatcher runs a command (usage lines say so)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None, positionals: str | None = None) -> Any:
    """Parse ``argv`` with options before, between or after the positionals.

    ``positionals``: the dest of a ``nargs="*"`` positional; the strings a :class:`ListThenPositionals` option
    gave up are put before the others (the order a command processes its files in, not their meaning).
    """
    if INVOKED_AS:
        parser.prog = INVOKED_AS[-1]
    namespace = argparse.Namespace(**{_SPILLED: []})
    args = parser.parse_intermixed_args(argv, namespace)
    spilled = getattr(args, _SPILLED)
    delattr(args, _SPILLED)
    if positionals is not None:
        setattr(args, positionals, [*spilled, *(getattr(args, positionals) or [])])
    elif spilled:
        parser.error(f"unrecognized arguments: {' '.join(spilled)}")
    return args


def parse_imgsz_option(parser: argparse.ArgumentParser, values: Sequence[int] | None) -> int | tuple[int, int] | None:
    """``--imgsz H [W]`` as an int (one value) or (H, W), checked by the contract's one image-size rule
    (:func:`yolov6_sdk.artifact.preprocess.check_imgsz`); a bad size is a usage error."""
    if values is None:
        return None
    if len(values) > 2:
        parser.error(f"--imgsz takes one or two positive multiples of 32, got {' '.join(map(str, values))}")
    try:
        height, width = check_imgsz(values[0] if len(values) == 1 else tuple(values))
    except ConfigError as exc:
        parser.error(f"--imgsz {' '.join(map(str, values))}: {exc}")
    return height if len(values) == 1 else (height, width)


__all__ = [
    "DEVICE_HELP",
    "CommandParser",
    "ListThenPositionals",
    "add_deprecated_alias",
    "add_device",
    "device",
    "did_you_mean",
    "parse",
    "parse_imgsz_option",
]
