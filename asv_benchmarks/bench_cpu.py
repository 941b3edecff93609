"""CPU speed and memory of eggroll_np on the reference workloads (rl, sup, cnn), with ratios."""

from __future__ import annotations

import time

import numpy as np

import eggroll_np as egg
from eggroll_np import _ext, noise
from eggroll_np.benchmarks import bench
from eggroll_np.tuning import retain_heap_memory
from eggroll_np.benchmarks import reference

# As `eggroll-np bench` and `eggroll-np train` do: freed large arrays are reused, not re-faulted.
retain_heap_memory()


def _best_of(fn, repeats=5):
    fn()
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Noise:
    """Counter-based normals vs NumPy's generator."""

    params = [10**6, 10**7]
    param_names = ["count"]

    def setup(self, count):
        self.rng = np.random.default_rng(0)

    def time_eggroll_normals(self, count):
        noise.normals(0, 0, 0, 0, count)

    def time_numpy_standard_normal(self, count):
        self.rng.standard_normal(count, dtype=np.float32)

    def track_speedup_vs_numpy(self, count):
        t_np = _best_of(lambda: self.rng.standard_normal(count, dtype=np.float32))
        t_egg = _best_of(lambda: noise.normals(0, 0, 0, 0, count))
        return t_np / t_egg

    track_speedup_vs_numpy.unit = "x"


class UpdateContraction:
    """The update's fixed-order contraction (machine-independent bits) against BLAS's GEMM.

    Shapes of the first layer of each workload: K unique keys, a (m, n) leaf, rank 1.
    """

    params = [["rl", "sup"]]
    param_names = ["workload"]

    def setup(self, name):
        if _ext.core is None:
            raise NotImplementedError("needs the C++ core")
        w = reference.WORKLOADS[name]
        rng = np.random.default_rng(0)
        k, m, n = w.population // 2, w.sizes[0], w.sizes[1]
        self.A = rng.standard_normal((k, m, 1), dtype=np.float32)
        self.B = rng.standard_normal((k, n, 1), dtype=np.float32)
        self.w = rng.standard_normal(k).astype(np.float32)
        self.a2, self.b2 = self.A.reshape(k, m).T, self.B.reshape(k, n)

    def time_exact_contract(self, name):
        _ext.core.contract(self.A, self.B, self.w)

    def time_blas_gemm(self, name):
        self.a2 @ self.b2

    def track_exact_over_blas(self, name):
        t_exact = _best_of(lambda: _ext.core.contract(self.A, self.B, self.w))
        return t_exact / _best_of(lambda: self.a2 @ self.b2)

    track_exact_over_blas.unit = "x"


class Workload:
    """Population forward, full generation and pure inference on rl, sup and cnn."""

    params = list(reference.NAMES)
    param_names = ["workload"]
    timeout = 300

    def setup(self, name):
        self.w, self.params_tree, self._infer, self.fitness, extra = reference.setup(name)
        state = egg.init(
            self.params_tree, population=self.w.population, sigma=0.02, lr=0.01, rank=1, seed=0,
            **extra,
        )
        # Every call evaluates a new generation, with its own noise, as a real run does.
        self._states = bench.fresh_states(state)
        self._calls = 0

    def _state(self):
        self._calls += 1
        return self._states(self._calls)

    def _forward(self):
        return self.fitness(egg.ask(self.params_tree, self._state()))

    def _step(self):
        return egg.step(self.params_tree, self.fitness, self._state(), batched=True)

    def _inference(self):
        return self._infer()

    def time_inference(self, name):
        self._inference()

    def time_population_forward(self, name):
        self._forward()

    def time_step(self, name):
        self._step()

    def peakmem_inference(self, name):
        self._inference()

    def peakmem_step(self, name):
        self._step()

    def track_forward_throughput_ratio(self, name):
        return _best_of(self._inference) / _best_of(self._forward)

    track_forward_throughput_ratio.unit = "ratio (forward throughput / inference)"

    def track_generation_over_inference(self, name):
        return _best_of(self._step) / _best_of(self._inference)

    track_generation_over_inference.unit = "ratio (generation time / inference)"


class NaiveES:
    """The library's own full-rank ES path: what EGGROLL is compared against."""

    params = list(reference.NAMES)
    param_names = ["workload"]
    timeout = 600
    number = 1
    repeat = 1

    def setup(self, name):
        w, self.params_tree, _, self.fitness, extra = reference.setup(name)
        kw = dict(population=w.population, sigma=0.02, lr=0.01, rank=1, seed=0)
        self.naive = bench.fresh_states(egg.init(self.params_tree, noise="full", **kw))
        self.lowrank = bench.fresh_states(egg.init(self.params_tree, **kw, **extra))
        self._calls = 0

    def _step(self, states):
        self._calls += 1
        egg.step(self.params_tree, self.fitness, states(self._calls), batched=True)

    def time_naive_step(self, name):
        self._step(self.naive)

    def track_speedup_vs_naive(self, name):
        t_naive = _timed(lambda: self._step(self.naive))
        t_egg = _best_of(lambda: self._step(self.lowrank))
        return t_naive / t_egg

    track_speedup_vs_naive.unit = "x"


class PopulationScaling:
    """Seconds and peak memory of one generation against the population, both methods: the
    population_scaling table of `eggroll-np bench tables` (its 1M-parameter MLP)."""

    params = [[50, 100, 256, 512, 1024], ["eggroll", "standard_es"]]
    param_names = ["population", "method"]
    timeout = 600
    number = 1
    repeat = (1, 3, 60)

    def setup(self, population, method):
        from eggroll_np.benchmarks.tables import FULL, measure

        sizes = measure.mlp_sizes(FULL.scaling_params)
        self.params_tree, self.fitness, state, self.batched = measure.setup_generation(
            sizes, population, method
        )
        # A fresh generation (and noise) on every call, as the tables time it.
        self._states = bench.fresh_states(state)
        self._calls = 0

    def _step(self):
        self._calls += 1
        egg.step(self.params_tree, self.fitness, self._states(self._calls), batched=self.batched)

    def time_generation(self, population, method):
        self._step()

    def peakmem_generation(self, population, method):
        self._step()
