"""int8 leaves on the rl shapes: the integer population forward against float32 (inference and
the float32 population forward), the integer GEMM row, and the memory of params plus state."""

from __future__ import annotations

import dataclasses

import numpy as np

import eggroll_np as egg
from eggroll_np import intops
from eggroll_np.benchmarks import bench, int_bench, reference
from eggroll_np.tuning import retain_heap_memory

retain_heap_memory()


class Int8Forward:
    """rl (1024-1024-1024-16, 1024 members, one row each): each call on fresh noise."""

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

    def time_float32_inference(self):
        self.infer()

    def time_float32_forward(self):
        self.ffitness(egg.ask(self.fparams, self._fresh(self.fstate)))

    def time_int8_forward(self):
        self.qfitness(egg.ask(self.qparams, self._fresh(self.qstate)))

    def time_int8_generation(self):
        egg.step(self.qparams, self.qfitness, self._fresh(self.qstate), batched=True)

    def track_int8_forward_vs_float32_inference(self):
        _, _, ratio = bench._interleaved(
            self.infer,
            {"q": lambda k: self.qfitness(egg.ask(self.qparams, self._fresh(self.qstate)))},
            5,
        )
        return 1.0 / ratio["q"]

    track_int8_forward_vs_float32_inference.unit = "x"

    def track_bytes_ratio(self):
        """(int8 params + state) / (float32 params + Adam state)."""
        q = sum(int(v.nbytes) for v in egg.tree.flatten(self.qparams)[0])
        f = sum(int(v.nbytes) for v in egg.tree.flatten(self.fparams)[0])
        fs = sum(int(a.nbytes) for s in self.fstate.opt_state.leaves.values() for a in s)
        return q / (f + fs)

    track_bytes_ratio.unit = "x"


class Int8Gemm:
    """The int_gemm row on the rl first layer (1024 rows, 1024 x 1024)."""

    def setup(self):
        rng = np.random.default_rng(0)
        self.x = rng.integers(-127, 128, (1024, 1024)).astype(np.int8)
        self.w = rng.integers(-127, 128, (1024, 1024)).astype(np.int8)
        self.xf = self.x.astype(np.float32)
        self.wf = self.w.astype(np.float32)

    def time_int8_gemm(self):
        intops.gemm(self.x, self.w)

    def time_float32_gemm(self):
        self.xf @ self.wf
