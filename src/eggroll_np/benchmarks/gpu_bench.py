"""GPU figures of the CUDA issue in one command: ``eggroll-np bench gpu [--out FILE]``.

Measures, on the current CUDA device and in one run (so ratios compare like with like):
  * noise: ``noise.normals_batch`` vs ``cupy.random.standard_normal`` (float32, 10^8 values);
  * the engine's population forward (`Population.matmul`/`perturbed`) vs pure cuBLAS inference
    of the same rows, on the reference workloads of ``workloads.reference``: ``rl-4096`` (rl at
    width 4096: MLP 4096-4096-4096-16, one row per member, populations 4096 and 16384) and
    ``sup`` (MLP 784-256-256-10, population 256, one shared batch of 128 rows);
  * a full generation (ask + forward + tell through the engine API) vs inference;
  * ``cnn``: the Simple CNN of ``workloads.reference`` (population 256, 32 shared 1x28x28 images)
    through ``pop.conv2d``/``pop.linear``: forward and generation vs inference of all N*32
    images, and a generation of full-rank ES (``noise="full"``) on the same model;
  * ``contract``: the update's exact CUDA contraction against cuBLAS (`gpu_contract`), and
    ``contract_generation``: an rl-4096 generation with each;
  * ``profile``: the sup generation under ``cupyx.profiler.benchmark`` and cProfile
    (`gpu_profile`): host and device ms a call, and the functions that take the host's time.
Every figure is timed after 3 warm-up calls (the clocks ramp up from idle) as the median of
CUDA-event times, with the wall time (to the end of the GPU work) and the host time (until the
call returns, work still queued) beside it: host ~ event means the GPU waits for Python to
launch work (launch-bound). One output per workload is checked against the CPU path. Results
are printed and written as JSON (`eggroll_np.cli.bench_gpu`). Without a usable GPU it exits with
status 2 and a message saying why. The asv suite (asv_benchmarks/bench_gpu.py) reuses the
builders here; the timers are in `gpu_timing`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _ext, dispatch, noise, tree
from ..backend import cupy, to_numpy
from ..models import mlp, simple_cnn
from . import reference
from .gpu_contract import contract_figures, generation_figures
from .gpu_profile import cupyx_times, host_profile
from .gpu_timing import launch_bound, measure, time_gpu

__all__ = [
    "WORKLOADS",
    "GpuSetup",
    "build",
    "inference",
    "population_forward",
    "generation",
    "next_population",
    "fresh_generation_states",
    "generation_runner",
    "time_gpu",
    "check_output",
    "cnn_figures",
    "output_checks",
    "TARGETS",
    "targets",
    "run",
]

NOISE_VALUES = 10**8

# The reference workloads of `workloads.reference`, at the GPU's scale: (workload, populations).
WORKLOADS: dict[str, tuple[reference.Workload, tuple[int, ...]]] = {
    "rl-4096": (reference.WORKLOADS["rl"].scaled(4096, 4096), (4096, 16384)),
    "sup": (reference.WORKLOADS["sup"], (256,)),
}


@dataclass
class GpuSetup:
    """Device inputs of one (workload, population) case: CuPy params tree and inputs."""

    workload: reference.Workload
    params: dict[str, Any]
    x: Any  # (rows, m) shared batch or (N, rows, m) one batch per member
    rows: Any  # (N * rows, m): what pure inference pushes through the network
    sigma: float = 0.02
    rank: int = 1
    seed: int = 0
    population: Any = None  # the Population of the last `population_forward` (its noise held)
    next_state: Callable[[], Any] | None = None  # from fresh_generation_states, made on first use

    @property
    def size(self) -> int:
        """Members per generation."""
        return self.workload.population


def build(workload: reference.Workload, population: int, rank: int = 1, seed: int = 0) -> GpuSetup:
    """The reference workload's params and inputs on the device, for `population` members."""
    dispatch.require_cuda()
    w = dataclasses.replace(workload, population=population)
    params = tree.map_leaves(cupy.asarray, reference.make_params(w, seed))
    x = reference.make_inputs(w, seed + 1)
    rows = cupy.asarray(reference.inference_rows(w, x))
    return GpuSetup(w, params, cupy.asarray(x), rows, rank=rank, seed=seed)


def inference(setup: GpuSetup, rows: Any | None = None) -> Any:
    """Pure cuBLAS inference of all N * rows rows through the unperturbed MLP."""
    return reference.inference(setup.params, setup.rows if rows is None else rows)


