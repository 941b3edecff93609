"""The C++ core's int8 kernels against float32 NumPy at the rl shapes, per CPU-second.

Run `python -m eggroll_np.benchmarks.int8_kernels [--threads T] [--repeats R]`. It prints, for
every SIMD level this processor has:

- the GEMM alone: `_core.gemm_s8s8s32` of (1024, 1024) @ (1024, 1024) against NumPy's float32
  `@` (BLAS sgemm) of the same shape;
- the rl population forward: 1024 members, one int8 row each, through int8 leaves
  1024-1024-1024-16 with rank-1 low-rank noise quantized afresh every call
  (`fill_int8_noise_many`, then `int8_linear` per layer, relu between), against float32 NumPy
  inference of the same 1024 rows (`x @ W + b`, relu).

Times are CPU seconds (`time.process_time`, so a busy shared machine inflates neither side),
medians over interleaved rounds; the ratio is the median of each round's own ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _ext
from ..tuning import threads as set_threads

__all__ = ["RL_LAYERS", "gemm_case", "rl_forward_case", "compare", "main"]

RL_LAYERS = (1024, 1024, 1024, 16)
"""Widths of the rl workload's MLP."""
POPULATION = 1024
F = 4


def _cpu_time(fn: Callable[[], Any]) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def compare(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> tuple[float, float, float]:
    """Median CPU seconds of a and b (alternating, one warm-up each) and the median of b / a."""
    a()
    b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_cpu_time(a))
        tb.append(_cpu_time(b))
    ratios = [y / x for x, y in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def gemm_case(size: int = 1024) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(int8 GEMM, float32 sgemm) callables of a (size, size) @ (size, size) product."""
    core = _ext.core
    rng = np.random.default_rng(0)
    a = rng.integers(-127, 128, (size, size), dtype=np.int8)
    b = rng.integers(-127, 128, (size, size), dtype=np.int8)
    out = np.empty((size, size), np.int32)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    return (lambda: core.gemm_s8s8s32(a, b, out)), (lambda: af @ bf)


def rl_forward_case(k_shift: int = 2, rank: int = 1) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(int8 population forward, float32 inference) callables at the rl shapes.

    The int8 forward draws the generation's quantized factors anew on every call (a new epoch),
    as a training run does each generation.
    """
    core = _ext.core
    rng = np.random.default_rng(1)
    N, K = POPULATION, POPULATION // 2
    widths = RL_LAYERS
    ws = [
        rng.integers(-127, 128, (m, n), dtype=np.int8)
        for m, n in zip(widths, widths[1:], strict=False)
    ]
    bs = [rng.integers(-127, 128, n, dtype=np.int8) for n in widths[1:]]
    x = rng.integers(-127, 128, (N, 1, widths[0]), dtype=np.int8)
    keys = (np.arange(N) // 2).astype(np.uint32)
    signs = np.where(np.arange(N) % 2 == 0, 1, -1).astype(np.int8)
    # Leaf l's stream: a = values [0, m r) as (m, r), b = values [m r, (m + n) r) as (n, r).
    fac_a = [np.empty((K, m, rank), np.int8) for m in widths[:-1]]
    fac_b = [np.empty((K, n, rank), np.int8) for n in widths[1:]]
    leaves = [leaf for leaf in range(len(fac_a)) for _ in (0, 1)]
    offsets = [o for m in widths[:-1] for o in (0, m * rank)]
    outs = [f.reshape(K, -1) for pair in zip(fac_a, fac_b, strict=True) for f in pair]
    h = {1: 0, 4: 1, 16: 2}[rank]
    epoch = [0]

    def int8_forward() -> np.ndarray:
        epoch[0] += 1
        core.fill_int8_noise_many(0, leaves, keys[::2].copy(), epoch[0], offsets, outs)
        h_in = x
        for layer, (w, b, a_k, b_k) in enumerate(zip(ws, bs, fac_a, fac_b, strict=True)):
            m, n = w.shape
            out = np.empty((N, 1, n), np.int8)
            d = (m.bit_length() - 1) // 2
            core.int8_linear(
                h_in,
                w,
                out,
                a_k,
                b_k,
                keys,
                signs,
                F + k_shift + h,
                b,
                out_shift=F + d,
                relu=layer < len(ws) - 1,
            )
            h_in = out
        return h_in

    wf = [w.astype(np.float32) / 16 for w in ws]
    bf = [b.astype(np.float32) / 16 for b in bs]
    xf = x[:, 0].astype(np.float32) / 16

    def float_inference() -> np.ndarray:
        hf = xf
        for layer, (w, b) in enumerate(zip(wf, bf, strict=True)):
            hf = hf @ w + b
            if layer < len(wf) - 1:
                np.maximum(hf, 0, out=hf)
        return hf

    return int8_forward, float_inference


def main(argv: list[str] | None = None) -> None:
    """Print the int8 kernels' CPU-second ratios against float32 NumPy, per SIMD level."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    core = _ext.core
    if core is None:
        raise SystemExit(f"eggroll_np's C++ core is not built: {_ext.core_error}")
    before = core.simd_level()
    print(f"threads {args.threads}, medians of {args.repeats} interleaved rounds, CPU seconds")
    print(f"{'level':<11} {'case':<26} {'int8 ms':>9} {'float32 ms':>11} {'ratio':>7}")
    with set_threads(args.threads):
        for level in core.available_simd_levels():
            core.set_simd_level(level)
            cases = [
                ("gemm 1024^3 vs sgemm", gemm_case()),
                ("rl forward vs inference", rl_forward_case()),
            ]
            for name, (int8_fn, float_fn) in cases:
                if level == "baseline" and name.startswith("rl"):
                    continue  # minutes at the baseline level; the GEMM row shows its speed
                ti, tf, ratio = compare(int8_fn, float_fn, args.repeats)
                print(f"{level:<11} {name:<26} {ti * 1e3:9.2f} {tf * 1e3:11.2f} {ratio:6.2f}x")
    core.set_simd_level(before)


if __name__ == "__main__":
    main()
