"""Shared pytest fixtures and markers: the `gpu` skip marker and the `xp` backend fixture."""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np
import pytest

from eggroll_np import dispatch
from eggroll_np.backend import cupy

__all__ = ["GPU_SKIP_REASON", "gpu_skip_reason"]


def gpu_skip_reason() -> str | None:
    """Why GPU tests cannot run here, or None when CuPy and a CUDA device are usable."""
    return dispatch.cuda_unavailable_reason()  # the library's one device check


GPU_SKIP_REASON = gpu_skip_reason()


def pytest_configure(config: pytest.Config) -> None:
    """EGGROLL_REQUIRE_GPU=1 (set by `eggroll-np gpu-check`): no GPU is an error."""
    if os.environ.get("EGGROLL_REQUIRE_GPU") == "1" and GPU_SKIP_REASON is not None:
        raise pytest.UsageError(f"EGGROLL_REQUIRE_GPU=1 but no GPU: {GPU_SKIP_REASON}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked `gpu` (directly or through a parameter) when no GPU is usable."""
    if GPU_SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=f"needs a GPU: {GPU_SKIP_REASON}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request: pytest.FixtureRequest) -> ModuleType:
    """The array module under test: numpy always, cupy where a GPU is usable."""
    return np if request.param == "numpy" else cupy
