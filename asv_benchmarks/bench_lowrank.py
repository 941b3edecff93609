"""The low-rank correction at ranks 1-16: the C++ core's kernels vs NumPy's batched matmul.

asv times both paths per (case, rank), with the suite's settings (`_common.Timed`). Run as a
script, from the repository root, for the ratios of one interleaved run (what
`lowrank._CORE_MAX_RANK` was set from; docs/benchmarks.md, "Low-rank correction kernels"):
    python -m asv_benchmarks.bench_lowrank [--threads 2] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import eggroll_np as egg
from eggroll_np import _ext, lowrank

from ._common import Timed, configure

# name: (members, rows per member, m, n, shared x)
CASES = {
    "rl": (1024, 1, 1024, 1024, False),  # rl's layers: one row per member
    "sup": (256, 128, 784, 256, True),  # sup's first layer: a shared batch
    "sup-hidden": (256, 128, 256, 256, True),
    "rows8": (256, 8, 512, 512, False),
    "rows128": (64, 128, 256, 256, False),
}
RANKS = (1, 2, 4, 8, 16)


def make(case: str, rank: int, seed: int = 0) -> dict:
    members, rows, m, n, shared = CASES[case]
    rng = np.random.default_rng(seed)
    keys_n = members // 2
    return {
        "x": rng.standard_normal((rows, m) if shared else (members, rows, m), dtype=np.float32),
        "A": rng.standard_normal((keys_n, m, rank), dtype=np.float32),
        "B": rng.standard_normal((keys_n, n, rank), dtype=np.float32),
        "keys": (np.arange(members) // 2).astype(np.uint32),
        "coef": rng.standard_normal(members).astype(np.float32),
        "out": np.zeros((members, rows, n), np.float32),
    }


def numpy_path(a: dict) -> None:
    lowrank.correction_reference(a["x"], a["A"], a["B"], a["keys"], a["coef"], a["out"])


def core_path(a: dict) -> None:
    x, A, B, keys, coef, out = (a[k] for k in ("x", "A", "B", "keys", "coef", "out"))
    if x.ndim == 2:
        xa = np.ascontiguousarray(lowrank._shared_projection(x, A))
        _ext.core.lowrank_expand(xa, keys, B, keys, coef, out)
    else:
        _ext.core.lowrank_correction(x, A, B, keys, coef, out)


class LowrankCorrection(Timed):
    """One population correction of a layer, by path."""

    params = (list(CASES), list(RANKS))
    param_names = ("case", "rank")

    def setup(self, case, rank):
        configure()  # here, not at import: the script sets its own --threads
        if _ext.core is None:
            raise NotImplementedError("the C++ core is not built")
        self.a = make(case, rank)

    def time_core(self, case, rank):
        core_path(self.a)

    def time_numpy(self, case, rank):
        numpy_path(self.a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="C++ and BLAS threads")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per case")
    args = parser.parse_args()
    print(f"{'case':11s} rank  numpy ms  core ms  numpy/core (median of per-round ratios)")
    with egg.threads(args.threads):
        for rank in RANKS:
            for case in CASES:
                a = make(case, rank)
                numpy_path(a), core_path(a)  # warm-up
                tn, tc, ratios = [], [], []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    numpy_path(a)
                    t1 = time.perf_counter()
                    core_path(a)
                    t2 = time.perf_counter()
                    tn.append(t1 - t0), tc.append(t2 - t1), ratios.append((t1 - t0) / (t2 - t1))
                med = statistics.median
                print(f"{case:11s} {rank:4d} {med(tn) * 1e3:9.2f} {med(tc) * 1e3:8.2f} "
                      f"{med(ratios):8.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
