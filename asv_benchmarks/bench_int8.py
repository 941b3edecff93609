"""int8 leaves on the rl shapes (asv): the integer kernels and the integer population forward
against float32, on the shared CPU settings (one thread, CPU time; _common.py).

Kernels (`eggroll_np.benchmarks.int8_kernels`, the C++ core called directly): the exact int8 GEMM
against BLAS sgemm (1024^3), and the int8 rl population forward against float32 inference of the
same rows. Engine (`eggroll_np.benchmarks.int_bench`, through `egg.ask` and `pop.linear`): the
integer forward and generation against float32 inference and the float32 population forward,
each call on fresh noise, and the bytes of int8 params against float32 params plus Adam state.
"""

from __future__ import annotations

import dataclasses

import eggroll_np as egg
from eggroll_np import _ext
from eggroll_np.benchmarks import int8_kernels, int_bench, reference

from ._common import RATIO_UNIT, Timed, configure, ratio_of_times

configure()


class Int8Kernels(Timed):
    """The core's int8 kernels vs float32 NumPy at the rl shapes."""

    params = [["gemm", "rl_forward"]]
    param_names = ["case"]

    def setup(self, case):
        if _ext.core is None:
            raise NotImplementedError("needs the C++ core")
        make = int8_kernels.gemm_case if case == "gemm" else int8_kernels.rl_forward_case
        self.int8_fn, self.float_fn = make()

    def time_int8(self, case):
        self.int8_fn()

    def time_float32(self, case):
        self.float_fn()

    def track_int8_over_float32(self, case):
        """CPU time of the int8 kernel / that of float32 (below 1: int8 is faster)."""
        return ratio_of_times(self.int8_fn, self.float_fn)

    track_int8_over_float32.unit = RATIO_UNIT


class Int8Forward(Timed):
    """rl (1024-1024-1024-16, 1024 members, one row each) through the engine, fresh noise."""

    timeout = 600

    def setup(self):
        w, self.fparams, self.infer, self.ffitness, _ = reference.setup("rl")
        cfg = dict(population=w.population, lr=0.01, rank=1, seed=0)
        self.fstate = egg.init(self.fparams, sigma=0.02, **cfg)
        self.qparams = int_bench.int8_params(w)
        self.qstate = egg.init(self.qparams, int_sigma_shift=2, int_update_fraction=0.1, **cfg)
        self.qfitness = int_bench.int8_fitness(w, int_bench.int8_inputs(w))
        self.k = 0

    def _fresh(self, state):
        self.k += 1
        return dataclasses.replace(state, generation=self.k)

    def _int8_forward(self):
        self.qfitness(egg.ask(self.qparams, self._fresh(self.qstate)))

    def time_float32_inference(self):
        self.infer()

    def time_float32_forward(self):
        self.ffitness(egg.ask(self.fparams, self._fresh(self.fstate)))

    def time_int8_forward(self):
        self._int8_forward()

    def time_int8_generation(self):
        egg.step(self.qparams, self.qfitness, self._fresh(self.qstate), batched=True)

    def track_int8_forward_over_float32_inference(self):
        """CPU time of the int8 population forward / float32 inference of the same rows."""
        return ratio_of_times(self._int8_forward, self.infer)

    track_int8_forward_over_float32_inference.unit = RATIO_UNIT

    def track_bytes_ratio(self):
        """(int8 params) / (float32 params + Adam state): the memory integer leaves keep."""
        q = sum(int(v.nbytes) for v in egg.tree.flatten(self.qparams)[0])
        f = sum(int(v.nbytes) for v in egg.tree.flatten(self.fparams)[0])
        fs = sum(int(a.nbytes) for s in self.fstate.opt_state.leaves.values() for a in s)
        return q / (f + fs)

    track_bytes_ratio.unit = RATIO_UNIT
