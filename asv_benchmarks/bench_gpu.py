"""GPU speed of eggroll_np (asv): noise vs cupy.random; forward and generation vs inference.

Without CuPy and a usable CUDA device every benchmark here is skipped (asv's
`skip_benchmark_if`: not collected, so no "n/a" rows), and this file still imports anywhere.
Timed bodies synchronise the device: kernel launches are asynchronous and would otherwise time
nothing. Inputs come from `eggroll_np.benchmarks.gpu_bench`, which `eggroll-np bench gpu` runs to
write the same figures as JSON.
"""

from __future__ import annotations

from eggroll_np import _cuda_ops, dispatch, lowrank, noise
from eggroll_np.backend import cupy
from eggroll_np.benchmarks import gpu_bench, gpu_contract

from ._common import RATIO_UNIT, round_ratio

__all__ = ["GpuNoise", "GpuForward", "GpuGeneration", "GpuContract"]

# "workload:population" cases of the issue: rl scaled to 4096-wide layers, and sup.
CASES = ["rl-4096:4096", "rl-4096:16384", "sup:256"]


def _gpu_only(cls: type) -> type:
    """cls with every benchmark method marked skipped when there is no GPU."""
    if dispatch.cuda_available():
        return cls
    try:
        from asv_runner.benchmarks.mark import skip_benchmark_if
    except ImportError:  # imported outside asv: nothing to mark
        return cls
    for name, fn in list(vars(cls).items()):
        if name.startswith(("time_", "track_", "peakmem_")):
            setattr(cls, name, skip_benchmark_if(True)(fn))
    return cls


def _require_gpu() -> None:
    if not dispatch.cuda_available():
        raise NotImplementedError("needs CuPy and a CUDA device")


def _sync() -> None:
    cupy.cuda.get_current_stream().synchronize()


def _setup_case(case: str) -> gpu_bench.GpuSetup:
    name, population = case.split(":")
    return gpu_bench.build(gpu_bench.WORKLOADS[name][0], int(population))


@_gpu_only
class GpuNoise:
    """10^8 float32 normals: eggroll's counter-based Philox vs cupy.random.standard_normal."""

    params = [gpu_bench.NOISE_VALUES]
    param_names = ["values"]
    timeout = 300

    def setup(self, values):
        _require_gpu()
        self.ours = lambda: noise.normals_batch(0, 0, [0], 0, values, xp="cupy")
        self.ref = lambda: cupy.random.standard_normal(values, dtype="float32")
        self.ours()
        self.ref()
        _sync()

    def time_eggroll_normals(self, values):
        self.ours()
        _sync()

    def time_cupy_standard_normal(self, values):
        self.ref()
        _sync()

    def track_eggroll_over_cupy(self, values):
        # target <= 1: eggroll's normals no slower than cupy.random's
        return round_ratio(gpu_bench.time_gpu(self.ours) / gpu_bench.time_gpu(self.ref))

    track_eggroll_over_cupy.unit = RATIO_UNIT


class _FreesDevice:
    """Teardown shared by the GPU classes: the case's arrays dropped, the memory pool emptied."""

    def teardown(self, *params):
        self.__dict__.clear()
        if cupy is not None:
            cupy.get_default_memory_pool().free_all_blocks()


class _GpuCase(_FreesDevice):
    """Shared setup of the workload cases: the reference workload's params and inputs on the
    device (`eggroll_np.benchmarks.reference`, as `eggroll-np bench` and gpu_bench use them)."""

    params = [CASES]
    param_names = ["case"]
    timeout = 600

    def setup(self, case):
        _require_gpu()
        self.s = _setup_case(case)
        self.rows = self.s.rows
        _sync()


@_gpu_only
class GpuForward(_GpuCase):
    """The engine's `Population` forward (each generation's noise made anew, or held by the last
    population for the `cached` variant) vs pure inference of the same rows."""

    def time_inference(self, case):
        gpu_bench.inference(self.s, self.rows)
        _sync()

    def time_forward(self, case):
        gpu_bench.population_forward(self.s, regenerate=True)
        _sync()

    def time_forward_cached_factors(self, case):
        # The first call (asv's warm-up) asks for the population whose noise is then reused.
        gpu_bench.population_forward(self.s, regenerate=False)
        _sync()

    def track_forward_over_inference(self, case):
        # target <= 1 / 0.95: the forward's throughput at least 95% of inference's
        forward = gpu_bench.time_gpu(lambda: gpu_bench.population_forward(self.s))
        infer = gpu_bench.time_gpu(lambda: gpu_bench.inference(self.s, self.rows))
        return round_ratio(forward / infer)

    track_forward_over_inference.unit = RATIO_UNIT


@_gpu_only
class GpuGeneration(_GpuCase):
    """A full generation (ask + forward + tell through the engine API) vs pure inference."""

    def setup(self, case):
        super().setup(case)
        # a fresh generation per call, so each timed generation pays for its noise
        self.next_generation = gpu_bench.generation_runner(self.s)

    def time_generation(self, case):
        self.next_generation()
        _sync()

    def track_generation_over_inference(self, case):
        gen = gpu_bench.time_gpu(self.next_generation)
        infer = gpu_bench.time_gpu(lambda: gpu_bench.inference(self.s, self.rows))
        return round_ratio(gen / infer)

    # target <= 2.2 at population 16384
    track_generation_over_inference.unit = RATIO_UNIT


@_gpu_only
class GpuContract(_FreesDevice):
    """The update's contraction on the update's shapes (`gpu_contract.SHAPES`): cuBLAS's SGEMM
    (the default) against the fixed-order kernel that gives the C++ core's bits
    (EGGROLL_NP_CUDA_CONTRACT=exact)."""

    params = [[name for name, *_ in gpu_contract.SHAPES]]
    param_names = ["shape"]
    timeout = 300

    def setup(self, shape):
        _require_gpu()
        _, *size = next(s for s in gpu_contract.SHAPES if s[0] == shape)
        self.A, self.B, self.w = gpu_contract.operands(*size)
        self.exact = lambda: _cuda_ops.contract(self.A, self.B, self.w)
        self.cublas = lambda: lowrank.contract_reference(self.A, self.B, self.w)
        self.exact()
        self.cublas()
        _sync()

    def time_cublas(self, shape):
        self.cublas()
        _sync()

    def time_exact(self, shape):
        self.exact()
        _sync()

    def track_exact_over_cublas(self, shape):
        # 1 is parity: the price of the CPU's bits on this device
        return round_ratio(gpu_bench.time_gpu(self.exact) / gpu_bench.time_gpu(self.cublas))

    track_exact_over_cublas.unit = RATIO_UNIT

