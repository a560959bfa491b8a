"""Remove what a server left behind once its process has ended, however it ended (SIGKILL included).

Run by :func:`yolov6_sdk.serve.server.start_reaper` as ``python -m yolov6_sdk.serve.reaper PID WORKSPACE`` in
a session of its own. While process ``PID`` runs it notes the processes below it (Triton, its Python-backend
stubs and their helpers); once ``PID`` has ended it stops those still running (SIGTERM, SIGKILL after
``GRACE_S``) and removes ``WORKSPACE`` and the server's shared-memory files
(``/dev/shm/pytrtion<PID>-*``, the prefix pytriton gives the Python backend's regions). After a clean stop
there is nothing left to do and it exits.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import time
from pathlib import Path

GRACE_S = 10.0
SHM_FOLDER = Path("/dev/shm")


ProcessKey = tuple[int, str]  # (pid, start time in clock ticks): a pid reused later is another key

POLL_S = 1.0


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of ``pid`` from /proc, or None when it has ended."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19]


def descendants(root: int) -> set[ProcessKey]:
    """Every process below ``root`` (children, their children, ...), by key."""
    children: dict[int, list[ProcessKey]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: set[ProcessKey] = set()
    todo = [root]
    while todo:
        for key in children.get(todo.pop(), []):
            if key not in found:
                found.add(key)
                todo.append(key[0])
    return found


def watch(server_pid: int) -> set[ProcessKey]:
    """Wait until ``server_pid`` ends; returns every process seen below it meanwhile (Triton, its stubs, ...)."""
    seen: set[ProcessKey] = set()
    try:
        handle = os.pidfd_open(server_pid)
    except ProcessLookupError:
        return seen
    try:
        while not select.select([handle], [], [], POLL_S)[0]:
            seen |= descendants(server_pid) - {(os.getpid(), _stat(os.getpid())[1])}
    finally:
        os.close(handle)
    return seen


def stop_processes(processes: set[ProcessKey], grace_s: float = GRACE_S) -> None:
    """SIGTERM the ``processes`` still running, then SIGKILL those left after ``grace_s``."""
    deadline = time.monotonic() + grace_s
    sent = signal.SIGTERM
    while alive := [pid for pid, started in processes if (stat := _stat(pid)) is not None and stat[1] == started]:
        if time.monotonic() > deadline:
            sent = signal.SIGKILL
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sent)
        time.sleep(0.2)


def remove_leftovers(server_pid: int, workspace: Path) -> None:
    """Delete ``workspace`` and the shared-memory files of server ``server_pid``."""
    shutil.rmtree(workspace, ignore_errors=True)
    for path in SHM_FOLDER.glob(f"pytrtion{server_pid}-*"):
        path.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    server_pid, workspace = int(argv[0]), Path(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the server must not stop the clean-up
    stop_processes(watch(server_pid))
    remove_leftovers(server_pid, workspace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
