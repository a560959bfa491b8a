"""Hostile and damaged checkpoints: one CheckpointError naming the file and the field, memory bounded by the file's
size, and no pickle content ever runs. Each load that could allocate runs in a forked child under an address-space
limit, which reports its peak resident memory."""

from __future__ import annotations

import collections
import io
import json
import os
import pickletools
import random
import resource
import signal
import struct
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import randomize_model
from test_weights import prepared, write_official

from yolov6_sdk.checkpoint_reader import load_plain
from yolov6_sdk.errors import CheckpointError, YOLOv6Error
from yolov6_sdk.models import build_model
from yolov6_sdk.training.trainer import Trainer
from yolov6_sdk.weights import load, load_official, save_checkpoint

MB = 1 << 20
SYSTEM = f"{os.system.__module__}\nsystem\n"  # posix.system on Linux and macOS


def memory_bound(size: int) -> int:
    """The most a load may add to the process's resident memory for a file of ``size`` bytes."""
    return 64 * MB + 50 * size


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------- isolated loading


@dataclass(frozen=True)
class Outcome:
    """What one load in a child process did: ``kind`` is "loaded", "sdk:<ErrorType>", "foreign:<ErrorType>",
    "crash:<signal or exit status>" or "timeout"; ``peak`` is the resident memory it added, in bytes."""

    kind: str
    message: str
    peak: int


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def run_isolated(read: Callable[[Path], Any], path: Path, timeout: float = 60.0) -> Outcome:
    """Run ``read(path)`` in a forked child whose address space may grow by at most 2 GB; report what happened."""
    receive, send = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(receive)
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            soft = mapped + 2048 * MB
            resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
            start = _max_rss()
            try:
                read(path)
                kind, message = "loaded", ""
            except YOLOv6Error as exc:
                kind, message = f"sdk:{type(exc).__name__}", str(exc)
            except BaseException as exc:  # noqa: BLE001 - any other type is what the tests look for
                kind, message = f"foreign:{type(exc).__name__}", str(exc)
            report = {"kind": kind, "message": message[:2000], "peak": _max_rss() - start}
            os.write(send, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(send)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(receive)
            return Outcome("timeout", "", 0)
        time.sleep(0.01)
    with os.fdopen(receive, "rb") as stream:
        report = stream.read()
    if not report:
        cause = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        return Outcome(f"crash:{cause}", "", 0)
    return Outcome(**json.loads(report))


# --------------------------------------------------------------------------------------------- file builders


def torch_zip(pickle_bytes: bytes, records: dict[str, bytes] | None = None) -> bytes:
    """A zip laid out as torch.save writes one: ``archive/data.pkl``, ``archive/data/<key>`` records, stored."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        for key, data in (records or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")
    return buffer.getvalue()


def long_binput_file() -> bytes:
    """The small file of the report: ``{"model": <memo entry 2**27> yolov6.models.yolo.Model ...}``. A memo entry at
    index 2**27 made the C unpickler allocate a 2 GB memo table before reaching the class."""
    body = (
        b"\x80\x02}q\x00X\x05\x00\x00\x00modelq\x01"
        + b"r"
        + struct.pack("<I", 1 << 27)
        + b"cyolov6.models.yolo\nModel\nq\x02)\x81q\x03}q\x04X\x08\x00\x00\x00trainingq\x05\x89sb"
        + b"cposix\nsystem\n"
        + b"X\x04\x00\x00\x00trueq\x06\x85R0s."
    )
    return torch_zip(body)


@pytest.fixture(scope="module")
def sdk_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = randomize_model(build_model("yolov6n", num_classes=3)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("sdk") / "n.pt", model, half=True)


@pytest.fixture(scope="module")
def sdk_dict(sdk_path: Path) -> dict[str, Any]:
    return torch.load(sdk_path, weights_only=True)


@pytest.fixture(scope="module")
def official_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _ = prepared("yolov6n")
    return write_official(tmp_path_factory.mktemp("official") / "yolov6n.pt", model, legacy=False)


def _saved(tmp_path: Path, checkpoint: Any, name: str = "x.pt") -> Path:
    torch.save(checkpoint, tmp_path / name)
    return tmp_path / name


# ------------------------------------------------------------------------------------------------ fast tests


def test_memo_index_far_beyond_the_pickle_is_refused_before_any_allocation(tmp_path: Path) -> None:
    path = tmp_path / "memo.pt"
    path.write_bytes(long_binput_file())
    assert path.stat().st_size < 1024
    for read in (load, load_official, load_plain):
        outcome = run_isolated(read, path)
        assert outcome.kind == "sdk:CheckpointError", outcome
        assert "memo index 134217728" in outcome.message and str(path) in outcome.message
        assert outcome.peak < 16 * MB, outcome


def test_text_memo_index_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "put.pt"
    path.write_bytes(torch_zip(b"\x80\x02}p4000000000\n."))
    with pytest.raises(CheckpointError, match="memo index 4000000000 with 0 entries"):
        load(path)


def test_pickle_that_would_build_far_more_objects_than_its_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dicts.pt"
    path.write_bytes(torch_zip(b"\x80\x02(" + b"}" * (2 * MB) + b"l."))  # a list of two million empty dicts
    outcome = run_isolated(load, path)
    assert outcome.kind == "sdk:CheckpointError" and "objects of over 112 MB from 2048 KB" in outcome.message, outcome
    assert outcome.peak < memory_bound(path.stat().st_size), outcome


def test_bytearray_of_a_huge_length_is_refused_before_torch_allocates_it(tmp_path: Path) -> None:
    path = tmp_path / "bytearray.pt"
    path.write_bytes(torch_zip(b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00\x40\x85R."))  # bytearray(2**30)
    for read in (load, load_plain):
        outcome = run_isolated(read, path)
        assert outcome.kind == "sdk:CheckpointError" and "builtins.bytearray" in outcome.message, outcome
        assert outcome.peak < 16 * MB, outcome


@pytest.mark.parametrize(
    "call",
    [
        b"cbuiltins\nbytes\nJ\x00\x00\x00\x40\x85R",  # bytes(2**30)
        b"cbuiltins\nbytes\nJ\x00\x00\x00\x40\x85\x81",  # NEWOBJ: bytes.__new__(bytes, 2**30)
        b"ccopyreg\n_reconstructor\ncbuiltins\nbytes\ncbuiltins\nbytes\nJ\x00\x00\x00\x40\x87R",
        b"cnumpy\nndarray\nJ\x00\x00\x00\x40\x85\x81",  # ndarray(2**30)
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x40\x85C\x01b\x87R",
        b"ctorch.nn.modules.conv\nConv2d\nJ\x00\x80\x00\x00J\x00\x80\x00\x00K\x01\x87R",  # 4 GB of weights
    ],
    ids=["bytes", "bytes-newobj", "reconstructor", "ndarray", "numpy-reconstruct", "layer"],
)
def test_allowed_globals_cannot_allocate_from_a_number(tmp_path: Path, call: bytes) -> None:
    path = tmp_path / "alloc.pt"
    path.write_bytes(torch_zip(b"\x80\x02}X\x05\x00\x00\x00model" + call + b"s."))
    outcome = run_isolated(load, path)
    assert outcome.kind == "sdk:CheckpointError" and "truncated or corrupt" in outcome.message, outcome
    assert "weights_only" not in outcome.message
    assert outcome.peak < 16 * MB, outcome


FIRST_WEIGHT = "backbone.stem.rbr_dense.conv.weight"


def _changed(checkpoint: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    """A copy of ``checkpoint`` with ``field`` ("meta.fused", "state_dict.<key>", "names", ...) set to ``value``."""
    changed = dict(checkpoint)
    head, _, key = field.partition(".")
    if key:
        changed[head] = {**checkpoint[head], key: value}
    else:
        changed[head] = value
    return changed


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (f"state_dict.{FIRST_WEIGHT}", (1.0, 2.0), rf"found a tuple at state_dict\['{FIRST_WEIGHT}'\]"),
        ("state_dict", [1, 2], "field 'state_dict' must map names to tensors, got list"),
        (f"state_dict.{FIRST_WEIGHT}", torch.zeros(3, 3), r"shape mismatch \(1\): backbone.stem.*\[3, 3\] vs"),
        ("state_dict.backbone.extra", torch.zeros(1), r"unexpected \(1\): backbone.extra"),
        ("names", [["person"], "car", "dog"], "field 'names' must be a list of 3 class names"),
        ("names", ("a", "b", "c"), "field 'names' must be a list of 3 class names"),
        ("num_classes", "3", "field 'num_classes' must be a positive int, got '3'"),
        ("imgsz", True, "field 'imgsz' must be a positive int"),
        ("imgsz", 100, "field 'imgsz' must be a multiple of the largest stride 32"),
        ("model", 5, "field 'model' must be a zoo model name"),
        ("meta", "fused", "field 'meta' must be a dict"),
        ("meta.fused", "yes", r"field \"meta\['fused'\]\" must be a bool"),
        ("meta.batchnorm", {"backbone.no_such_layer": [1e-5, 0.1]}, r"meta\['batchnorm'\]\['backbone.no_such"),
        ("meta.batchnorm", {"backbone.stem.rbr_dense.bn": [-1, 0.1]}, "eps > 0"),
        ("unknown_attribute", 1, r"unknown fields \['unknown_attribute'\]"),
    ],
)
def test_sdk_field_of_the_wrong_kind_is_one_checkpoint_error_naming_it(
    sdk_dict: dict[str, Any], tmp_path: Path, field: str, value: Any, message: str
) -> None:
    path = _saved(tmp_path, _changed(sdk_dict, field, value))
    with pytest.raises(CheckpointError, match=message) as error:
        load(path)
    assert str(path) in str(error.value)


def test_deeply_nested_meta_and_a_tensor_format_are_one_checkpoint_error(
    sdk_dict: dict[str, Any], tmp_path: Path
) -> None:
    source = zip_source("deep", _saved(tmp_path, _changed(sdk_dict, "meta.note", "PLACEHOLDER")))
    depth = 100_000  # lists inside lists: "]" pushes one, "a" appends the top one to the one below
    deep = source.pickle.replace(b"X\x0b\x00\x00\x00PLACEHOLDER", b"]" * depth + b"a" * (depth - 1))
    (tmp_path / "deep.pt").write_bytes(source.rebuild(deep))
    with pytest.raises(CheckpointError, match="deep.pt: meta is nested too deeply"):
        load(tmp_path / "deep.pt")
    with pytest.raises(CheckpointError, match=r"has format tensor\(\[1\.\]\)"):
        load(_saved(tmp_path, _changed(sdk_dict, "format", torch.ones(1))))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused_in_both_formats(sdk_dict: dict[str, Any], tmp_path: Path, bad: float) -> None:
    weight = sdk_dict["state_dict"][FIRST_WEIGHT].clone()
    weight[0, 0, 0, 0] = bad
    path = _saved(tmp_path, _changed(sdk_dict, f"state_dict.{FIRST_WEIGHT}", weight))
    with pytest.raises(CheckpointError, match=rf"state_dict\['{FIRST_WEIGHT}'\] holds NaN or Inf"):
        load(path)
    model, _ = prepared("yolov6n-v1")
    with torch.no_grad():
        model.detect.cls_preds[0].bias[1] = bad
    official = write_official(tmp_path / "official.pt", model, legacy=True)
    with pytest.raises(CheckpointError, match=r"'detect.cls_preds.0.bias'\] holds NaN or Inf"):
        load(official)


def test_tensor_views_that_overrun_their_storage_are_refused(sdk_dict: dict[str, Any], tmp_path: Path) -> None:
    shape = sdk_dict["state_dict"][FIRST_WEIGHT].shape
    stretched = torch.zeros(1, dtype=torch.float16).expand(shape)  # stride 0: one element stands for all
    path = _saved(tmp_path, _changed(sdk_dict, f"state_dict.{FIRST_WEIGHT}", stretched))
    with pytest.raises(CheckpointError, match="is not a dense tensor inside its storage"):
        load(path)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_storage_larger_than_the_file_holds_is_refused(tmp_path: Path, layout: str) -> None:
    torch.save({"w": torch.zeros(4)}, tmp_path / "w.pt", _use_new_zipfile_serialization=layout == "zip")
    source = (zip_source if layout == "zip" else legacy_source)("w", tmp_path / "w.pt")
    ops = _opcodes(source.pickle)
    persistent = next(i for i, op in enumerate(ops) if op[0] == "BINPERSID")
    closing = max(i for i in range(persistent) if ops[i][0] == "TUPLE")
    numel = closing - (1 if layout == "zip" else 2)  # legacy ids end with a view entry (None)
    assert ops[numel][1] == 4  # ("storage", FloatStorage, key, "cpu", numel 4[, None])
    start, end = ops[numel][2], ops[numel + 1][2]
    path = tmp_path / "numel.pt"
    path.write_bytes(source.rebuild(source.pickle[:start] + b"J\x00\x00\x00\x40" + source.pickle[end:]))  # 2**30
    outcome = run_isolated(load_plain, path)
    expected = "should hold 4294967296 bytes" if layout == "zip" else "the tensors need 4294967"
    assert outcome.kind == "sdk:CheckpointError" and expected in outcome.message, outcome
    assert outcome.peak < 16 * MB, outcome


def test_truncated_files_are_refused_in_every_layout(sdk_path: Path, tmp_path: Path) -> None:
    whole = sdk_path.read_bytes()
    model, _ = prepared("yolov6n-v1")
    legacy = write_official(tmp_path / "legacy.pt", model, legacy=True, zip_format=False).read_bytes()
    for source in (whole, legacy):
        for end in (3, 40, 300, len(source) // 2, len(source) - 20):
            path = tmp_path / f"cut{end}.pt"
            path.write_bytes(source[:end])
            with pytest.raises(CheckpointError, match=r"truncated|corrupt|not a torch checkpoint") as error:
                load(path)
            assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "data",
    [b"hello world", b"PK\x03\x04" + bytes(range(256)) * 4, b"\x80\x02" + bytes(range(255, -1, -1)) * 4, b"\x80"],
    ids=["text", "zip-magic", "pickle-magic", "one-byte"],
)
def test_non_torch_garbage_is_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=str(path)):
        load(path)


def test_compressed_entries_and_inflated_sizes_are_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}." + bytes(64 * MB))
    assert bomb.stat().st_size < MB
    outcome = run_isolated(load, bomb)
    assert outcome.kind == "sdk:CheckpointError" and "is compressed" in outcome.message, outcome
    assert outcome.peak < 16 * MB
    inflated = tmp_path / "inflated.pt"
    data = bytearray(torch_zip(b"\x80\x02}."))
    central = data.index(b"PK\x01\x02")
    data[central + 20 : central + 28] = struct.pack("<II", 0x7FFFFFFF, 0x7FFFFFFF)  # compressed, uncompressed
    inflated.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged torch archive|ends at byte"):
        load(inflated)


def test_payloads_are_refused_without_running_in_every_reader(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "payload.pt"
    command = f"touch {marker}".encode()
    path.write_bytes(
        torch_zip(b"\x80\x02c" + SYSTEM.encode() + b"X" + struct.pack("<I", len(command)) + command + b"\x85R.")
    )
    for read in (load, load_official):
        with pytest.raises(CheckpointError, match=f"refusing to load {path}: it references posix.system"):
            read(path)
    with pytest.raises(CheckpointError, match=f"{path} holds pickled Python objects \\(posix.system\\)"):
        load_plain(path)
    assert not marker.exists()


def test_unsafe_resume_state_is_refused_without_advice_to_disable_weights_only(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    run.mkdir()
    state = run / "resume.pt"
    state.write_bytes(torch_zip(b"\x80\x02c" + SYSTEM.encode() + b"X\x04\x00\x00\x00trueq\x00\x85R."))
    with pytest.raises(CheckpointError, match="posix.system") as error:
        Trainer.resume(run / "last.pt")
    assert "weights_only" not in str(error.value) and not marker.exists()
    state.write_bytes(state.read_bytes()[:-30])
    with pytest.raises(CheckpointError, match=str(state)) as error:
        Trainer.resume(run)
    assert "weights_only" not in str(error.value)


def test_official_batchnorm_with_a_text_eps_is_refused(tmp_path: Path) -> None:
    model, _ = prepared("yolov6n-v1")
    model.backbone.stem.rbr_dense.bn.eps = "0.001"
    with pytest.raises(CheckpointError, match=r"BatchNorm backbone.stem.rbr_dense.bn has eps '0.001'"):
        load(write_official(tmp_path / "eps.pt", model, legacy=True))


def test_plain_reader_names_the_objects_of_an_official_file_without_unpickling_it(official_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"yolov6n.pt holds pickled Python objects \(_codecs.encode, ") as error:
        load_plain(official_path)
    assert "weights_only" not in str(error.value)


# ------------------------------------------------------------------------------------------------------- fuzz


@dataclass(frozen=True)
class Source:
    """A valid file to mutate: its bytes and where its main pickle lies (zip: the data.pkl entry, repacked)."""

    name: str
    data: bytes
    pickle: bytes
    rebuild: Callable[[bytes], bytes]


def zip_source(name: str, path: Path) -> Source:
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    pickle_name = next(key for key in entries if key.endswith("/data.pkl"))

    def rebuild(new_pickle: bytes) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for key, data in entries.items():
                archive.writestr(key, new_pickle if key == pickle_name else data)
        return buffer.getvalue()

    return Source(name, path.read_bytes(), entries[pickle_name], rebuild)


def legacy_source(name: str, path: Path) -> Source:
    data = path.read_bytes()
    stream = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info
        for _ in pickletools.genops(stream):
            pass
    start = stream.tell()
    for _ in pickletools.genops(stream):
        pass
    end = stream.tell()
    return Source(name, data, data[start:end], lambda new: data[:start] + new + data[end:])


def _opcodes(pickle_bytes: bytes) -> list[tuple[str, Any, int]]:
    return [(op.name, arg, pos) for op, arg, pos in pickletools.genops(pickle_bytes)]


def _flip(data: bytes, rng: random.Random, positions: range) -> bytes:
    changed = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        changed[rng.choice(positions)] ^= 1 << rng.randrange(8)
    return bytes(changed)


def mutate_bytes(source: Source, rng: random.Random, marker: Path) -> bytes:
    """Bit flips anywhere, or in the first and last 64 KB (zip headers, central directory, legacy pickles)."""
    size = len(source.data)
    edges = rng.choice([range(size), range(min(size, 1 << 16)), range(max(0, size - (1 << 16)), size)])
    return _flip(source.data, rng, edges)


def mutate_truncate(source: Source, rng: random.Random, marker: Path) -> bytes:
    size = len(source.data)
    return source.data[: rng.choice([rng.randrange(size), rng.randrange(min(size, 4096)), size - rng.randint(1, 4096)])]


def mutate_pickle(source: Source, rng: random.Random, marker: Path) -> bytes:
    """Bit flips inside the pickle, repacked so that the archive itself stays valid."""
    return source.rebuild(_flip(source.pickle, rng, range(len(source.pickle))))


def _insert(source: Source, rng: random.Random, snippet: bytes) -> bytes:
    """``snippet`` spliced in before a random opcode (not PROTO) of the pickle."""
    position = rng.choice([pos for name, _, pos in _opcodes(source.pickle) if name != "PROTO"])
    return source.rebuild(source.pickle[:position] + snippet + source.pickle[position:])


def mutate_memo(source: Source, rng: random.Random, marker: Path) -> bytes:
    """A memo entry at a huge index (LONG_BINPUT or text PUT) right after a pushed value."""
    index = rng.choice([1 << 27, (1 << 31) - 1, (1 << 32) - 1, rng.randrange(1 << 20, 1 << 32)])
    store = b"r" + struct.pack("<I", index) if rng.random() < 0.7 else b"p%d\n" % index
    return _insert(source, rng, b"N" + store + b"0")


def mutate_lengths(source: Source, rng: random.Random, marker: Path) -> bytes:
    """A length or count grown past the file: string/bytes lengths, storage sizes, shapes, offsets, class counts."""
    ops = _opcodes(source.pickle)
    name, arg, position = rng.choice([op for op in ops if op[0] in _SIZED or op[0].startswith("BININT")])
    huge = rng.choice([0x7FFFFFFF, 0x40000000, 1 << 27, rng.randrange(1 << 16, 1 << 31)])
    if name in _SIZED:
        width, code = _SIZED[name]
        field = struct.pack(code, min(huge, 255) if width == 1 else huge)
        data = source.pickle[: position + 1] + field + source.pickle[position + 1 + width :]
    else:
        width = {"BININT": 4, "BININT1": 1, "BININT2": 2}[name]
        value = rng.choice([huge, -1, 0, huge * 8])
        number = (
            b"J" + struct.pack("<i", value)
            if -(1 << 31) <= value < 1 << 31
            else b"\x8a\x08" + value.to_bytes(8, "little")
        )
        data = source.pickle[:position] + number + source.pickle[position + 1 + width :]
    return source.rebuild(data)


_SIZED = {"BINUNICODE": (4, "<I"), "BINBYTES": (4, "<I"), "SHORT_BINUNICODE": (1, "<B"), "FRAME": (8, "<Q")}


def mutate_zip_headers(source: Source, rng: random.Random, marker: Path) -> bytes:
    """One field of a central-directory entry, a local header or the end record set to an edge value."""
    data = bytearray(source.data)
    if source.data[:4] != b"PK\x03\x04":
        return mutate_bytes(source, rng, marker)
    kind = rng.choice([b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06"])
    starts = [i for i in range(len(data) - 4) if data[i : i + 4] == kind] if kind != b"PK\x01\x02" else None
    if starts is None:
        cd = data.rindex(b"PK\x05\x06")
        offset = struct.unpack("<I", data[cd + 16 : cd + 20])[0]
        starts = [
            offset + i for i in range(0, min(len(data) - offset, 1 << 16)) if data[offset + i : offset + i + 4] == kind
        ]
    start = rng.choice(starts or [0])
    fields = {
        b"PK\x01\x02": [(10, 2), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4)],
        b"PK\x03\x04": [(8, 2), (18, 4), (22, 4), (26, 2), (28, 2)],
        b"PK\x05\x06": [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)],
    }[kind]
    at, width = rng.choice(fields)
    value = rng.choice([0, 1, 8, (1 << (8 * width)) - 1, rng.randrange(1 << (8 * width))])
    data[start + at : start + at + width] = value.to_bytes(width, "little")
    return bytes(data)


def mutate_payload(source: Source, rng: random.Random, marker: Path) -> bytes:
    """A call that would create ``marker`` (or allocate gigabytes) spliced in as a value that is pushed and
    popped, so the rest of the pickle still reads."""
    command = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    calls = [
        (SYSTEM, command), ("builtins\nexec\n", code), ("builtins\neval\n", code),
        ("subprocess\ncheck_call\n", command), ("torch\nload\n", str(marker)),
    ]  # fmt: skip
    module_name, text = rng.choice(calls)
    argument = text.encode()
    call = b"c" + module_name.encode() + b"X" + struct.pack("<I", len(argument)) + argument + b"\x85R0"
    allocations = [
        b"cbuiltins\nbytes\nJ\x00\x00\x00\x40\x85R0",
        b"cbuiltins\nbytearray\nJ\x00\x00\x00\x40\x85R0",
        b"cnumpy\nndarray\nJ\x00\x00\x00\x40\x85\x810",
        b"ctorch\nSize\nJ\x00\x00\x00\x40\x85\x85R0",
    ]
    return _insert(source, rng, call if rng.random() < 0.6 else rng.choice(allocations))


MUTATIONS: dict[str, Callable[[Source, random.Random, Path], bytes]] = {
    "byte flips": mutate_bytes,
    "truncation": mutate_truncate,
    "pickle flips": mutate_pickle,
    "memo index": mutate_memo,
    "oversize lengths": mutate_lengths,
    "zip headers": mutate_zip_headers,
    "payload": mutate_payload,
}


@pytest.mark.slow
def test_mutated_checkpoints_raise_only_sdk_errors_within_a_memory_bound_and_run_nothing(
    sdk_path: Path, official_path: Path, tmp_path: Path
) -> None:
    model, _ = prepared("yolov6n-v1")
    legacy = write_official(tmp_path / "legacy.pt", model, legacy=True, zip_format=False)
    sources = [zip_source("sdk", sdk_path), zip_source("official", official_path), legacy_source("legacy", legacy)]
    marker = tmp_path / "ran"
    rng = random.Random(13)
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures, largest = [], (0, 0)
    deadline = time.monotonic() + 100
    iteration = 0
    while time.monotonic() < deadline or iteration < len(MUTATIONS) * len(sources):
        kind = list(MUTATIONS)[iteration % len(MUTATIONS)]
        source = sources[(iteration // len(MUTATIONS)) % len(sources)]
        path = tmp_path / f"fuzz-{iteration % 2}.pt"
        data = MUTATIONS[kind](source, rng, marker)
        path.write_bytes(data)
        outcome = run_isolated(load, path)
        outcomes[kind][outcome.kind.split(":")[0] if outcome.kind != "sdk:CheckpointError" else "refused"] += 1
        largest = max(largest, (outcome.peak, len(data)))
        if not (outcome.kind == "loaded" or outcome.kind.startswith("sdk:")) or outcome.peak > memory_bound(len(data)):
            failures.append((kind, source.name, outcome.kind, outcome.message[:300], outcome.peak, len(data)))
        iteration += 1
    print(
        f"\nfuzz: {iteration} mutated files, peak added memory {largest[0] / MB:.1f} MB (file {largest[1] / MB:.1f} MB)"
    )
    for kind, counts in outcomes.items():
        print(f"  {kind:16s} {dict(counts)}")
    assert not marker.exists()
    assert not failures, failures[:10]
