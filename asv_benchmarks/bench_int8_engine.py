"""int8 leaves through the engine on the rl shapes: `ask` + `pop.linear` on int8 leaves against
float32 (inference and the float32 population forward), and the bytes of params plus state
(bench_int8.py times the kernels alone)."""

from __future__ import annotations

import dataclasses

import eggroll_np as egg
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