def population_forward(setup: GpuSetup, regenerate: bool = True) -> Any:
    """All N perturbed MLPs through the engine's `Population` (what a batched fitness runs).

    With `regenerate`, a new generation is asked for, so its noise is generated first (what a
    generation pays once); otherwise the last population is evaluated again with its noise
    already held. Returns (N, rows, n_out) float32.
    """
    if regenerate or setup.population is None:
        setup.population = next_population(setup)
    return mlp.population_forward(setup.population, setup.x, reference.ACTIVATION)


def next_population(setup: GpuSetup) -> Any:
    """The Population of the setup's next generation (its noise not yet generated)."""
    import eggroll_np as egg

    if setup.next_state is None:
        setup.next_state = fresh_generation_states(setup)
    return egg.ask(setup.params, setup.next_state())


def generation(setup: GpuSetup, state: Any) -> tuple[Any, Any]:
    """One generation through the engine API: ask, batched forward, fitness, tell."""
    import eggroll_np as egg

    pop = egg.ask(setup.params, state)
    fitness = reference.make_fitness(setup.workload, setup.x)(pop)
    return egg.tell(setup.params, fitness, state, population=pop)


def engine_state(setup: GpuSetup) -> Any:
    """An ESState for the setup's params."""
    import eggroll_np as egg

    return egg.init(
        setup.params,
        population=setup.size,
        sigma=setup.sigma,
        rank=setup.rank,
        seed=setup.seed,
        optimizer="sgd",
        shaping="centered_rank",
    )


def fresh_generation_states(setup: GpuSetup) -> Callable[[], Any]:
    """A callable giving, per call, the setup's run at its next generation: every timed
    generation then generates its own noise, as a real run does."""
    return _generations(engine_state(setup))


def generation_runner(setup: GpuSetup) -> Callable[[], Any]:
    """A callable that runs the setup's next generation per call (`generation` on a fresh
    state: new noise each time, as a real run pays it)."""
    states = fresh_generation_states(setup)
    return lambda: generation(setup, states())


def _sized(name: str, quick: bool) -> tuple[reference.Workload, tuple[int, ...]]:
    """WORKLOADS[name]: its workload and populations, shrunk for --quick (width <= 256, 64)."""
    wl, populations = WORKLOADS[name]
    if quick:
        return wl.scaled(min(wl.sizes[1], 256), 64), (64,)
    return wl, populations


def _generations(state: Any) -> Callable[[], Any]:
    """A callable giving `state` at its next generation per call (fresh noise each time)."""
    from .bench import fresh_states

    states, calls = fresh_states(state), itertools.count()
    return lambda: states(next(calls))


def check_output(setup: GpuSetup) -> dict[str, Any]:
    """One population forward on the GPU vs the same generation on the CPU path (NumPy).

    Both start from generation 0 of the same config, so they draw the same noise (bit for bit
    by the contract); the outputs differ only by GEMM rounding. Tolerance: 1e-3 of the output's
    scale (1e-2 with CUPY_TF32=1, whose GEMMs round inputs to 10-bit mantissas).
    """
    import eggroll_np as egg

    params_cpu = tree.map_leaves(to_numpy, setup.params)
    x_cpu = to_numpy(setup.x)
    kwargs = dict(population=setup.size, sigma=setup.sigma, rank=setup.rank, seed=setup.seed)
    act = reference.ACTIVATION
    gpu = mlp.population_forward(
        egg.ask(setup.params, egg.init(setup.params, **kwargs)), setup.x, act
    )
    cpu = mlp.population_forward(egg.ask(params_cpu, egg.init(params_cpu, **kwargs)), x_cpu, act)
    return _compare(setup.workload.name, setup.size, gpu, cpu)


def _compare(workload: str, population: int, gpu: Any, cpu: np.ndarray) -> dict[str, Any]:
    """The output check's record: max |gpu - cpu| over the CPU output's scale, against 1e-3
    (1e-2 with CUPY_TF32=1, whose GEMMs round inputs to 10-bit mantissas)."""
    scale = float(np.abs(cpu).max()) or 1.0
    err = float(np.abs(to_numpy(gpu).astype(np.float64) - cpu).max()) / scale
    tol = 1e-2 if os.environ.get("CUPY_TF32") == "1" else 1e-3
    return {"workload": workload, "population": population,
            "max_error_over_scale": err, "tolerance": tol, "ok": err <= tol}  # fmt: skip


