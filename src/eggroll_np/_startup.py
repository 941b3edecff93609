"""The command line's start-up: Ctrl-C while the package still imports exits 130, one line."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

__all__ = ["install", "release", "MESSAGE"]

#: What the command line prints on Ctrl-C, during start-up and after it (`cli.main`).
MESSAGE = "interrupted"

_installed = False


def _is_command_line() -> bool:
    """True in the `eggroll-np` console script and `python -m eggroll_np`, never for a library
    user's own program (whose Ctrl-C stays Python's KeyboardInterrupt)."""
    if sys.argv and os.path.basename(sys.argv[0]) == "eggroll-np":
        return True
    argv = list(getattr(sys, "orig_argv", ()))  # `python -m eggroll_np`: argv[0] is '-m' yet
    return any(a == "-m" and b == "eggroll_np" for a, b in zip(argv, argv[1:], strict=False))


def _interrupted(signum: int, frame: Any) -> None:
    # Importing NumPy and the C++ core takes a while; a KeyboardInterrupt raised inside it would
    # print a traceback through the import machinery. Nothing has been written yet: just leave.
    os.write(2, f"{MESSAGE}\n".encode())
    os._exit(130)


def install() -> None:
    """In the command line only: Ctrl-C exits 130 with one line until `release`."""
    global _installed
    if _installed or not _is_command_line():
        return
    try:
        signal.signal(signal.SIGINT, _interrupted)
    except ValueError:  # not the main thread: an import from a worker thread
        return
    _installed = True


def release() -> None:
    """Back to Python's KeyboardInterrupt, which `cli.main` turns into the same line and 130."""
    global _installed
    if _installed:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _installed = False


install()
