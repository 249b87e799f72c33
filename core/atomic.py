"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Also how the commands that write artifacts meet SIGINT/SIGTERM (`signals_deferred`,
`exit_on_sigterm`), and `pause_point`: a hook that lets a test signal a process at a named
moment of a write instead of guessing when that moment comes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PAUSE_ENV = "CHARRNN_PAUSE_AT"
PAUSE_LIMIT_S = 120.0  # a pause nobody ends (no signal comes) gives up and lets the command go on
DEFERRED = (signal.SIGINT, signal.SIGTERM)

_held: list[int] = []  # signals that arrived inside signals_deferred, in order, not yet delivered


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    On any exception (including KeyboardInterrupt) the temporary file is removed and the
    previous `path`, if any, is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    except BaseException:
        with signals_deferred():  # a second signal (make forwards SIGTERM) must not skip this
            tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, e.g. while renaming several files that
    must change together; a signal that arrived meanwhile is delivered right after, to the
    handler that was in place before (KeyboardInterrupt, `exit_on_sigterm`'s exit, or the
    default action).

    Python-level handlers rather than a signal mask: a mask covers only the calling thread, and
    the kernel hands a process-directed signal to any thread that does not block it (torch's
    and ONNX Runtime's pools), after which Python runs the handler in the main thread anyway.
    Outside the main thread (where Python cannot set handlers) this holds nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in DEFERRED:
        handler = signal.getsignal(sig)
        if handler not in (None, signal.SIG_IGN):  # None: set outside Python, leave it alone
            previous[sig] = signal.signal(sig, _hold)
    start = len(_held)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        arrived = list(dict.fromkeys(_held[start:]))
        del _held[start:]
        for sig in arrived:
            signal.raise_signal(sig)  # runs the restored handler now (an outer block holds it again)


def _hold(signum, frame) -> None:
    _held.append(signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit(143), so `atomic_path` cleans up its temporary file.

    Python's default SIGTERM action kills the process at once, skipping `finally` blocks; the
    previous artifact would survive anyway (the rename never happened) but a temp file would not
    be removed. Call this at the start of a command-line entry point. (SIGINT needs nothing: it
    raises KeyboardInterrupt, and Python then ends the process by SIGINT, exit status -2.)
    """

    def _raise(signum, frame):
        # later copies are ignored: make forwards SIGTERM to its recipe, and one arriving during
        # the cleanup would cut it short (SIGKILL still ends a process that hangs)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


def pause_point(name: str) -> None:
    """Test hook: with CHARRNN_PAUSE_AT="<name>:<marker file>" in the environment, stop here,
    write the marker file (its text: this process's id), and wait for SIGINT or SIGTERM.

    A signal delivered here interrupts the pause like any other moment of the command; one held
    by `signals_deferred` ends the pause, so the command goes on and meets the signal where the
    block ends. With no signal within PAUSE_LIMIT_S the command goes on. Without the variable (in
    production) this is one dictionary look-up. The points, each placed just before a commit:
      checkpoint     the new checkpoint is written beside the old one, not yet renamed over it
      export-staged  every export file is built and checked in its staging folder
      export-commit  inside the export's commit, after its first file has been moved into place
    """
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    point, _, marker = wanted.partition(":")
    if point != name or not marker:
        return
    Path(marker).write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while not _held and time.monotonic() < deadline:
        time.sleep(0.01)
