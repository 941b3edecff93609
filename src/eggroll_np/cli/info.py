"""`eggroll-np info`: version, extensions, SIMD level, CUDA device and BLAS."""

from __future__ import annotations

import argparse
import json

__all__ = ["HELP", "add_arguments", "run"]

HELP = "show version, extensions, SIMD level, CUDA device and BLAS"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--json."""
    p.add_argument("--json", action="store_true", help="print the information as JSON")


def run(args: argparse.Namespace) -> int:
    """Print the system information."""
    from ..sysinfo import format_info, system_info

    info = system_info()
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0
