"""eggroll_np: EGGROLL evolution strategies (low-rank population perturbations), NumPy and CuPy."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import _startup  # noqa: F401 - first: Ctrl-C while the command line starts is one line
from . import _blas_env  # noqa: F401 - before NumPy: it must run before NumPy loads OpenBLAS

# isort: split
from . import noise, tree
from .checkpoint import load, save
from .config import ESConfig, NoiseKind
from .es import ESState, ask, init, step, tell
from .perturbation import GenerationNoise
from .population import Population
from .tuning import threads

try:
    __version__ = version("eggroll_np")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "noise",
    "tree",
    "init",
    "step",
    "ask",
    "tell",
    "save",
    "load",
    "Population",
    "GenerationNoise",
    "ESConfig",
    "ESState",
    "NoiseKind",
    "threads",
]
