"""Progress of a training loop: a live tqdm bar on a terminal, a few plain lines anywhere else."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["LineProgress", "progress"]

# Lines a non-terminal log gets over a whole run (plus the last one): enough to follow a CI job,
# a few hundred bytes instead of a redrawn bar per generation.
_LINES = 10


class LineProgress:
    """tqdm's `update` / `set_postfix` / `close` interface, printing one line per ~1/10 of the run.

    Args:
        total: generations of the whole run.
        initial: generations already done (a resumed run).
        file: where the lines go (stderr by default).
    """

    def __init__(self, total: int, initial: int = 0, file: TextIO | None = None) -> None:
        self.total = int(total)
        self.n = int(initial)
        self._file = file if file is not None else sys.stderr
        self._every = max(1, -(-self.total // _LINES))
        self._postfix = ""
        self._start = time.perf_counter()
        self._start_n = self.n
        self._last_printed = self.n
        self._closed = False

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line (as tqdm's postfix)."""
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        """Count `n` more generations; prints when a tenth of the run has passed."""
        self.n += n
        if self.n // self._every > self._last_printed // self._every or self.n >= self.total:
            self._print()

    def _print(self) -> None:
        if self.n == self._last_printed:
            return
        self._last_printed = self.n
        elapsed = time.perf_counter() - self._start
        done = self.n - self._start_n
        rate = f", {done / elapsed:.3g} gen/s" if elapsed > 0 and done > 0 else ""
        pct = 100.0 * self.n / self.total if self.total else 100.0
        post = f" ({self._postfix})" if self._postfix else ""
        print(
            f"generation {self.n}/{self.total} [{pct:.0f}%] {elapsed:.1f} s{rate}{post}",
            file=self._file,
            flush=True,
        )

    def close(self) -> None:
        """Print the final count if it was not the last line printed (idempotent)."""
        if not self._closed:
            self._closed = True
            self._print()


def progress(total: int, initial: int, enabled: bool, file: TextIO | None = None) -> Any:
    """A progress display for `total` generations starting at `initial`.

    A tqdm bar when `file` (default stderr) is a terminal or in a Jupyter kernel, else a
    `LineProgress` (a redrawn bar would write kilobytes of carriage-return frames into a CI
    log), and a silent tqdm when not `enabled`.
    """
    from tqdm.auto import tqdm

    file = file if file is not None else sys.stderr
    isatty = getattr(file, "isatty", None)
    # A Jupyter kernel's stderr is no terminal, but tqdm.auto draws a widget there.
    live = (callable(isatty) and isatty()) or "ipykernel" in sys.modules
    if enabled and not live:
        return LineProgress(total, initial, file)
    return tqdm(
        total=total,
        initial=initial,
        unit="gen",
        desc="generation",
        disable=not enabled,
        dynamic_ncols=True,
        file=file,
    )
