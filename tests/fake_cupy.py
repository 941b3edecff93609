"""The one stand-in for CuPy of the tests: host memory posing as device memory, counting calls.

`FakeDeviceArray` is a NumPy array whose `.data.ptr` is its host address, so the CUDA wrappers'
raw pointers reach NumPy stand-ins of the bindings (`at` views them). `FAKE_CUPY` is the `cupy`
namespace they call. Every call that would be a device operation on a GPU is counted in
`CALLS`: "alloc" (empty, a copying asarray/ascontiguousarray), "upload" (a host array made a
device one), "gemm" (`@`, `matmul`), "d2h" (`.get()`, `asnumpy`, `.item()`, int/float/bool of
an array: a device-to-host copy, which synchronises), "sync" (synchronize). Bindings count
their own launches ("launch"). `install` puts it in place of CuPy in every eggroll_np module.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import sys
import types
from typing import Any

import numpy as np

__all__ = [
    "CALLS", "EVENTS", "FAKE_CUPY", "FakeDeviceArray", "at", "count", "fake_asarray", "install",
    "reset",
]  # fmt: skip

CALLS: collections.Counter[str] = collections.Counter()
#: The counted calls in order (which came first: a GEMM or an upload).
EVENTS: list[str] = []


def count(kind: str) -> None:
    """Count one call of `kind` (the bindings' stand-ins count "launch" here)."""
    CALLS[kind] += 1
    EVENTS.append(kind)


def _d2h(value: Any) -> Any:
    count("d2h")
    return value


class FakeDeviceArray(np.ndarray):
    """Host memory posing as a CuPy array: `.data.ptr` is its address, the device is 0."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    @property
    def device(self):
        return types.SimpleNamespace(id=0)

    def get(self) -> np.ndarray:
        return _d2h(np.array(self))

    def item(self, *args: Any) -> Any:
        return _d2h(np.asarray(self).item(*args))

    def tolist(self) -> Any:
        return _d2h(np.asarray(self).tolist())

    def __int__(self) -> int:
        return _d2h(int(np.asarray(self)))

    def __float__(self) -> float:
        return _d2h(float(np.asarray(self)))

    def __bool__(self) -> bool:
        return _d2h(bool(np.asarray(self)))

    def __matmul__(self, other: Any) -> FakeDeviceArray:
        return _matmul(self, other)


def _matmul(p: Any, q: Any) -> FakeDeviceArray:
    count("gemm")
    return np.matmul(np.asarray(p), np.asarray(q)).view(FakeDeviceArray)


def fake_asarray(a: Any, dtype: Any = None) -> FakeDeviceArray:
    if isinstance(a, FakeDeviceArray) and (dtype is None or a.dtype == dtype):
        return a
    count("alloc")
    if not isinstance(a, FakeDeviceArray):
        count("upload")
    return np.array(a, dtype=dtype, order="C").view(FakeDeviceArray)  # copies, as an upload


def _fake_contiguous(a: Any, dtype: Any = None) -> FakeDeviceArray:
    if isinstance(a, FakeDeviceArray) and a.flags.c_contiguous and dtype in (None, a.dtype):
        return a
    return fake_asarray(np.ascontiguousarray(a), dtype)


def _fake_empty(shape: Any, dtype: Any = np.float32) -> FakeDeviceArray:
    count("alloc")
    return np.empty(shape, dtype).view(FakeDeviceArray)


def _asnumpy(a: Any) -> np.ndarray:
    return _d2h(np.array(a))


def _synchronize() -> None:
    count("sync")


FAKE_CUPY = types.SimpleNamespace(
    __name__="cupy",
    ndarray=FakeDeviceArray,
    float32=np.float32,
    uint32=np.uint32,
    asarray=fake_asarray,
    ascontiguousarray=_fake_contiguous,
    empty=_fake_empty,
    matmul=_matmul,
    asnumpy=_asnumpy,
    cuda=types.SimpleNamespace(
        Device=lambda device_id=0: contextlib.nullcontext(),
        get_current_stream=lambda: types.SimpleNamespace(ptr=0, synchronize=_synchronize),
        Stream=types.SimpleNamespace(null=types.SimpleNamespace(synchronize=_synchronize)),
    ),
)


def at(ptr: int, count: int, dtype: Any) -> np.ndarray:
    """A writeable NumPy view of `count` values of `dtype` at address `ptr`."""
    dtype = np.dtype(dtype)
    if count == 0:
        return np.empty(0, dtype)
    raw = (ctypes.c_ubyte * (count * dtype.itemsize)).from_address(ptr)
    return np.ctypeslib.as_array(raw).view(dtype)


def _is_fake(x: Any) -> bool:
    return isinstance(x, FakeDeviceArray)


class _WithNumPy(types.SimpleNamespace):
    """FAKE_CUPY's calls, and NumPy's functions for the rest (uncounted: elementwise work),
    whose new arrays are device arrays as CuPy's would be."""

    def __getattr__(self, name: str) -> Any:
        f = getattr(np, name)
        if not callable(f) or isinstance(f, type):
            return f

        def on_device(*args: Any, **kwargs: Any) -> Any:
            r = f(*args, **kwargs)
            return r.view(FakeDeviceArray) if type(r) is np.ndarray else r

        return on_device


def install(monkeypatch: Any, whole_numpy: bool = False) -> None:
    """Make every loaded eggroll_np module see FAKE_CUPY as CuPy (its `cupy`, `is_cupy_array`,
    `namespace_of`, `current_stream_ptr` names), and reset CALLS. `whole_numpy`: the stand-in
    also answers every other NumPy function (for a whole `tell` on device arrays)."""
    xp = _WithNumPy(**vars(FAKE_CUPY)) if whole_numpy else FAKE_CUPY
    fakes = {
        "cupy": xp,
        "is_cupy_array": _is_fake,
        "namespace_of": lambda x: xp if _is_fake(x) else np,
        "current_stream_ptr": lambda: 0,
    }
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "eggroll_np" or name.startswith("eggroll_np.")):
            continue
        for attr, fake in fakes.items():
            if attr in vars(module):
                monkeypatch.setattr(module, attr, fake)
    reset()


def reset() -> None:
    """Forget the calls counted so far."""
    CALLS.clear()
    EVENTS.clear()
