"""Deprecated alias of eggroll_np.gpu.check (the GPU check); removed in the next release.

``python -m eggroll_np.gpu_check --out DIR`` still runs the check, after a DeprecationWarning.
"""

from __future__ import annotations

import sys
import warnings

from .gpu.check import main

__all__ = ["main"]

warnings.warn(
    "eggroll_np.gpu_check moved to eggroll_np.gpu.check: run `python -m eggroll_np.gpu.check "
    "--out DIR` (python -m eggroll_np.gpu_check is removed in the next release)",
    DeprecationWarning,
    # Run as `python -m`, this module is __main__, where DeprecationWarnings show by default.
    stacklevel=1 if __name__ == "__main__" else 2,
)

if __name__ == "__main__":
    sys.exit(main())
