"""Every file the SDK writes goes through here: complete or absent, never half-written, never left behind.

:func:`atomic_path` hands a writer a hidden temporary in the destination's folder, named
``.<name>.tmp.<pid>.<random><suffix>``; when the writer is done the data is fsynced, the file gets the
usual permissions (``0666 & ~umask``, like ``open``), is renamed onto the destination and the folder entry is
fsynced. A process killed mid-write leaves only such a temporary: :func:`remove_stale_temporaries` deletes the
ones whose writing process (the pid in the name) is gone, and is run by every build on its output folder.
:func:`check_output_folder` and :func:`check_output_file` answer "can results be written there?" before any
work starts. :func:`exclusive_lock` keeps two processes from writing files of one name at once.

It also holds the one table of the media suffixes the SDK reads (:data:`IMAGE_SUFFIXES`, :data:`VIDEO_SUFFIXES`)
and the one folder lister (:func:`files_under`), shared by the image sources, the calibration set and the
dataset readers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, see exclusive_lock
    fcntl = None  # type: ignore[assignment]

from yolov6_sdk.errors import OutputError, YOLOv6Error

TEMP_MARK = ".tmp."
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


def files_under(folder: str | Path, suffixes: frozenset[str]) -> list[Path]:
    """Files under ``folder`` (recursively) whose suffix, lower-cased, is one of ``suffixes``; sorted by path."""
    return sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in suffixes and path.is_file())


def temporary_sibling(path: str | Path) -> Path:
    """A fresh hidden temporary name beside ``path`` carrying this process's pid; nothing is created."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}.{secrets.token_hex(4)}{path.suffix}")


def _usual_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder; the rename still happened
        _fsync_file(folder)


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Move a finished temporary ``tmp`` onto ``path`` (same folder): fsync, usual permissions, rename."""
    tmp, path = Path(tmp), Path(path)
    _fsync_file(tmp)
    os.chmod(tmp, _usual_mode())  # writers that use mkstemp create 0600
    os.replace(tmp, path)
    _fsync_folder(path.parent)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; :func:`publish` it onto ``path`` when the block succeeds.

    The temporary keeps ``path``'s suffix (some writers pick the format from it) and exists (empty) when the
    block starts. On any exception, including KeyboardInterrupt, it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    tmp.touch(exist_ok=False)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def lock_path(path: str | Path) -> Path:
    """The hidden lock file of ``path``: ``.<name>.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _lock_held_file(lock: Path, on_wait: Callable[[], None] | None) -> int:
    """Open and lock ``lock``, waiting for its holder; returns the descriptor once the lock is on the file that
    is there (a holder removes the file as it lets go, so a waiter may have locked a removed one: retry)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock of ``path`` (:func:`lock_path`, created in ``path``'s folder, which must exist) for the
    block: a second process asking for it waits until the first lets go (``on_wait()`` is called once before
    waiting). The lock file is removed when the block ends; the system drops the lock of a killed process, so a
    lock file it leaves behind is taken over by the next one. Without ``fcntl`` (Windows) nothing is locked.
    """
    if fcntl is None:
        yield
        return
    lock = lock_path(path)
    fd = _lock_held_file(lock, on_wait)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held: a waiter then sees the file is gone and retries
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_output(path: str | Path, data: bytes, what: str, error: type[YOLOv6Error] = OutputError) -> Path:
    """:func:`write_bytes` for results the user asked for: any failure is one ``error`` that names ``path``
    (never the hidden temporary) and why: a file in the way, a folder at ``path``, no permission, no space.

    Raises:
        error: ``path`` cannot be written.
    """
    try:
        return write_bytes(path, data)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        failure = exc
    try:
        check_output_file(path, what, error)
    except error:
        raise
    except (OSError, ValueError):
        pass  # the check cannot tell more than the write did
    reason = (failure.strerror if isinstance(failure, OSError) else None) or str(failure)
    raise error(
        f"{what} {str(path)!r} cannot be written ({reason}); free some space or choose another path"
    ) from failure


def _process_start(pid: int) -> float | None:
    """Start time (Unix seconds) of process ``pid`` from /proc; None when it cannot be told."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line[:5] == "btime")
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_gone(tmp: Path) -> bool:
    """True when the process named in ``tmp``'s name no longer runs (or its pid now names a younger process)."""
    try:
        pid = int(tmp.name.split(TEMP_MARK)[-1].split(".")[0])
    except ValueError:
        return True  # not our naming scheme (an older release's temporary): nobody can be writing it
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    started = _process_start(pid)
    return started is not None and started > tmp.stat().st_mtime + 1.0


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete hidden ``.*.tmp.*`` files in ``folder`` (not recursive) whose writer was killed; returns them.

    Temporaries of running processes (this one included) are kept.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f".*{TEMP_MARK}*"):
        with contextlib.suppress(OSError):
            if tmp.is_file() and _writer_gone(tmp):
                tmp.unlink()
                removed.append(tmp)
    return removed


def check_output_folder(folder: str | Path, what: str, error: type[YOLOv6Error] = YOLOv6Error) -> Path:
    """Make sure files can be written in ``folder`` before any work starts; returns the folder.

    A missing folder must be creatable: it is created for the check and removed again (the run creates it
    when it writes). ``what`` names the option in the message (e.g. "save_dir").

    Raises:
        error: a file is in the way, the folder cannot be created, or it is not writable.
    """
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise error(
            f"{what} {str(folder)!r}: {str(blocker)!r} is a file, not a folder; choose another path or move that file"
        )
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_sibling(folder / "write-check")
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(
            f"{what} {str(folder)!r} cannot be written ({reason}); pass a folder you can write to, or fix its "
            "permissions"
        ) from exc
    finally:
        for path in created:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
    return folder


def check_output_file(path: str | Path, what: str, error: type[YOLOv6Error] = YOLOv6Error) -> Path:
    """Make sure a file can be written at ``path`` (its folder checked by :func:`check_output_folder`).

    Raises:
        error: ``path`` is a folder, or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {str(path)!r} is a folder; pass a file path such as {str(path / 'out.json')!r}")
    check_output_folder(path.parent, f"{what} {str(path)!r} cannot be written: its folder", error)
    return path


def fallback_path(name: str) -> Path:
    """A writable place for results whose chosen file could not be written: the current folder, else the
    system's temporary folder; the name gets a timestamp."""
    stamped = f"{Path(name).stem}-{time.strftime('%Y%m%d-%H%M%S')}{Path(name).suffix}"
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        if os.access(folder, os.W_OK):
            return folder / stamped
    return Path(tempfile.gettempdir()) / stamped
