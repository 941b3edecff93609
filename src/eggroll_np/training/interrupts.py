"""Ctrl-C during training: the first stops the run; later ones wait until its checkpoint is saved."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["Interrupts"]


class Interrupts:
    """A context manager that owns SIGINT for its block.

    The first SIGINT raises KeyboardInterrupt, as Python's own handler does. Any later one is
    only counted: a second Ctrl-C pressed while the run saves its interrupt checkpoint would
    otherwise abort that save and leave no checkpoint of the work done. The handler is only
    installed in the main thread and when SIGINT has Python's default handler (a process that
    ignores SIGINT keeps ignoring it); the previous handler is restored on exit.

    Attributes:
        count: SIGINTs received in the block.
    """

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None

    def hold(self) -> None:
        """From now on every SIGINT is only counted (a KeyboardInterrupt from elsewhere, e.g.
        raised by the fitness function, is being handled)."""
        self.count = max(self.count, 1)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
