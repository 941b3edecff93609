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

from .backend import as_array

__all__ = [
    "integer",
    "host_fitness",
    "real",
    "boolean",
    "choice",
    "index",
    "callable_",
    "fitness_value",
    "fitness_vector",
    "real_array",
]


def integer(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """`value` as a Python int with lo <= value (< hi when given)."""
    if type(value) is int:  # the common case: neither a bool (a subclass) nor an __index__ call
        v = value
    elif isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    else:
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


def fitness_value(what: str, value: Any) -> float:
    """One fitness value as a float: a real number (Python, NumPy, a 0-d array), nothing else.

    A string "1.5", a complex, None or a masked value would otherwise be coerced or lost; an
    integer beyond the float64 range is a ValueError (float() would raise OverflowError).
    """
    value = as_array(value, what)  # a framework's 0-d tensor (DLPack) as NumPy/CuPy
    if hasattr(value, "__cuda_array_interface__"):  # a CuPy 0-d result
        value = value.get()
    if isinstance(value, np.ndarray) and value.ndim == 0 and not np.ma.isMaskedArray(value):
        value = value[()]
    if value is np.ma.masked or np.ma.isMaskedArray(value):
        raise TypeError(f"{what} is masked; every member needs a value")
    if isinstance(value, (str, bytes)) or not isinstance(value, (numbers.Real, np.bool_)):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__} {value!r:.40}")
    try:
        return float(value)
    except OverflowError:
        magnitude = int(math.log10(abs(value)))  # exact for huge ints, which float() refuses
        raise ValueError(f"{what} is about 10^{magnitude}, beyond the float64 range") from None


def host_fitness(value: Any, n: int) -> np.ndarray:
    """Fitness values as a host NumPy array, unchecked (`n`: the values expected, for the
    message): a framework's tensor (DLPack) adopted, a CuPy array copied to the host."""
    value = as_array(value, "fitness")
    if hasattr(value, "__cuda_array_interface__"):
        value = value.get()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise TypeError(f"fitness must be a numeric array of shape ({n},): {exc}") from None


def fitness_vector(value: Any, n: int) -> np.ndarray:
    """(n,) float64 fitness, one finite real number per member.

    Strings, complex numbers, None, masked entries and integers beyond float64 are refused
    naming the member; a CuPy array is copied to the host.
    """
    if isinstance(value, np.ma.MaskedArray):  # np.ma.isMaskedArray, without the call
        masked = np.flatnonzero(np.ma.getmaskarray(value))
        if masked.size:
            raise ValueError(
                f"fitness is a masked array with member {int(masked[0])} masked "
                f"({masked.size} masked); every member needs a value"
            )
        value = np.ma.getdata(value)
    f = host_fitness(value, n)
    if f.shape != (n,):
        raise ValueError(f"fitness must have shape ({n},) (one value per member), got {f.shape}")
    if f.dtype.kind == "O":
        f = np.array([fitness_value(f"fitness of member {i}", v) for i, v in enumerate(f)])
    elif f.dtype.kind not in "biuf":
        kind = " (complex)" if f.dtype.kind == "c" else ""
        raise TypeError(f"fitness must be real numbers, got dtype {f.dtype}{kind}")
    f = f.astype(np.float64)
    if np.logical_and.reduce(np.isfinite(f)):  # all finite, one pass; details below if not
        return f
    bad = np.flatnonzero(~np.isfinite(f))
    if bad.size:
        raise ValueError(
            f"fitness must be finite; member {int(bad[0])} has {f[bad[0]]} "
            f"({bad.size} non-finite value(s))"
        )
    return f


def rectangular(name: str, value: Any, xp: Any) -> Any:
    """xp.asarray(value); a ragged nested list (rows of different lengths) is a ValueError
    naming the argument instead of NumPy's "setting an array element with a sequence"."""
    try:
        return xp.asarray(value)
    except ValueError as exc:
        if "inhomogeneous" not in str(exc) and "sequence" not in str(exc):
            raise
        raise ValueError(
            f"{name} is a ragged nested list (rows of different lengths); pass a rectangular array"
        ) from None


def real_array(name: str, value: Any, xp: Any) -> Any:
    """`value` as an `xp` array of real numbers (bool, integer or float dtype); strings, complex
    numbers and objects are a TypeError naming the argument, never cast silently; a ragged
    nested list is a ValueError naming it."""
    arr = rectangular(name, value, xp)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr
