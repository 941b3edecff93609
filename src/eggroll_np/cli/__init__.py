"""The `eggroll-np` command line (`main`); subcommands in info.py, train.py, bench.py
(bench gpu: bench_gpu.py) and gpu_check.py."""

from __future__ import annotations

from .main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
