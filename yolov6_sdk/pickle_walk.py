"""Walking a pickle's opcodes without building anything, to check it before an unpickler runs.

:class:`PickleWalk` follows the opcodes of one pickle (``pickletools.genops``, which reads every argument within the
pickle's bytes) with a symbolic stack, and refuses what would make an unpickler allocate far more than the pickle's
size or run anything: memo indices out of sequence (the C unpickler sizes its memo table from the largest index),
more objects than a budget proportional to the pickle's size, globals the caller's allow-list refuses, opcodes
``torch.save`` never writes, and an unbalanced stack. It records the globals and the tensor storages (key -> bytes)
the pickle references.
"""

from __future__ import annotations

import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from yolov6_sdk.errors import CheckpointError

AllowedGlobal = Callable[[str, str], bool]
"""Predicate ``(module, name) -> bool`` naming the globals a pickle may reference."""

STORAGE_ITEMSIZE: dict[str, int] = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
}  # fmt: skip
"""Bytes per element of the typed storages a tensor pickle may name (``torch.<name>``)."""

_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_MAX_SHORT_VALUE = 256  # longer strings and bytes are never needed by the checks; they are tracked as opaque


def _refusal(path: Path, module: str, name: str) -> CheckpointError:
    """The error for a pickle that references a global outside the allow-list."""
    return CheckpointError(
        f"refusing to load {path}: it references {module}.{name}, which is not part of a YOLOv6 model; only "
        "official YOLOv6 release files (model classes, torch layers, tensors) and yolov6-sdk checkpoints are read"
    )


class _Global(NamedTuple):
    module: str
    name: str


