"""How every command ends: one line for an SDK error, the same clean-up for Ctrl-C (SIGINT) and SIGTERM.

:func:`run_command` runs a command's body with SIGINT and SIGTERM turned into :class:`Interrupted` (a
``KeyboardInterrupt``), so the code being interrupted unwinds as it does for Ctrl-C: ``finally`` blocks write
their reports (``yolov6-detect --save-json``: ``"complete": false``) and :func:`yolov6_sdk.fileio.atomic_path`
removes its hidden temporary. The command then prints one line and exits 128 + the signal number (130 for
SIGINT, 143 for SIGTERM). A second signal during that clean-up gets the default behaviour (the process ends).

An SDK error (:class:`~yolov6_sdk.errors.YOLOv6Error`) is printed as ``<prog>: error: <message>`` with exit 2,
and so is a disk that fills up or turns read-only mid-run (:data:`STORAGE_ERRORS`; files being written are removed
by their writers, the ones written before stay); a reader that closed the pipe (``yolov6 --help | head -1``) ends the command quietly with 141 (128 + SIGPIPE).
This module imports nothing heavy, so a signal during the command's own imports is handled too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)
BROKEN_PIPE_STATUS = 128 + 13  # what a shell reports for a process ended by SIGPIPE
STORAGE_ERRORS = frozenset(
    {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS}
)  # the storage, not the program, failed


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which (the exit status is 128 + ``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def status(self) -> int:
        return 128 + self.signum


_NOTES: list[str] = []  # what the running command wants said after an interruption (innermost last)


def interrupt_note(text: str) -> None:
    """Set what the running command prints after ``interrupted by SIGxxx;`` (e.g. where partial results are)."""
    if _NOTES:
        _NOTES[-1] = text


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    for handled in HANDLED:  # a second signal while cleaning up ends the process the usual way
        signal.signal(handled, signal.default_int_handler if handled == signal.SIGINT else signal.SIG_DFL)
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted`; the previous handlers come back after.

    Nested blocks (the ``yolov6`` dispatcher running a command) keep the outer block's handlers. Outside the
    main thread nothing is changed (Python delivers signals to the main thread only).
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    for signum in HANDLED:
        signal.signal(signum, _raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on a closed pipe again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _flush_stdout() -> bool:
    """Flush stdout; False when its reader has gone (the pipe is closed)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return False
    except (OSError, ValueError):
        pass
    return True


def run_command(prog: str, body: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None) -> int:
    """Run ``body(argv)`` as command ``prog``; returns its exit status (see the module docstring)."""
    _NOTES.append("")
    try:
        with signals_as_interrupts():
            status = int(body(argv) or 0)
        return status if _flush_stdout() else BROKEN_PIPE_STATUS
    except SystemExit as exc:  # argparse's --help and usage errors: flush what they printed first
        if not _flush_stdout():
            return BROKEN_PIPE_STATUS
        raise exc from None
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE_STATUS
    except KeyboardInterrupt as exc:
        status = exc.status if isinstance(exc, Interrupted) else 130
        name = signal.Signals(status - 128).name
        note = f"; {_NOTES[-1]}" if _NOTES[-1] else ""
        print(f"{prog}: interrupted by {name}{note}", file=sys.stderr)
        return status
    except OSError as exc:
        if exc.errno not in STORAGE_ERRORS:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"{prog}: error: {exc.strerror}{where}; free some space or write elsewhere (-o)", file=sys.stderr)
        return 2
    except Exception as exc:
        from yolov6_sdk.errors import YOLOv6Error

        if not isinstance(exc, YOLOv6Error):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        _NOTES.pop()


def command(prog: str) -> Callable[[Callable[[Sequence[str] | None], int | None]], Callable[..., int]]:
    """Decorator turning ``body(argv)`` into a command's ``main(argv=None)`` run by :func:`run_command`."""

    def wrap(body: Callable[[Sequence[str] | None], int | None]) -> Callable[..., int]:
        def main(argv: Sequence[str] | None = None) -> int:
            from yolov6_sdk.cli import options

            return run_command(options.INVOKED_AS[-1] if options.INVOKED_AS else prog, body, argv)

        main.__doc__, main.__name__, main.__wrapped__ = body.__doc__, "main", body  # type: ignore[attr-defined]
        return main

    return wrap


__all__ = ["Interrupted", "command", "interrupt_note", "run_command", "signals_as_interrupts"]
