"""Deprecated: ``python -m eggroll_np.gpu_check`` is ``eggroll-np gpu-check``; removed next release.

``python -m eggroll_np.gpu_check --out DIR`` still runs the check, after a DeprecationWarning.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """`eggroll-np gpu-check` with these arguments (sys.argv[1:] by default)."""
    from .cli import main as cli_main

    return cli_main(["gpu-check", *(sys.argv[1:] if argv is None else argv)])


warnings.warn(
    "python -m eggroll_np.gpu_check is deprecated: run `eggroll-np gpu-check --out DIR` "
    "(or `python -m eggroll_np gpu-check --out DIR`); this module is removed in the next release",
    DeprecationWarning,
    # Run as `python -m`, this module is __main__, where DeprecationWarnings show by default.
    stacklevel=1 if __name__ == "__main__" else 2,
)

if __name__ == "__main__":
    sys.exit(main())
