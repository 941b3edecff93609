"""Before NumPy loads OpenBLAS: ask its idle threads to sleep at once instead of spinning."""

from __future__ import annotations

import os
import sys

__all__ = ["VARIABLE", "VALUE", "OPT_OUT", "applied"]

VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
#: 2**4 cycles: an idle OpenBLAS thread goes to sleep almost at once. OpenBLAS's own default,
#: 2**28 cycles (~0.1 s), keeps it spinning on a core through the noise, fused epilogue and update
#: kernels that run between a generation's GEMMs, and those kernels then run at about half speed.
VALUE = "4"
#: EGGROLL_NP_BLAS_SPIN=1 leaves OpenBLAS's default alone.
OPT_OUT = "EGGROLL_NP_BLAS_SPIN"


def _apply() -> bool:
    # Never over the user's own setting, and only before OpenBLAS is loaded: it reads the
    # variable once, when NumPy's import loads it.
    if os.environ.get(OPT_OUT) == "1" or VARIABLE in os.environ or "numpy" in sys.modules:
        return False
    os.environ[VARIABLE] = VALUE
    return True


#: True when importing eggroll_np set OPENBLAS_THREAD_TIMEOUT (`eggroll-np info` reports it).
applied = _apply()
