"""CPU speed of eggroll_np on the reference workloads (rl, sup, cnn), with lower-is-better ratios.

Every class takes `_common.Timed`'s settings (one thread, CPU time, rounds) and every `track_`
is a time ratio, lower is better (`_common.RATIO_UNIT`). Peak memory is in bench_memory.py.
"""

from __future__ import annotations

import numpy as np
from ._common import RATIO_UNIT, Timed, configure, ratio_of_times

import eggroll_np as egg
from eggroll_np import _ext, noise
from eggroll_np.benchmarks import bench, reference

configure()


class Noise(Timed):
    """Counter-based normals (the core's noise kernel) vs NumPy's generator."""

    params = [10**6, 10**7]
    param_names = ["count"]

    def setup(self, count):
        self.rng = np.random.default_rng(0)

    def time_eggroll_normals(self, count):
        noise.normals(0, 0, 0, 0, count)

    def time_numpy_standard_normal(self, count):
        self.rng.standard_normal(count, dtype=np.float32)

    def track_eggroll_over_numpy(self, count):
        return ratio_of_times(
            lambda: noise.normals(0, 0, 0, 0, count),
            lambda: self.rng.standard_normal(count, dtype=np.float32),
        )

    track_eggroll_over_numpy.unit = RATIO_UNIT


class UpdateContraction(Timed):
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
        return ratio_of_times(
            lambda: _ext.core.contract(self.A, self.B, self.w), lambda: self.a2 @ self.b2
        )

    track_exact_over_blas.unit = RATIO_UNIT


class PopulationLinear(Timed):
    """One `pop.linear` (base GEMM, then the fused epilogue: low-rank correction, bias, ReLU)
    of a generation whose noise is already made, on a layer of sup (N 256, 128 rows).

    shared: the first layer, one (128, 784) batch for every member: one small GEMM, so the
    epilogue, which writes all N * 128 * 256 outputs, is most of the time. per_member: the
    hidden layer, (N, 128, 256) inputs: the GEMM is most of it.
    """

    params = [["shared", "per_member"]]
    param_names = ["input"]

    def setup(self, case):
        w = reference.WORKLOADS["sup"]
        params = reference.make_params(w)
        state = egg.init(params, population=w.population, sigma=0.02, lr=0.01, rank=1, seed=0)
        self.pop = egg.ask(params, state)
        rng = np.random.default_rng(1)
        if case == "shared":
            self.x = rng.standard_normal((w.rows, w.sizes[0]), dtype=np.float32)
            self.leaf = "layers/0"
        else:
            shape = (w.population, w.rows, w.sizes[1])
            self.x = rng.standard_normal(shape, dtype=np.float32)
            self.leaf = "layers/1"
        self.time_linear(case)  # the generation's noise is made here, not in the timed calls

    def time_linear(self, case):
        self.pop.linear(self.x, f"{self.leaf}/W", f"{self.leaf}/b", activation="relu")


class Workload(Timed):
    """Population forward, full generation and pure inference on rl, sup and cnn."""

    params = list(reference.NAMES)
    param_names = ["workload"]

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

    def time_inference(self, name):
        self._infer()

    def time_population_forward(self, name):
        self._forward()

    def time_step(self, name):
        self._step()

    def track_forward_over_inference(self, name):
        # The population's forward against inference of the same N * rows rows: 1 means
        # evaluating N perturbed members costs what inference of their rows does.
        return ratio_of_times(self._forward, self._infer)

    track_forward_over_inference.unit = RATIO_UNIT

    def track_generation_over_inference(self, name):
        return ratio_of_times(self._step, self._infer)

    track_generation_over_inference.unit = RATIO_UNIT


class NaiveES(Timed):
    """The library's own full-rank ES path: what EGGROLL is compared against."""

    params = list(reference.NAMES)
    param_names = ["workload"]
    timeout = 900
    number = 1
    rounds = 2
    repeat = (1, 3, 30.0)

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

    def track_eggroll_over_naive(self, name):
        # EGGROLL's generation time over full-rank ES's (the speed-up is its inverse).
        return ratio_of_times(lambda: self._step(self.lowrank), lambda: self._step(self.naive), 3)

    track_eggroll_over_naive.unit = RATIO_UNIT


class PopulationScaling(Timed):
    """Seconds and peak memory of one generation against the population, both methods: the
    population_scaling table of `eggroll-np bench tables` (its 1M-parameter MLP)."""

    params = [[50, 100, 256, 512, 1024], ["eggroll", "standard_es"]]
    param_names = ["population", "method"]
    timeout = 900
    number = 1
    rounds = 2
    repeat = (1, 3, 60.0)

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
