"""The `--threads T` option, one meaning in every command: eggroll_np.threads(T), 0 = defaults."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["HELP", "add_threads_argument", "apply_threads"]

HELP = (
    "threads of BLAS and of eggroll_np's C++ core for the whole run, as eggroll_np.threads(T) "
    "(BLAS through threadpoolctl; a warning says so when it is not installed). Default 0: leave "
    "both at their defaults (the core: EGGROLL_NUM_THREADS, else every hardware thread; BLAS: "
    "its own, e.g. OPENBLAS_NUM_THREADS)"
)


def add_threads_argument(p: argparse.ArgumentParser | Any) -> None:
    """Add --threads T (default 0) to a parser or argument group."""
    p.add_argument("--threads", type=int, default=0, metavar="T", help=HELP)


def apply_threads(threads: int) -> Any:
    """A context manager holding --threads for the run (ValueError naming --threads if bad)."""
    from ..tuning import threads_for_run

    return threads_for_run(threads)
