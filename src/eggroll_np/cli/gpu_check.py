"""`eggroll-np gpu-check --out DIR`: every GPU check of a first GPU hour, in one report."""

from __future__ import annotations

import argparse

__all__ = ["HELP", "add_arguments", "run"]

HELP = (
    "on a GPU machine: the GPU tests (the repository's tests/), bit checks, probes, memcheck "
    "and `bench gpu`, reported in --out DIR"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--out, --tests, --quick, --only (eggroll_np.gpu.check)."""
    from ..gpu import check

    check.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run the check: 0 all passed, 1 a step failed, 2 no usable GPU (nothing written)."""
    from ..gpu import check

    return check.run(args)
