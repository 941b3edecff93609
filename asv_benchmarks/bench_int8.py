"""The C++ core's int8 kernels against float32 NumPy at the rl shapes, on one thread.

The same cases as `python -m eggroll_np.benchmarks.int8_kernels`: the exact int8 GEMM against
BLAS sgemm (1024^3), and the int8 rl population forward (fresh quantized noise every call)
against float32 inference of the same rows.
"""

from __future__ import annotations

import time

from eggroll_np import _ext
from eggroll_np.benchmarks import int8_kernels
from eggroll_np.tuning import threads


def _cpu_best(fn, repeats=5):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


class Int8Kernels:
    """int8 over float32 on the rl shapes (one thread; ratios in CPU seconds)."""

    params = [["gemm", "rl_forward"]]
    param_names = ["case"]
    timeout = 300

    def setup(self, case):
        if _ext.core is None:
            raise NotImplementedError("needs the C++ core")
        self._threads = threads(1)
        self._threads.__enter__()
        make = int8_kernels.gemm_case if case == "gemm" else int8_kernels.rl_forward_case
        self.int8_fn, self.float_fn = make()

    def teardown(self, case):
        self._threads.__exit__(None, None, None)

    def time_int8(self, case):
        self.int8_fn()

    def time_float32(self, case):
        self.float_fn()

    def track_float32_over_int8(self, case):
        return _cpu_best(self.float_fn) / _cpu_best(self.int8_fn)

    track_float32_over_int8.unit = "x"
