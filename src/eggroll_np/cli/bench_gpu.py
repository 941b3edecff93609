"""`eggroll-np bench gpu`: every GPU figure of docs/benchmarks.md in one run, printed and as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from .. import _checks

__all__ = ["HELP", "add_arguments", "run"]

HELP = "on a GPU: noise, forward and generation against cuBLAS inference (JSON to --out)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--out, --repeat, --quick."""
    p.add_argument("--out", default="gpu_bench.json", metavar="FILE", help="JSON file to write")
    p.add_argument("--repeat", type=int, default=5, help="timed repetitions per figure")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")


def run(args: argparse.Namespace) -> int:
    """Measure (eggroll_np.benchmarks.gpu_bench.run): 0 done, 1 a GPU output differs from the CPU
    path, 2 no usable GPU (nothing measured or written)."""
    from .. import dispatch

    _checks.integer("--repeat", args.repeat, 1)
    reason = dispatch.cuda_unavailable_reason()
    if reason is not None:
        print(f"gpu_bench: nothing measured: no CUDA device can be used: {reason}", file=sys.stderr)
        return 2
    from ..benchmarks import gpu_bench

    result = gpu_bench.run(repeat=args.repeat, quick=args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    bad = [c for c in gpu_bench.output_checks(result) if not c["ok"]]
    if bad:
        print(f"gpu_bench: GPU outputs differ from the CPU path: {bad}", file=sys.stderr)
        return 1
    return 0