def output_checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The output checks recorded in a `run` result, the exact contraction's bit checks too."""
    checks = [f["output_check"] for figs in result["workloads"].values() for f in figs
              if "output_check" in f]  # fmt: skip
    for row in result.get("contract", []):
        if row["core_bits"] is not None:
            checks.append({"workload": f"contract {row['shape']}", "ok": row["core_bits"]})
    return checks


#: Issue 23's GPU targets: (workload, population, figure, bound, "min" or "max"). The figures
#: are `_workload_figures`'s: forward_over_inference is inference time / forward time, the
#: forward with fresh noise (a new generation each call); generation_host_over_gpu is a
#: generation's host time (until the call returns) over its GPU (CUDA-event) time.
TARGETS: tuple[tuple[str, int, str, float, str], ...] = (
    ("rl-4096", 4096, "forward_over_inference", 0.95, "min"),
    ("sup", 256, "forward_over_inference", 0.5, "min"),
    ("sup", 256, "generation_host_over_gpu", 1.2, "max"),
)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of `TARGETS` with its measured value and whether it is met (`met` None when the
    run did not measure it, e.g. --quick's smaller populations)."""
    rows = []
    for workload, population, figure, bound, kind in TARGETS:
        figs = result.get("workloads", {}).get(workload, [])
        value = next((f[figure] for f in figs if f.get("population") == population), None)
        met = None if value is None else (value >= bound if kind == "min" else value <= bound)
        rows.append({"workload": workload, "population": population, "figure": figure,
                     "target": f"{'>=' if kind == 'min' else '<='} {bound}", "value": value,
                     "met": met})  # fmt: skip
    return rows


def _noise_figures(repeat: int, values: int) -> dict[str, Any]:
    ours = measure(lambda: noise.normals_batch(0, 0, [0], 0, values, xp="cupy"), repeat)
    ref = measure(lambda: cupy.random.standard_normal(values, dtype=np.float32), repeat)
    return {
        "values": values,
        "eggroll_ms": ours["event_ms"],
        "eggroll_wall_ms": ours["wall_ms"],
        "cupy_standard_normal_ms": ref["event_ms"],
        "cupy_standard_normal_wall_ms": ref["wall_ms"],
        "eggroll_gvalues_per_s": values / ours["event_ms"] / 1e6,
        "speed_vs_cupy": ref["event_ms"] / ours["event_ms"],
        "target": ">= 1",
    }


def _workload_figures(
    workload: reference.Workload, population: int, repeat: int, check: bool
) -> dict[str, Any]:
    setup = build(workload, population)
    infer = measure(lambda: inference(setup), repeat)
    fwd = measure(lambda: population_forward(setup, regenerate=True), repeat)
    fwd_cached = measure(lambda: population_forward(setup, regenerate=False), repeat)
    fig: dict[str, Any] = {
        "population": population,
        "rows_per_member": workload.rows,
        "inference_ms": infer["event_ms"],
        "forward_ms": fwd["event_ms"],
        "forward_cached_factors_ms": fwd_cached["event_ms"],
        "forward_over_inference": infer["event_ms"] / fwd["event_ms"],  # target >= 0.95
        "forward_cached_over_inference": infer["event_ms"] / fwd_cached["event_ms"],
        "timings": {"inference": infer, "forward": fwd, "forward_cached": fwd_cached},
        "forward_launch_bound": launch_bound(fwd_cached),
    }
    gen = measure(generation_runner(setup), repeat)
    fig["generation_ms"] = gen["event_ms"]
    fig["generation_over_inference"] = gen["event_ms"] / infer["event_ms"]  # <= 2.2 at 16384
    fig["timings"]["generation"] = gen
    fig["generation_launch_bound"] = launch_bound(gen)
    fig["generation_host_over_gpu"] = gen["host_ms"] / gen["event_ms"]  # target <= 1.2 (sup)
    if check:
        fig["output_check"] = check_output(setup)
    return fig


def cnn_figures(repeat: int = 5, quick: bool = False) -> dict[str, Any]:
    """The Simple CNN workload on the device: inference of all N*rows images, the population
    forward (a new generation per call), a generation, a full-rank ES generation on the same
    model, and the forward of generation 0 checked against the CPU path."""
    import eggroll_np as egg

    wl = reference.CNN_WORKLOAD
    population = 32 if quick else wl.population
    params_cpu = simple_cnn.init_params(wl.arch)
    params = tree.map_leaves(cupy.asarray, params_cpu)
    x_cpu = reference.cnn_images()
    x = cupy.asarray(x_cpu)
    rows = cupy.ascontiguousarray(cupy.broadcast_to(x, (population, *x.shape)))
    rows = rows.reshape(-1, *x.shape[1:])
    cfg = dict(population=population, sigma=0.02, rank=1, seed=0, optimizer="sgd",
               shaping="centered_rank", lowrank=simple_cnn.lowrank_choices())  # fmt: skip

    def fitness(pop: Any) -> Any:
        out = simple_cnn.population_forward(pop, x, wl.arch)
        return -cupy.mean(out * out, axis=(1, 2), dtype=cupy.float64)

    def runner(**extra: Any) -> Callable[[], Any]:
        next_state = _generations(egg.init(params, **cfg, **extra))

        def one() -> Any:
            state = next_state()
            pop = egg.ask(params, state)
            return egg.tell(params, fitness(pop), state, population=pop)

        return one

    fwd_state = _generations(egg.init(params, **cfg))
    infer = measure(lambda: simple_cnn.inference(params, rows, wl.arch), repeat)
    fwd = measure(
        lambda: simple_cnn.population_forward(egg.ask(params, fwd_state()), x, wl.arch), repeat
    )
    gen = measure(runner(), repeat)
    full = measure(runner(noise="full"), repeat)
    gpu = simple_cnn.population_forward(egg.ask(params, egg.init(params, **cfg)), x, wl.arch)
    cpu = simple_cnn.population_forward(
        egg.ask(params_cpu, egg.init(params_cpu, **cfg)), x_cpu, wl.arch
    )
    return {
        "population": population,
        "rows_per_member": wl.rows,
        "inference_ms": infer["event_ms"],
        "forward_ms": fwd["event_ms"],
        "forward_over_inference": infer["event_ms"] / fwd["event_ms"],
        "generation_ms": gen["event_ms"],
        "generation_over_inference": gen["event_ms"] / infer["event_ms"],
        "full_rank_generation_ms": full["event_ms"],
        "speedup_vs_full_rank": full["event_ms"] / gen["event_ms"],
        "timings": {"inference": infer, "forward": fwd, "generation": gen, "full_rank": full},
        "forward_launch_bound": launch_bound(fwd),
        "output_check": _compare("cnn", population, gpu, cpu),
    }


def _sup_profile(quick: bool) -> dict[str, Any]:
    """The sup generation (a new one each call) under `cupyx.profiler.benchmark` (host and
    device ms a call) and cProfile (the functions that take the host's time)."""
    wl, populations = _sized("sup", quick)
    setup = build(wl, populations[0])
    one = generation_runner(setup)
    return {"workload": "sup", "population": setup.size, "cupyx": cupyx_times(one),
            "host_top": host_profile(one)}  # fmt: skip


def run(repeat: int = 5, quick: bool = False) -> dict[str, Any]:
    """Measure every figure on the current device; `quick` shrinks sizes for a smoke run."""
    dispatch.require_cuda()
    info = _ext.cuda.device_info(cupy.cuda.Device().id)
    values = 10**6 if quick else NOISE_VALUES
    result: dict[str, Any] = {
        "device": info["name"],
        "compute_capability": list(info["compute_capability"]),
        "cupy": cupy.__version__,
        "command": "eggroll-np bench gpu" + (" --quick" if quick else ""),
        "repeat": repeat,
        "warmup": 3,
        "CUPY_TF32": os.environ.get("CUPY_TF32", "unset"),
        "noise": _noise_figures(repeat, values),
        "workloads": {},
    }
    for name in WORKLOADS:
        wl, populations = _sized(name, quick)
        figures = []
        for j, population in enumerate(populations):
            # the output check on the smallest population (the CPU path runs it too)
            figures.append(_workload_figures(wl, population, repeat, check=j == 0))
            cupy.get_default_memory_pool().free_all_blocks()  # the case's arrays are garbage now
        result["workloads"][name] = figures
    result["workloads"]["cnn"] = [cnn_figures(repeat, quick)]
    cupy.get_default_memory_pool().free_all_blocks()
    result["contract"] = contract_figures(repeat, quick)
    wl, populations = _sized("rl-4096", quick)
    setup = build(wl, populations[0])
    result["contract_generation"] = generation_figures(
        lambda: generation_runner(setup), setup.size, repeat
    )
    result["profile"] = _sup_profile(quick)
    cupy.get_default_memory_pool().free_all_blocks()
    sup = result["workloads"].get("sup", [])
    result["sup_launch_bound"] = bool(sup) and sup[0]["forward_launch_bound"]
    result["targets"] = targets(result)
    return result