_OPAQUE = object()  # any value the checks never look into
_OPAQUE_TUPLE = object()  # a tuple the checks never look into (calls need a tuple of arguments)
_VALUE_OPS = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
})  # fmt: skip
_SCALARS = (str, bytes, int, float, bool, type(None), _Global)  # what a tracked tuple may hold
# Bytes of Python objects an unpickler creates per opcode (64-bit CPython, rounded up; memo entries as in torch's
# dict-based weights-only unpickler), 40 for the rest; strings and bytes add their length. A real checkpoint costs
# at most ~28 times its pickle's size, so a pickle is refused when its cost exceeds the budget below.
_OBJECT_BYTES = {"MARK": 0, "BINGET": 8, "LONG_BINGET": 8, "GET": 8, "TUPLE1": 56, "TUPLE2": 64, "TUPLE3": 72} | {
    **dict.fromkeys(["EMPTY_DICT", "DICT", "TUPLE", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"], 72),
    **dict.fromkeys(["EMPTY_LIST", "LIST"], 64),
    **dict.fromkeys(["EMPTY_SET", "FROZENSET"], 224),
    **dict.fromkeys(["NEWOBJ", "NEWOBJ_EX"], 512),
    "REDUCE": 256,
}
_BUDGET_BASE, _BUDGET_PER_BYTE = 32 << 20, 40  # the budget: 32 MB + 40 bytes per pickle byte
_MAX_TRACKED_TUPLE = 6  # a persistent id has 5 or 6 items; longer tuples are never looked into
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_POPS = {"POP": 1, "APPEND": 1, "SETITEM": 2, "BUILD": 1}  # opcodes that consume items under the top one


def _tuple(items: list[Any]) -> Any:
    """A tracked tuple of ``items``, or the opaque-tuple marker when it is long or holds containers (so nested
    tuples never pile up)."""
    if len(items) <= _MAX_TRACKED_TUPLE and all(isinstance(item, _SCALARS) or item is _OPAQUE for item in items):
        return tuple(items)
    return _OPAQUE_TUPLE


class PickleWalk:
    """Walks one pickle's opcodes with a symbolic stack: strings, numbers, globals and short tuples of them are
    tracked (lists too with ``keep_lists``); every other value is one shared opaque marker, so the walk holds at
    most a few references per opcode. Records the globals and the storages (key -> bytes) of the persistent ids."""

    def __init__(self, path: Path, allowed: AllowedGlobal, keep_lists: bool = False) -> None:
        self.path, self.allowed, self.keep_lists = path, allowed, keep_lists
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: list[Any] = []  # dense: entry i is stored before i + 1
        self.globals: set[tuple[str, str]] = set()
        self.storages: dict[str, int] = {}

    def fail(self, position: int, reason: str) -> CheckpointError:
        return CheckpointError(
            f"{self.path} holds a malformed pickle ({reason} at byte {position}); the file is corrupt or was "
            "crafted: download or save it again"
        )

    def run(self, stream: Any, end: int) -> Any:
        """Walk from ``stream``'s position (a pickle ending by byte ``end``) to the STOP opcode, leave ``stream``
        just after it and return the top value (strings, numbers, tuples, lists; anything else is opaque)."""
        position = stream.tell()
        span = end - position
        budget, cost = _BUDGET_BASE + _BUDGET_PER_BYTE * span, 0
        try:
            for opcode, arg, position in pickletools.genops(stream):
                cost += _OBJECT_BYTES.get(opcode.name, 40) + (len(arg) if isinstance(arg, (str, bytes)) else 0)
                if cost > budget:
                    raise self.fail(position, f"objects of over {budget >> 20} MB from {span >> 10} KB")
                if opcode.name == "STOP":
                    if len(self.stack) != 1 or self.marks:
                        raise self.fail(position, "unbalanced stack at STOP")
                    return self.stack[0]
                self.step(opcode.name, arg, position, end - stream.tell())
        except CheckpointError:
            raise
        except (ValueError, IndexError, TypeError, KeyError, OverflowError, EOFError, UnicodeError) as exc:
            raise self.fail(position, f"{type(exc).__name__}: {str(exc)[:120]}") from None
        raise self.fail(position, "no STOP opcode")

    def step(self, name: str, arg: Any, position: int, remaining: int) -> None:
        stack = self.stack
        if name in _VALUE_OPS:
            stack.append(arg if not isinstance(arg, (str, bytes)) or len(arg) <= _MAX_SHORT_VALUE else _OPAQUE)
        elif name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            stack.append([] if name == "EMPTY_LIST" and self.keep_lists else _OPAQUE)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            self.need(count, position)
            items = stack[-count:]
            del stack[-count:]
            stack.append(_tuple(items))
        elif name == "MARK":
            self.marks.append(len(stack))
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
            items = self.pop_mark(position)
            tracked = items if name == "LIST" and self.keep_lists else _OPAQUE
            stack.append(_tuple(items) if name == "TUPLE" else tracked)
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            items = self.pop_mark(position)
            self.need(1, position)
            if name == "APPENDS" and isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name in _POPS:
            self.need(_POPS[name] + (name != "POP"), position)
            if name == "APPEND" and isinstance(stack[-2], list):
                stack[-2].append(stack[-1])
            del stack[-_POPS[name] :]
        elif name == "POP_MARK":
            self.pop_mark(position)
        elif name == "DUP":
            self.need(1, position)
            stack.append(stack[-1])
        else:
            self.special(name, arg, position, remaining)

    def special(self, name: str, arg: Any, position: int, remaining: int) -> None:
        """Memo, globals, calls, persistent ids and framing."""
        stack = self.stack
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(self.memo) if name == "MEMOIZE" else arg
            if not 0 <= index <= len(self.memo):  # picklers number entries 0, 1, 2, ...; a jump sizes the table
                raise self.fail(position, f"memo index {index} with {len(self.memo)} entries stored")
            self.need(1, position)
            if index == len(self.memo):
                self.memo.append(stack[-1])
            else:
                self.memo[index] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if not 0 <= arg < len(self.memo):
                raise self.fail(position, f"memo index {arg} read before it was stored")
            stack.append(self.memo[arg])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "STACK_GLOBAL":
                self.need(2, position)
                module, qualified = stack.pop(-2), stack.pop()
            else:
                module, _, qualified = arg.partition(" ")
            stack.append(self.check_global(module, qualified, position))
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
            count = 3 if name == "NEWOBJ_EX" else 2
            self.need(count, position)
            arguments = stack[-count + 1]
            if not isinstance(stack[-count], _Global) or not (
                isinstance(arguments, tuple) or arguments is _OPAQUE_TUPLE
            ):
                raise self.fail(position, f"{name} of something other than a named global with a tuple of arguments")
            del stack[-count:]
            stack.append(_OPAQUE)
        elif name in ("BINPERSID", "PERSID"):
            if name == "BINPERSID":
                self.need(1, position)
            stack.append(self.persistent(stack.pop() if name == "BINPERSID" else arg, position))
        elif name == "PROTO":
            if not 0 <= arg <= pickle.HIGHEST_PROTOCOL:
                raise self.fail(position, f"unknown pickle protocol {arg}")
        elif name == "FRAME":
            if arg > remaining:
                raise self.fail(position, f"frame of {arg} bytes with {remaining} left")
        else:  # INST, OBJ, EXT1/2/4 (globals by number), out-of-band buffers: never written by torch.save
            raise self.fail(position, f"opcode {name}, which torch.save never writes")

    def need(self, count: int, position: int) -> None:
        if len(self.stack) - (self.marks[-1] if self.marks else 0) < count:
            raise self.fail(position, "stack underflow")

    def pop_mark(self, position: int) -> list[Any]:
        if not self.marks:
            raise self.fail(position, "no MARK to pop to")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def check_global(self, module: Any, name: Any, position: int) -> _Global:
        if not isinstance(module, str) or not isinstance(name, str):
            raise self.fail(position, "a global named by something other than two strings")
        module = _PYTHON2_MODULES.get(module, module)  # as the unpickler maps them for protocol < 3
        if not self.allowed(module, name):
            raise _refusal(self.path, module, name)
        self.globals.add((module, name))
        return _Global(module, name)

    def persistent(self, pid: Any, position: int) -> Any:
        """The value a persistent id stands for. It must be torch's ``("storage", torch.<Type>Storage, key,
        location, numel[, view])`` (a storage, recorded), or in the legacy format ``("module", class, source file,
        source)``, which gives the (already allow-listed) class."""
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module" and isinstance(pid[1], _Global):
            return pid[1]
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], _Global)
            and pid[1].module == "torch"
            and pid[1].name in STORAGE_ITEMSIZE
            and isinstance(pid[2], str)
            and isinstance(pid[3], str)
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            raise self.fail(position, "a persistent id that is not a torch storage reference")
        nbytes = pid[4] * STORAGE_ITEMSIZE[pid[1].name]
        if self.storages.setdefault(pid[2], nbytes) != nbytes:
            raise self.fail(position, f"storage {pid[2]!r} referenced with two sizes")
        return _OPAQUE
