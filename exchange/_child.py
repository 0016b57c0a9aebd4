"""What the exchange's child processes share (the writer process, ``_writer``; the committer
process, ``_committer``): how they are started, how they die with what started them, how they
are reaped."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pickle
import signal
import subprocess
import sys

__all__ = ["child_environment", "die_with_parent", "exit_status", "portable", "reap"]

_PR_SET_PDEATHSIG = 1


def child_environment() -> dict[str, str]:
    """This process's environment, with its import path, so the child imports the same code."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def die_with_parent(parent_pid: int) -> None:
    """In the child: SIGKILL this process when the thread that started it ends (Linux:
    ``PR_SET_PDEATHSIG`` follows the starting thread, not its process); elsewhere the closed
    pipe stops it. Exits at once if the parent is already gone."""
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # died before the request took effect
        os._exit(1)


def portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling (to cross to the parent), else a
    RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))  # noqa: S301 (our own bytes)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def exit_status(process: subprocess.Popen[bytes] | None) -> int | None:
    """The child's exit status, waiting up to 5 s for it (None: still running, or no child)."""
    if process is None:
        return None
    with contextlib.suppress(subprocess.TimeoutExpired):
        return process.wait(5)
    return None


def reap(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait for the child to exit; kill it after `timeout_s`."""
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
