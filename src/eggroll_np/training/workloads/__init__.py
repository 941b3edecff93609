"""Real training workloads for `eggroll-np train NAME`: one module each, registered by name."""

from __future__ import annotations

import importlib

from .common import Task, Workload

__all__ = ["NAMES", "Task", "Workload", "get"]

#: Names of the workloads, as `eggroll-np train NAME` takes them.
NAMES = ("digits", "mnist", "cnn", "charlm", "cartpole", "matching", "hyperparams")


def get(name: str) -> Workload:
    """The Workload called `name` (its module is imported on demand: its deps are optional)."""
    if name not in NAMES:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").WORKLOAD
