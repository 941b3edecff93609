"""Argument validators shared by every caller: one behaviour, one message format.

Integers: Python and NumPy integers are accepted, bools refused (True is not a population size).
Reals: any real number but bool; finite. Bools: Python or NumPy bools only. Each raises TypeError
for a wrong type and ValueError for a wrong value, naming the argument.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Collection
from typing import Any

import numpy as np

__all__ = ["integer", "real", "boolean", "choice", "index", "callable_"]


def integer(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """`value` as a Python int with lo <= value (< hi when given)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if hi is not None and not (lo or 0) <= v < hi:
        hi_s = f"2^{hi.bit_length() - 1}" if hi > 1 << 16 and hi & (hi - 1) == 0 else str(hi)
        raise ValueError(f"{name} must be in [{lo or 0}, {hi_s}), got {v}")
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v}")
    return v


def index(name: str, value: Any, size: int, inclusive: bool = False) -> int:
    """An index into `size` items: 0 <= value < size (<= size with `inclusive`)."""
    return integer(name, value, 0, size + 1 if inclusive else size)


def real(
    name: str, value: Any, lo: float = -math.inf, lo_open: bool = False, hi: float = math.inf
) -> float:
    """`value` as a finite float with value > lo (lo_open) or >= lo, and value < hi."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    bad_lo = v <= lo if lo_open else v < lo
    if not math.isfinite(v) or bad_lo or v >= hi:
        lo_s = "" if lo == -math.inf else (f", > {lo}" if lo_open else f", >= {lo}")
        hi_s = f" and < {hi}" if hi != math.inf else ""
        raise ValueError(f"{name} must be finite{lo_s}{hi_s}, got {value!r}")
    return v


def boolean(name: str, value: Any) -> bool:
    """`value` as a bool; only Python and NumPy bools are accepted (1 is not True here)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value: Any, valid: Collection[str]) -> str:
    """`value` if it is one of the names in `valid`."""
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name} must be one of {sorted(valid)}, got {value!r}")
    return value


def callable_(name: str, value: Any) -> Any:
    """`value` if it is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value
